#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages only), then configures and
# builds TenPak into ./build. Safe to run again: it installs nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake ninja-build pkg-config python3 zstd xdelta3
      libzstd-dev libxxhash-dev libsnappy-dev libssl-dev nlohmann-json3-dev libcli11-dev libgtest-dev
      fuse3 libfuse3-dev liblmdb-dev libcurl4-openssl-dev nginx-light
      libtorch-dev libopenblas0-serial python3-venv python3-torch
      libsentencepiece-dev sentencepiece)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python clients the tests check outputs with (tests/requirements.txt, pinned),
# in .venv; --system-site-packages so Debian's torch (python3-torch) is used.
# Reinstalled only when the requirements change.
if [ ! -x .venv/bin/python ]; then /usr/bin/python3 -m venv --system-site-packages .venv; fi
req_sum=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_sum" ]; then
  echo "bootstrap: installing tests/requirements.txt into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  echo "$req_sum" > .venv/.requirements.sha256
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
