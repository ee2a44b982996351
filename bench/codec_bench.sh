#!/usr/bin/env bash
# Runs the codec benchmark: builds tenpak and codec_bench in BUILD_DIR
# (default build), then prints the tables (markdown) on stdout.
#   bench/codec_bench.sh [--size-mb N] [other codec_bench options]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target tenpak codec_bench >/dev/null
exec "$build/bench/codec_bench" --tenpak "$build/tenpak" --data "$root/../shared/data/yolov5n" "$@"
