#!/usr/bin/env python3
"""Real FUSE mounts of TenPak deltas, Python standard library only.

Env: TENPAK_BIN (the tenpak binary), TENPAK_SHARED (../shared; the real
YOLOv5n pairs are used when TENPAK_SHARED/data/yolov5n exists).
Exit 0: all passed; 1: a test failed; 77: skipped (no usable /dev/fuse).
Every mount is unmounted in teardown, also when a test fails.
"""
import errno
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

BIN = os.environ.get("TENPAK_BIN", "")
SHARED = os.environ.get("TENPAK_SHARED", "")
WORK = ""  # created by main()
MOUNTS = []  # mountpoints to clean up


def log(*a):
    print(*a, flush=True)


def tp(*args, check=True, timeout=120):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"tenpak {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def is_mounted(mp):
    mp = os.path.realpath(mp)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mp for line in f)


def wait_gone(pid, secs=15):
    end = time.time() + secs
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def mount(src, mp, *extra):
    os.makedirs(mp, exist_ok=True)
    # No persistent cache unless a test asks for one: frames cached by an
    # earlier test would hide the rebuild paths (and a corrupted delta).
    if "--cache-dir" not in extra:
        extra = extra + ("--no-cache",)
    r = tp("mount", src, mp, "--json", "--log", mp + ".log", *extra)
    MOUNTS.append(mp)
    info = json.loads(r.stdout)
    assert is_mounted(mp), f"{mp} not in /proc/self/mounts after mount"
    return info


def unmount(mp):
    r = tp("unmount", mp, "--json")
    info = json.loads(r.stdout)
    assert info["daemon_exited"], f"daemon of {mp} still running after unmount"
    assert not is_mounted(mp)
    MOUNTS.remove(mp)


def cleanup_mounts():
    # Also whatever a failed test mounted without registering it: every
    # mount under this run's work directory.
    under = []
    if WORK:
        with open("/proc/mounts") as f:
            under = [l.split()[1] for l in f if l.split()[1].startswith(WORK + "/")]
    for mp in set(MOUNTS) | set(under):
        if is_mounted(mp):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    MOUNTS.clear()


def make_pair(name, kind="bf16", size_mb=8):
    d = os.path.join(WORK, name)
    if not os.path.exists(d + "/delta"):
        tp("fixture", kind, d + "/pair", "--size-mb", str(size_mb))
        tp("delta", "build", d + "/pair/base", d + "/pair/finetune", "-o", d + "/delta")
    return d


# --- a safetensors reader: mmap + json + struct -----------------------------

def st_tensors(buf):
    """(name, begin, end) of each tensor, absolute offsets into buf."""
    (n,) = struct.unpack_from("<Q", buf, 0)
    assert 0 < n < 100_000_000, "bad header length"
    hdr = json.loads(bytes(buf[8:8 + n]))
    out = []
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out.append((name, 8 + n + b, 8 + n + e))
    out.sort(key=lambda x: x[1])
    return out


def compare_safetensors_mmap(mounted, original):
    """Maps the mounted file MAP_SHARED and MAP_PRIVATE and compares every tensor."""
    with open(original, "rb") as f:
        orig = f.read()
    want = st_tensors(orig)
    fd = os.open(mounted, os.O_RDONLY)
    try:
        for flags in (mmap.MAP_SHARED, mmap.MAP_PRIVATE):
            m = mmap.mmap(fd, 0, flags=flags, prot=mmap.PROT_READ)
            try:
                got = st_tensors(m)
                assert got == want, "tensor table differs"
                for name, b, e in got:
                    assert m[b:e] == orig[b:e], f"tensor {name} differs ({mounted})"
            finally:
                m.close()
    finally:
        os.close(fd)
    return len(want)


# --- tests -------------------------------------------------------------------

def t_generated_files_match():
    d = make_pair("gen")
    mp = d + "/mp"
    info = mount(d + "/delta", mp, "--base", d + "/pair/base", "--metrics-port", "0")
    try:
        ft = d + "/pair/finetune"
        assert sorted(os.listdir(mp)) == sorted(os.listdir(ft)), (os.listdir(mp), os.listdir(ft))
        inos = {}
        for name in os.listdir(ft):
            st = os.stat(os.path.join(mp, name))
            assert st.st_size == os.path.getsize(os.path.join(ft, name)), name
            assert st.st_mode & 0o222 == 0, "files must be read-only"
            inos[name] = st.st_ino
            assert sha256(os.path.join(mp, name)) == sha256(os.path.join(ft, name)), f"sha256 of {name}"
            if name.endswith(".safetensors"):
                compare_safetensors_mmap(os.path.join(mp, name), os.path.join(ft, name))
        for name in os.listdir(ft):  # stable inodes
            assert os.stat(os.path.join(mp, name)).st_ino == inos[name]
        # Read-only: writes, creates, removals get EROFS.
        for op in (lambda: open(os.path.join(mp, "config.json"), "r+b"),
                   lambda: open(os.path.join(mp, "new.txt"), "wb"),
                   lambda: os.unlink(os.path.join(mp, "config.json")),
                   lambda: os.mkdir(os.path.join(mp, "dir"))):
            try:
                op()
                raise AssertionError("write access succeeded on a read-only mount")
            except OSError as e:
                assert e.errno == errno.EROFS, e
        s = json.loads(tp("stats", mp, "--json").stdout)
        assert s["bytes_served"] > 0 and s["frames_rebuilt"] > 0, s
        assert s["pid"] == info["pid"]
        assert "served" in tp("stats", mp).stdout
        assert ".tenpak" not in os.listdir(mp)
        # Rebuild latency histogram: once the prefetcher is idle, its counts
        # add up to the frames rebuilt, in stats.json and in Prometheus.
        s = stable_stats(mp)
        rl = s["rebuild_latency"]
        n = s["frames_rebuilt"]
        assert rl["count"] == n, (rl, n)
        c = rl["cumulative_counts"]
        assert len(c) == len(rl["le_s"]) and all(a <= b for a, b in zip(c, c[1:])) and c[-1] <= n, rl
        assert rl["sum_s"] > 0, rl
        m = metrics_of(mp)
        assert "# TYPE tenpak_fs_rebuild_latency_seconds histogram" in m
        assert f'tenpak_fs_rebuild_latency_seconds_bucket{{le="+Inf"}} {n}\n' in m, m
        assert metric_sum(m, "tenpak_fs_rebuild_latency_seconds_count") == n
        buckets = [int(l.rsplit(" ", 1)[1]) for l in m.splitlines() if l.startswith("tenpak_fs_rebuild_latency_seconds_bucket")]
        assert buckets == c + [n], (buckets, c, n)
        assert "rebuilds" in tp("stats", mp).stdout
    finally:
        unmount(mp)


def stable_stats(mp, secs=20):
    """stats.json once frames_rebuilt stopped moving (background prefetch done)."""
    end = time.time() + secs
    prev = None
    while True:
        s = json.loads(tp("stats", mp, "--json").stdout)
        if prev is not None and s["frames_rebuilt"] == prev["frames_rebuilt"] or time.time() > end:
            return s
        prev = s
        time.sleep(0.3)


def _random_reads(path, orig, seed, n, drop_every=50):
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in range(n):
            if i % drop_every == 0:  # evict pages so reads reach the daemon again
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            off = rng.randrange(len(orig))
            ln = rng.randrange(1, 3 << 20)
            got = os.pread(fd, ln, off)
            if got != orig[off:off + ln]:
                return f"mismatch at {off}+{ln}"
    finally:
        os.close(fd)
    return None


def t_random_reads_threads_and_processes():
    d = make_pair("gen")
    mp = d + "/mp2"
    mount(d + "/delta", mp, "--base", d + "/pair/base", "--cache-mb", "8")
    try:
        name = [n for n in os.listdir(mp) if n.endswith(".safetensors")][0]
        path = os.path.join(mp, name)
        with open(os.path.join(d, "pair/finetune", name), "rb") as f:
            orig = f.read()
        errors = []
        ths = [threading.Thread(target=lambda s=s: errors.append(_random_reads(path, orig, s, 400))) for s in range(4)]
        code = ("import sys; sys.path.insert(0, %r); import mount_test as m; "
                "orig = open(%r, 'rb').read(); r = m._random_reads(%r, orig, int(sys.argv[1]), 400); "
                "print(r or 'ok'); sys.exit(1 if r else 0)") % (
            os.path.dirname(os.path.abspath(__file__)), os.path.join(d, "pair/finetune", name), path)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(100 + i)], stdout=subprocess.PIPE, text=True)
                 for i in range(3)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, f"reader process: {out}"
        assert errors == [None] * 4, errors
        s = json.loads(tp("stats", mp, "--json").stdout)
        assert s["errors"] == {"io": 0, "corrupt": 0, "base_missing": 0, "other": 0}, s
        assert s["frame_cache"]["bytes"] <= 9 << 20, s
        log(f"    random reads: {s['reads']} daemon reads, {s['frames_rebuilt']} frames rebuilt, "
            f"{s['inflight_joins']} in-flight joins, prefetch {s['prefetch']}")
    finally:
        unmount(mp)


def t_catalog_two_models():
    d = make_pair("gen")
    cat = os.path.join(WORK, "catalog")
    if not os.path.exists(cat):
        shutil.copytree(d + "/delta", cat + "/org/tuned")
        # A second model of the same base: the base itself as a "fine-tune".
        tp("delta", "build", d + "/pair/base", d + "/pair/base", "-o", cat + "/org/identity")
    mp = os.path.join(WORK, "catmp")
    data_files = [f"{cat}/org/{sub}/tenpak.dat" for sub in ("tuned", "identity")]
    # The delta data files start cold, as the base does: they are read with
    # O_DIRECT where the file system takes it, counted in delta_data_reads,
    # never in base_reads (before the two were counted apart, a data file
    # read direct showed as a base read direct here).
    for p in data_files:
        drop_file_pages(p)
    mount(cat, mp, "--base", d + "/pair/base")
    try:
        drop_file_pages(d + "/pair/base")  # so that a direct read would show (below)
        assert os.listdir(mp) == ["org"], os.listdir(mp)
        assert sorted(os.listdir(mp + "/org")) == ["identity", "tuned"]
        for sub, src in (("tuned", d + "/pair/finetune"), ("identity", d + "/pair/base")):
            for name in os.listdir(src):
                assert sha256(f"{mp}/org/{sub}/{name}") == sha256(f"{src}/{name}"), f"{sub}/{name}"
        with open(mp + ".log") as f:
            assert "is shared by 2 models: read through the page cache" in f.read()
        s = json.loads(tp("stats", mp, "--json").stdout)
    finally:
        unmount(mp)
    # Both models read one base: it is read through the page cache (shared
    # by them), not direct, and such reads are not counted at all.
    assert s["base_reads"] == {"direct_bytes": 0, "page_cache_bytes": 0}, s["base_reads"]
    if takes_o_direct(data_files[0]):
        assert s["delta_data_reads"]["direct_bytes"] > 0, s["delta_data_reads"]
        log(f"    delta data read direct: {s['delta_data_reads']['direct_bytes']} bytes (base: 0)")


def t_yolov5n_real_pairs():
    data = os.path.join(SHARED, "data", "yolov5n") if SHARED else ""
    if not data or not os.path.isdir(data):
        log("    (skipped: no TENPAK_SHARED/data/yolov5n)")
        return
    cat = os.path.join(WORK, "yolo")
    fts = sorted(n for n in os.listdir(data) if n.startswith("ft-") and n.endswith(".safetensors"))
    for n in fts:
        out = os.path.join(cat, n[:-len(".safetensors")])
        if not os.path.exists(out):
            tp("delta", "build", data + "/base.safetensors", os.path.join(data, n), "-o", out)
    mp = os.path.join(WORK, "yolomp")
    mount(cat, mp, "--base", data + "/base.safetensors")
    try:
        for n in fts:
            sub = n[:-len(".safetensors")]
            files = os.listdir(os.path.join(mp, sub))
            assert len(files) == 1, files
            mounted = os.path.join(mp, sub, files[0])
            assert sha256(mounted) == sha256(os.path.join(data, n)), n
            k = compare_safetensors_mmap(mounted, os.path.join(data, n))
            log(f"    {n}: sha256 equal, {k} tensors equal through mmap")
    finally:
        unmount(mp)


def t_corrupt_frame_gives_eio_never_wrong_bytes():
    d = make_pair("gen")
    bad = os.path.join(WORK, "corrupt-delta")
    if os.path.exists(bad):
        shutil.rmtree(bad)
    shutil.copytree(d + "/delta", bad)
    size = os.path.getsize(bad + "/tenpak.dat")
    with open(bad + "/tenpak.dat", "r+b") as f:  # damage a stretch in the middle of the payloads
        f.seek(size // 2)
        chunk = bytearray(f.read(4096))
        for i in range(len(chunk)):
            chunk[i] ^= 0xA5
        f.seek(size // 2)
        f.write(chunk)
    mp = os.path.join(WORK, "corruptmp")
    mount(bad, mp, "--base", d + "/pair/base")
    try:
        name = [n for n in os.listdir(mp) if n.endswith(".safetensors")][0]
        with open(os.path.join(d, "pair/finetune", name), "rb") as f:
            orig = f.read()
        fd = os.open(os.path.join(mp, name), os.O_RDONLY)
        eio = ok = 0
        try:
            for off in range(0, len(orig), 65536):
                try:
                    got = os.pread(fd, 65536, off)
                    # A short read (pages before a failed one) is allowed; wrong bytes never.
                    assert got == orig[off:off + len(got)], f"WRONG BYTES served at {off}"
                    ok += len(got) == min(65536, len(orig) - off)
                except OSError as e:
                    assert e.errno == errno.EIO, e
                    eio += 1
        finally:
            os.close(fd)
        assert eio > 0, "corrupt frame was not reported"
        assert ok > 0
        s = json.loads(tp("stats", mp, "--json").stdout)
        assert s["errors"]["corrupt"] > 0, s
        with open(mp + ".log") as f:
            lines = [l for l in f if "EIO" in l and name in l and "offset" in l and "corrupt" in l]
        assert lines, "no EIO log line naming file, offset and cause"
        log(f"    {eio} chunks EIO, {ok} chunks correct; log: {lines[0].strip()[:160]}")
    finally:
        unmount(mp)


def start_reader(mp, body):
    """A python process that opens the first .safetensors file under mp (fd),
    says 'open', then runs `body` (os, sys, time imported). Returns once the
    file is open."""
    name = [n for n in os.listdir(mp) if n.endswith(".safetensors")][0]
    p = subprocess.Popen([sys.executable, "-c", "import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
                          "print('open', flush=True)\n" + body, os.path.join(mp, name)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def t_unmount_with_active_reader():
    d = make_pair("gen")
    mp = os.path.join(WORK, "busymp")
    info = mount(d + "/delta", mp, "--base", d + "/pair/base")
    reader = start_reader(mp, (
        "n = 0; t = time.time()\n"
        "while time.time() - t < 2.0:\n"
        "    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); n += len(os.pread(fd, 1 << 20, (n * 7919) % (1 << 22)))\n"
        "os.close(fd); print('read', n, flush=True)\n"))
    try:
        r = tp("unmount", mp, check=False)
        assert r.returncode != 0 and "busy" in r.stderr, (r.returncode, r.stderr)
        assert is_mounted(mp)
        r = tp("unmount", mp, "--lazy")
        assert not is_mounted(mp), "lazy unmount left the mount in place"
        out, err = reader.communicate(timeout=30)
        assert reader.returncode == 0 and out.startswith("read"), (reader.returncode, out, err)
        assert wait_gone(info["pid"]), "daemon did not exit after the last file was closed"
        MOUNTS.remove(mp)
    finally:
        if reader.poll() is None:
            reader.kill()


def t_sigterm_and_foreground():
    d = make_pair("gen")
    mp = os.path.join(WORK, "termmp")
    info = mount(d + "/delta", mp, "--base", d + "/pair/base")
    os.kill(info["pid"], signal.SIGTERM)
    assert wait_gone(info["pid"]), "daemon ignored SIGTERM"
    assert not is_mounted(mp), "SIGTERM did not unmount"
    MOUNTS.remove(mp)
    # Foreground: stays attached; SIGINT unmounts and exits 0. Started with SIGINT at its default,
    # as a terminal's foreground job is: a shell starts background jobs (a test run with '&') with
    # SIGINT ignored, exec keeps it ignored, and libfuse then leaves it so (fuse_set_signal_handlers
    # installs its handler only over SIG_DFL), so the mount kept running.
    p = subprocess.Popen([BIN, "mount", d + "/delta", mp, "--base", d + "/pair/base", "--foreground"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    MOUNTS.append(mp)
    try:
        end = time.time() + 20
        while not os.path.exists(mp + "/.tenpak/stats.json") and time.time() < end:
            time.sleep(0.05)
        assert is_mounted(mp), "foreground mount never became ready"
        assert sha256(mp + "/config.json") == sha256(d + "/pair/finetune/config.json")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, (p.returncode, err)
        assert not is_mounted(mp)
        MOUNTS.remove(mp)
    finally:
        if p.poll() is None:
            p.kill()


def t_sigint_to_a_daemon_started_by_a_background_job():
    """A daemon started where SIGINT is ignored (a shell's background job: 'tenpak mount ... &' in a
    script) still unmounts on SIGINT, as README says: it has left the terminal's session."""
    d = make_pair("gen")
    mp = os.path.join(WORK, "bgmp")
    os.makedirs(mp, exist_ok=True)
    r = subprocess.run([BIN, "mount", d + "/delta", mp, "--base", d + "/pair/base", "--json", "--log", mp + ".log",
                        "--no-cache"], capture_output=True, text=True, timeout=120,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert r.returncode == 0, (r.returncode, r.stderr)
    MOUNTS.append(mp)
    pid = json.loads(r.stdout)["pid"]
    os.kill(pid, signal.SIGINT)
    assert wait_gone(pid, 30), "daemon ignored SIGINT"
    assert not is_mounted(mp), "SIGINT did not unmount"
    MOUNTS.remove(mp)


def t_sigterm_during_a_stalled_origin_read():
    """SIGTERM while a reader waits on a stalled origin: the daemon cancels the
    read and exits within about a second (libcurl looks at a cancel once a
    second), instead of waiting out the stall (8 s a request here, every
    retry stalls too: minutes with real timeouts)."""
    d = make_pair("gen")
    port_file = os.path.join(WORK, "stall.port")
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "remote", "fault_server.py")
    srv = subprocess.Popen([sys.executable, server, "--root", d + "/pair", "--port-file", port_file],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mp = os.path.join(WORK, "stallmp")
    reader = None
    try:
        end = time.time() + 10
        while not os.path.exists(port_file) and time.time() < end:
            time.sleep(0.05)
        with open(port_file) as f:
            port = int(f.read().strip())
        # HEAD (sizes, at mount time) is served normally; every GET stalls.
        base = f"http://127.0.0.1:{port}/f/stall-inf-term/base"
        info = mount(d + "/delta", mp, "--base", base, "--no-verify-base", "--no-cache", "--warm-mb", "0")
        reader = start_reader(mp, (
            "try:\n"
            "    b = os.pread(fd, 1 << 20, 4 << 20); print('read', len(b), flush=True)\n"
            "except OSError as e:\n"
            "    print('error', e.errno, flush=True)\n"))
        time.sleep(1.5)  # the read is now waiting in the stall
        assert reader.poll() is None, "the read did not wait for the stalled origin"
        t0 = time.time()
        os.kill(info["pid"], signal.SIGTERM)
        assert wait_gone(info["pid"], 30), "daemon ignored SIGTERM"
        took = time.time() - t0
        log(f"    SIGTERM during a stalled base read: daemon gone in {took:.2f} s")
        assert took < 6.0, f"the daemon waited out the stall ({took:.1f} s; the stall is 8 s)"
        assert not is_mounted(mp), "SIGTERM did not unmount"
        MOUNTS.remove(mp)
        out, err = reader.communicate(timeout=20)
        # The reader gets an error (the read was cancelled, or the connection
        # went away), never bytes that were not rebuilt.
        assert out.startswith("error"), (out, err)
    finally:
        if reader and reader.poll() is None:
            reader.kill()
        srv.terminate()
        srv.wait()


def t_keep_served_mb():
    """--keep-served-mb: frames read whole stay in the daemon's cache up to
    that many MiB (default 4), then leave first."""
    d = make_pair("gen")
    mp = os.path.join(WORK, "keepmp")
    for keep, expect_dropped in (("64", False), (None, True)):
        extra = ("--keep-served-mb", keep) if keep else ()
        mount(d + "/delta", mp, "--base", d + "/pair/base", "--no-cache", "--warm-mb", "0", *extra)
        for name in os.listdir(d + "/pair/finetune"):
            assert sha256(os.path.join(mp, name)) == sha256(os.path.join(d + "/pair/finetune", name)), name
        fc = json.loads(tp("stats", mp, "--json").stdout)["frame_cache"]
        unmount(mp)
        assert (fc["spent_evictions"] > 0) == expect_dropped, (keep, fc)
        assert fc["evictions"] == 0, fc  # the 64 MiB limit is never reached by this 8 MB model
        if not expect_dropped:
            assert fc["spent_bytes"] == fc["bytes"] > 4 << 20, fc
        else:
            assert fc["spent_bytes"] <= 4 << 20, fc


def t_scattered_rereads():
    """After a whole read, the kernel drops scattered pages of the file
    (posix_fadvise DONTNEED stands in for memory pressure); reading the file
    again asks the daemon for just those pages, which must rebuild the frames
    they touch and prefetch nothing (the rest is still in the page cache)."""
    d = make_pair("gen")
    mp = os.path.join(WORK, "rereadmp")
    mount(d + "/delta", mp, "--base", d + "/pair/base", "--warm-mb", "0")
    name = next(n for n in os.listdir(d + "/pair/finetune") if n.endswith(".safetensors"))
    path, orig = os.path.join(mp, name), os.path.join(d + "/pair/finetune", name)
    want = sha256(orig)
    assert sha256(path) == want
    s1 = json.loads(tp("stats", mp, "--json").stdout)
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        dropped = 0
        for off in range(256 << 10, size - 4096, 192 << 10):
            os.posix_fadvise(fd, off, 4096, os.POSIX_FADV_DONTNEED)
            dropped += 1
    finally:
        os.close(fd)
    assert sha256(path) == want
    s2 = json.loads(tp("stats", mp, "--json").stdout)
    unmount(mp)
    asked = s2["reads"] - s1["reads"]
    log(f"    {dropped} pages dropped: {asked} reads, {s2['frames_rebuilt'] - s1['frames_rebuilt']} frames rebuilt, "
        f"prefetch issued {s1['prefetch']['issued']} -> {s2['prefetch']['issued']}, "
        f"{s2['prefetch']['sparse_rereads']} sparse re-reads")
    if asked == 0 or (s2["bytes_served"] - s1["bytes_served"]) / asked >= 128 << 10:
        # A kernel whose page cache holds this file in large folios keeps or
        # drops whole folios: no scattered pages to test with.
        log("    (skipped: the kernel did not drop single pages of the FUSE file)")
        return
    assert s2["prefetch"]["sparse_rereads"] > 0, (s1, s2)
    assert s2["prefetch"]["issued"] == s1["prefetch"]["issued"], ("scattered re-reads prefetched", s1["prefetch"], s2["prefetch"])
    assert s2["frames_rebuilt"] - s1["frames_rebuilt"] <= asked, (s1, s2)
    # Frames rebuilt for a few pages leave the daemon's cache first.
    assert s2["frame_cache"]["bytes"] == s2["frame_cache"]["spent_bytes"], s2["frame_cache"]


def drop_file_pages(path):
    """Drops the page cache of every file under `path` (or of the file)."""
    files = [path] if os.path.isfile(path) else [os.path.join(r, n) for r, _, ns in os.walk(path) for n in ns]
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a file just written) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(path):
    r = subprocess.run(["fincore", "-n", "-b", "-o", "RES", path], capture_output=True, text=True)
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None


def takes_o_direct(path):
    """Whether `path`'s file system lets it be opened with O_DIRECT."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
        return True
    except OSError:
        return False


def t_base_read_direct_when_cold():
    """A cold read of the mount reads the base's ranges with O_DIRECT: the
    base's pages do not stay in the page cache beside the fine-tune's;
    --buffered-base reads it through the page cache. Bytes are right both ways."""
    d = make_pair("gen")
    base = next(os.path.join(d, "pair/base", n) for n in os.listdir(d + "/pair/base") if n.endswith(".safetensors"))
    name = next(n for n in os.listdir(d + "/pair/finetune") if n.endswith(".safetensors"))
    want = sha256(os.path.join(d + "/pair/finetune", name))
    mp = os.path.join(WORK, "directmp")
    if not takes_o_direct(base):
        log("    (skipped: the work directory's file system does not take O_DIRECT)")
        return
    if resident_bytes(base) is None:
        log("    (skipped: no fincore)")
        return
    seen = {}
    for extra in ((), ("--buffered-base",)):
        drop_file_pages(base)
        drop_file_pages(d + "/delta/tenpak.dat")
        if resident_bytes(base) != 0:
            log("    (skipped: cannot empty the base's page cache here)")
            return
        # The base's sha256 is checked at mount with an empty hash cache: that
        # check reads the whole base too.
        hc = os.path.join(WORK, "hashcache" + str(len(seen)))
        os.environ["TENPAK_HASH_CACHE"] = hc
        try:
            mount(d + "/delta", mp, "--base", d + "/pair/base", "--warm-mb", "0", "--metrics-port", "0", *extra)
        finally:
            del os.environ["TENPAK_HASH_CACHE"]
        assert sha256(os.path.join(mp, name)) == want, extra
        seen[extra] = resident_bytes(base)
        s = json.loads(tp("stats", mp, "--json").stdout)
        br, dr = s["base_reads"], s["delta_data_reads"]
        direct_metric = [l for l in metrics_of(mp).splitlines()
                         if l.startswith('tenpak_local_read_bytes_total{role="base",path="direct"}')]
        unmount(mp)
        if extra:  # nothing read direct, and reads through the page cache are not counted
            assert br == {"direct_bytes": 0, "page_cache_bytes": 0}, (extra, br)
            assert dr == {"direct_bytes": 0, "page_cache_bytes": 0}, (extra, dr)
        else:
            # The base's check at mount read every byte of this file cold
            # (hash cache empty, pages dropped): direct.
            assert br["direct_bytes"] >= os.path.getsize(base), (extra, br)
            # The delta's data file, cold too, is counted apart.
            assert dr["direct_bytes"] > 0, (extra, dr)
        # The same counter in Prometheus (read after the stats: never less).
        assert len(direct_metric) == 1 and int(direct_metric[0].rsplit(" ", 1)[1]) >= br["direct_bytes"], (direct_metric, br)
        assert os.listdir(hc), "the base's sha256 was not computed (hash cache not written)"
    log(f"    base bytes in the page cache after a cold read: {seen[()]} (default), {seen[('--buffered-base',)]} (--buffered-base)")
    assert seen[()] == 0, seen
    assert seen[("--buffered-base",)] > 0, seen


def t_base_on_fuse_read_through_page_cache():
    """A base on a network or FUSE file system is read through the page cache
    even when cold (O_DIRECT there skips the client's cache and readahead):
    here the base is served by another mount, a delta whose output is the
    pair's base."""
    d = make_pair("gen")
    rev = os.path.join(WORK, "gen-rev")  # rebuilds pair/base from pair/finetune
    if not os.path.exists(rev):
        tp("delta", "build", d + "/pair/finetune", d + "/pair/base", "-o", rev)
    mpa, mpb = os.path.join(WORK, "fusebase-a"), os.path.join(WORK, "fusebase-b")
    name = next(n for n in os.listdir(d + "/pair/finetune") if n.endswith(".safetensors"))
    mount(rev, mpa, "--base", d + "/pair/finetune", "--warm-mb", "0")
    try:
        try:
            fd = os.open(os.path.join(mpa, name), os.O_RDONLY | os.O_DIRECT)
            os.close(fd)
        except OSError:
            log("    (skipped: this kernel's FUSE does not take O_DIRECT, nothing to choose)")
            return
        drop_file_pages(d + "/delta/tenpak.dat")  # read direct where it can be: not a base read
        mount(d + "/delta", mpb, "--base", mpa, "--warm-mb", "0")
        try:
            assert sha256(os.path.join(mpb, name)) == sha256(os.path.join(d + "/pair/finetune", name))
            br = json.loads(tp("stats", mpb, "--json").stdout)["base_reads"]
        finally:
            unmount(mpb)
        # Read through the page cache, so not counted at all.
        assert br == {"direct_bytes": 0, "page_cache_bytes": 0}, br
        with open(mpb + ".log") as f:
            text = f.read()
        assert "is on fuse: read through the page cache" in text, text[-2000:]
    finally:
        unmount(mpa)


def t_refusals():
    d = make_pair("gen")
    # Missing mountpoint.
    r = tp("mount", d + "/delta", os.path.join(WORK, "nope"), "--base", d + "/pair/base", check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr, (r.returncode, r.stderr)
    # Non-empty mountpoint.
    full = os.path.join(WORK, "full")
    os.makedirs(full, exist_ok=True)
    open(full + "/x", "w").close()
    r = tp("mount", d + "/delta", full, "--base", d + "/pair/base", check=False)
    assert r.returncode == 6 and "not empty" in r.stderr, (r.returncode, r.stderr)
    # Wrong base: same sizes, different bytes -> sha256 mismatch, exit 3, nothing mounted.
    wrong = os.path.join(WORK, "wrongbase")
    if not os.path.exists(wrong):
        shutil.copytree(d + "/pair/base", wrong)
        st = [n for n in os.listdir(wrong) if n.endswith(".safetensors")][0]
        with open(os.path.join(wrong, st), "r+b") as f:
            f.seek(-100, 2)
            b = f.read(1)
            f.seek(-100, 2)
            f.write(bytes([b[0] ^ 1]))
    mp = os.path.join(WORK, "refmp")
    os.makedirs(mp, exist_ok=True)
    r = tp("mount", d + "/delta", mp, "--base", wrong, "--log", mp + ".log", check=False)
    assert r.returncode == 3 and "wrong base" in r.stderr, (r.returncode, r.stderr)
    assert not is_mounted(mp)
    # A base of another model: sizes differ -> exit 3 even without the sha256 check.
    other = make_pair("other", "fp32", 2)
    r = tp("mount", d + "/delta", mp, "--base", other + "/pair/base", "--no-verify-base", "--log", mp + ".log", check=False)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert not is_mounted(mp)
    # No usable base: the recorded location is gone and none is given.
    nob = os.path.join(WORK, "nobase")
    tp("delta", "build", d + "/pair/base", d + "/pair/finetune", "-o", nob, "--base-location", WORK + "/gone")
    r = tp("mount", nob, mp, "--log", mp + ".log", check=False)
    assert r.returncode != 0 and "--base" in r.stderr, (r.returncode, r.stderr)
    # Stale mount: kill -9 the daemon.
    info = mount(d + "/delta", mp, "--base", d + "/pair/base")
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_gone(info["pid"])
    try:
        os.statvfs(mp)
        raise AssertionError("expected ENOTCONN on a stale mount")
    except OSError as e:
        assert e.errno == errno.ENOTCONN, e
    r = tp("mount", d + "/delta", mp, "--base", d + "/pair/base", check=False)
    assert r.returncode == 6 and "stale" in r.stderr, (r.returncode, r.stderr)
    info = json.loads(tp("mount", d + "/delta", mp, "--base", d + "/pair/base", "--force-clean", "--json",
                         "--log", mp + ".log").stdout)
    assert sha256(mp + "/config.json") == sha256(d + "/pair/finetune/config.json")
    # Already mounted.
    r = tp("mount", d + "/delta", mp, "--base", d + "/pair/base", check=False)
    assert r.returncode == 6 and "already mounted" in r.stderr, (r.returncode, r.stderr)
    unmount(mp)


# --- remote origins: nginx on loopback, the persistent cache ---------------

def start_nginx(root, work):
    """nginx serving `root` on a free 127.0.0.1 port; returns (proc, url)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise AssertionError("nginx not installed (package nginx-light)")
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    os.makedirs(work + "/tmp", exist_ok=True)
    conf = work + "/nginx.conf"
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;
error_log {work}/error.log warn; events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; default_type application/octet-stream;
  client_body_temp_path {work}/tmp/body; proxy_temp_path {work}/tmp/proxy; fastcgi_temp_path {work}/tmp/fcgi;
  uwsgi_temp_path {work}/tmp/uwsgi; scgi_temp_path {work}/tmp/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    proc = subprocess.Popen([nginx, "-e", work + "/error.log", "-p", work, "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("nginx did not start")


def metrics_of(mp):
    """Prometheus text of the mount at `mp` (port read from its log)."""
    with open(mp + ".log") as f:
        ports = re.findall(r"metrics: http://127\.0\.0\.1:(\d+)/metrics", f.read())
    assert ports, "no metrics line in the log"
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[-1]}/metrics", timeout=10) as r:
        return r.read().decode()


def metric_sum(text, name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith(name + "{") or l.startswith(name + " "))


def t_http_origin_and_cache():
    d = make_pair("http", "bf16", 6)
    www = os.path.join(WORK, "www")
    os.makedirs(www, exist_ok=True)
    proc, url = start_nginx(www, os.path.join(WORK, "nginx"))
    try:
        # The delta records its base as a URL; base and delta only on the server.
        shutil.copytree(d + "/pair/base", www + "/base")
        tp("delta", "build", d + "/pair/base", d + "/pair/finetune", "-o", www + "/delta",
           "--base-location", url + "/base")
        ft = d + "/pair/finetune"
        mp = d + "/mp-http"
        # Default policy (slow): frames of slow codecs are cached, the others
        # are rebuilt from cached base and delta blocks; then `all`: every
        # frame is cached and the second mount rebuilds nothing.
        for policy in ("slow", "all"):
            cache = os.path.join(WORK, "http-cache-" + policy)
            fetched, stats = [], []
            for round_ in range(2):
                extra = () if policy == "slow" else ("--cache-frames", policy)
                mount(url + "/delta", mp, "--cache-dir", cache, "--metrics-port", "0", *extra)
                for name in os.listdir(ft):
                    assert sha256(os.path.join(mp, name)) == sha256(os.path.join(ft, name)), f"sha256 of {name} over HTTP"
                s = stable_stats(mp)
                assert f"--cache-frames {policy}" in tp("stats", mp).stdout
                stats.append(s["persistent_cache"] | {"frames_rebuilt": s["frames_rebuilt"]})
                m = metrics_of(mp)
                fetched.append(metric_sum(m, "tenpak_fetch_bytes_total"))
                assert metric_sum(m, "tenpak_fs_persistent_stored_total") == stats[-1]["stored"], m
                unmount(mp)
            first, second = stats
            log(f"    over HTTP, --cache-frames {policy}: first mount fetched {fetched[0]:.0f} bytes, second "
                f"{fetched[1]:.0f}; frames stored {first['stored']}, skipped {first['skipped']}; second mount "
                f"{second['hits']} cache hits, {second['frames_rebuilt']} rebuilt")
            assert first["frames"] == policy, first
            assert fetched[0] > 0, "the first mount fetched nothing?"
            assert fetched[1] == 0, f"second mount of a cached model fetched {fetched[1]} bytes ({policy})"
            assert first["hits"] == 0 and first["stored"] > 0, first
            assert first["stored"] + first["skipped"] == first["frames_rebuilt"], first
            # Every frame stored by the first mount is read back by the second.
            assert second["hits"] == first["stored"] and second["rejected"] == 0, (first, second)
            if policy == "all":
                assert first["skipped"] == 0 and second["frames_rebuilt"] == 0, (first, second)
            else:
                # The fixture's deltas mix fast codecs (copy_base, sub_lanes) with slow ones.
                assert first["skipped"] > 0, first
                assert second["frames_rebuilt"] == first["skipped"] and second["stored"] == 0, (first, second)
        # The offline commands take URLs too: verify with the base the delta
        # records (a URL), apply with --base URL, inspect over HTTP.
        r = tp("delta", "verify", url + "/delta", "--json")
        assert json.loads(r.stdout)["ok"], r.stdout
        out = d + "/applied-http"
        tp("delta", "apply", url + "/delta", "--base", url + "/base", "-o", out)
        for name in os.listdir(ft):
            assert sha256(os.path.join(out, name)) == sha256(os.path.join(ft, name)), f"apply over HTTP: {name}"
        info = json.loads(tp("delta", "inspect", url + "/delta", "--json").stdout)
        assert sorted(f["name"] for f in info["files"]) == sorted(os.listdir(ft)), info
        bad = tp("delta", "verify", url + "/no-such-delta", check=False)
        assert bad.returncode != 0 and url + "/no-such-delta" in bad.stderr, bad.stderr
        # A base URL serving other bytes is refused (sizes), never rebuilt into wrong output.
        other = d + "/other-base"
        shutil.copytree(d + "/pair/base", www + "/other-base")
        for name in os.listdir(www + "/other-base"):
            if name.endswith(".safetensors"):
                with open(os.path.join(www, "other-base", name), "ab") as f:
                    f.write(b"x")
        bad = tp("delta", "apply", url + "/delta", "--base", url + "/other-base", "-o", other, check=False)
        assert bad.returncode != 0 and not os.path.exists(other), (bad.returncode, bad.stderr)
        log(f"    delta verify/apply/inspect over HTTP: ok; wrong base URL refused: {bad.stderr.strip().splitlines()[-1]}")
        # build and estimate with a base URL: downloaded first (next to the
        # output, removed after), recorded as the base location.
        built = d + "/from-url/delta"
        os.makedirs(d + "/from-url")
        tp("delta", "build", url + "/base", ft, "-o", built)
        assert not [n for n in os.listdir(d + "/from-url") if n.startswith(".tenpak-download")], os.listdir(d + "/from-url")
        info = json.loads(tp("delta", "inspect", built, "--json").stdout)
        assert info["base_locations"] == [url + "/base"], info["base_locations"]
        assert json.loads(tp("delta", "verify", built, "--json").stdout)["ok"]
        est = json.loads(tp("delta", "estimate", url + "/base", ft, "--json").stdout)
        assert est["estimated"] and 0 < est["ratio"] < 1, est
        # A sharded model as the base URL: its index names the shards.
        shutil.copytree(ft, www + "/sharded")
        same = json.loads(tp("delta", "build", url + "/sharded", ft, "-o", d + "/from-url/same", "--json").stdout)
        assert same["tensors_identical"] == same["tensors"] > 0, same
        # A base URL whose index is not JSON, or names a shard outside the
        # model directory: a clear error, nothing written, nothing left over.
        for tag, index in (("garbage", "{not json"), ("escape", '{"weight_map": {"w": "../model.safetensors"}}')):
            os.makedirs(www + "/bad-" + tag)
            with open(www + "/bad-" + tag + "/model.safetensors.index.json", "w") as f:
                f.write(index)
            bad = tp("delta", "build", url + "/bad-" + tag, ft, "-o", d + "/from-url/bad", check=False)
            want = "not a safetensors index" if tag == "garbage" else "unsafe shard name"
            assert bad.returncode != 0 and want in bad.stderr and "model.safetensors.index.json" in bad.stderr, bad.stderr
            assert not os.path.exists(d + "/from-url/bad")
        bad = tp("delta", "build", url + "/no-such-base", ft, "-o", d + "/from-url/bad", check=False)
        assert bad.returncode != 0 and "no-such-base" in bad.stderr and not os.path.exists(d + "/from-url/bad"), bad.stderr
        assert not [n for n in os.listdir(d + "/from-url") if n.startswith(".tenpak-download")], os.listdir(d + "/from-url")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def t_default_log_in_state_dir():
    """A background mount without --log logs to $HOME/.local/state/tenpak
    (0700 directory, 0600 file), never to a predictable /tmp name; a link
    planted at the default name is refused, its target untouched."""
    d = make_pair("gen")
    home = os.path.join(WORK, "home")
    os.makedirs(home, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_STATE_HOME",)}
    env["HOME"] = home
    mp = os.path.join(WORK, "logmp")
    os.makedirs(mp, exist_ok=True)
    r = subprocess.run([BIN, "mount", d + "/delta", mp, "--no-cache", "--json"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, (r.returncode, r.stderr)
    MOUNTS.append(mp)
    logf = json.loads(r.stdout)["log"]
    state = os.path.join(home, ".local/state/tenpak")
    assert os.path.dirname(logf) == state, logf
    assert not os.path.exists("/tmp/tenpak-mount" + mp.replace("/", "_") + ".log"), "a log in /tmp"
    assert os.stat(state).st_mode & 0o777 == 0o700, oct(os.stat(state).st_mode)
    assert os.stat(logf).st_mode & 0o777 == 0o600, oct(os.stat(logf).st_mode)
    assert "mounted" in open(logf).read()
    unmount(mp)
    # A link at the default name (as another user could plant in /tmp before): refused, target untouched.
    victim = os.path.join(WORK, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.remove(logf)
    os.symlink(victim, logf)
    r = subprocess.run([BIN, "mount", d + "/delta", mp, "--no-cache"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 6 and "symbolic link" in r.stderr, (r.returncode, r.stderr)
    assert not is_mounted(mp)
    assert open(victim).read() == "precious\n"


def t_credentials_redacted():
    """User info in a URL (http://user:secret@host/...) never shows: not in
    the mount message, the log, /proc/mounts, stats, Prometheus labels, nor
    in the errors of an unreachable origin."""
    d = make_pair("cred", "bf16", 4)
    www = os.path.join(WORK, "www-cred")
    os.makedirs(www, exist_ok=True)
    proc, url = start_nginx(www, os.path.join(WORK, "nginx-cred"))
    try:
        shutil.copytree(d + "/pair/base", www + "/base")
        shutil.copytree(d + "/delta", www + "/delta")
        curl = url.replace("http://", "http://alice:s3cr3tpw@")
        mp = os.path.join(WORK, "mp-cred")
        info = mount(curl + "/delta", mp, "--base", curl + "/base", "--metrics-port", "0")
        ft = d + "/pair/finetune"
        for name in os.listdir(ft):
            assert sha256(os.path.join(mp, name)) == sha256(os.path.join(ft, name)), name
        shown = {"mount --json": json.dumps(info), "log": open(mp + ".log").read(),
                 "/proc/mounts": open("/proc/mounts").read(), "stats": tp("stats", mp, "--json").stdout,
                 "metrics": metrics_of(mp)}
        unmount(mp)
        for what, text in shown.items():
            assert "s3cr3tpw" not in text, f"password in {what}: " + "".join(
                l for l in text.splitlines(True) if "s3cr3tpw" in l)[:500]
        assert "tenpak_fetch_bytes_total" in shown["metrics"] and "***@" in shown["metrics"], "origin labels missing"
        r = tp("delta", "verify", curl + "/delta", "--base", "http://bob:hunter2pw@127.0.0.1:1/base", check=False)
        assert r.returncode == 7 and "hunter2pw" not in r.stderr and "127.0.0.1:1" in r.stderr, (r.returncode, r.stderr)
    finally:
        proc.terminate()
        proc.wait()


SHARD_GEN = r"""
import hashlib, json, os, sys, torch
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
base = {f"layers.{i}.w": torch.randn(64, 96, generator=g) for i in range(4)}
os.makedirs(out + "/base"); os.makedirs(out + "/ft")
torch.save(base, out + "/base/pytorch_model.bin")
ft = {k: v + 1e-3 * torch.randn(v.shape, generator=g) for k, v in base.items()}
shards = [dict(list(ft.items())[:2]), dict(list(ft.items())[2:])]
wm, digests = {}, {}
for i, sd in enumerate(shards):
    name = f"pytorch_model-{i + 1:05d}-of-00002.bin"
    torch.save(sd, out + "/ft/" + name)
    for k, v in sd.items():
        wm[k] = name
        digests[k] = hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()
json.dump({"metadata": {"total_size": sum(v.numel() * 4 for v in ft.values())}, "weight_map": wm},
          open(out + "/ft/pytorch_model.bin.index.json", "w"), indent=2)
json.dump({"model_type": "test"}, open(out + "/ft/config.json", "w"))
json.dump(digests, open(out + "/digests.json", "w"))
"""


def t_sharded_bin_finetune_as_loader_sees():
    """With --as-safetensors, a fine-tune published as
    pytorch_model-0000N-of-0000M.bin shards with their index is served as a
    loader expects converted files: safetensors
    shards with __metadata__ {"format": "pt"}, model.safetensors.index.json
    naming files that exist in the mount, no stale .bin index; every tensor
    equal to the original (torch from Debian generates the checkpoints;
    skipped without it)."""
    py = "/usr/bin/python3"
    if subprocess.run([py, "-c", "import torch"], capture_output=True).returncode != 0:
        log("    skip: /usr/bin/python3 has no torch")
        return
    d = os.path.join(WORK, "shardbin")
    if not os.path.exists(d + "/digests.json"):
        r = subprocess.run([py, "-c", SHARD_GEN, d], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    tp("delta", "build", "--as-safetensors", d + "/base/pytorch_model.bin", d + "/ft", "-o", d + "/delta")
    mp = os.path.join(WORK, "mp-shardbin")
    mount(d + "/delta", mp, "--base", d + "/base/pytorch_model.bin")
    try:
        names = sorted(os.listdir(mp))
        assert names == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                         "model.safetensors.index.json"], names
        idx = json.load(open(mp + "/model.safetensors.index.json"))
        digests = json.load(open(d + "/digests.json"))
        assert set(idx["weight_map"]) == set(digests), idx
        for tensor, shard in idx["weight_map"].items():
            assert os.path.exists(os.path.join(mp, shard)), f"{tensor}: the index names {shard}, not in the mount"
        for shard in sorted(set(idx["weight_map"].values())):
            with open(os.path.join(mp, shard), "rb") as f:
                buf = f.read()
            (n,) = struct.unpack_from("<Q", buf, 0)
            assert json.loads(buf[8:8 + n]).get("__metadata__") == {"format": "pt"}, f"{shard}: no format pt metadata"
            for name, b, e in st_tensors(buf):
                assert idx["weight_map"][name] == shard, (name, shard)
                assert hashlib.sha256(buf[b:e]).hexdigest() == digests[name], f"{name} differs from the checkpoint"
    finally:
        unmount(mp)


TORCH_CMP = r"""
import hashlib, json, sys, torch
digests = json.load(open(sys.argv[1]))
seen = set()
for f in sys.argv[2:]:
    for k, v in torch.load(f, weights_only=True).items():
        assert hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() == digests[k], (f, k)
        seen.add(k)
assert seen == set(digests), sorted(set(digests) - seen)
"""


def t_checkpoint_finetune_bit_exact():
    """By default a fine-tune published as PyTorch checkpoints is served as
    itself: the sharded pytorch_model-0000N-of-0000M.bin files and their
    .bin index under their own names with the original sha256, and
    torch.load(weights_only=True) of the mounted shards gives every tensor
    (Debian's torch; skipped without it); the real YOLOv5n .pt fine-tunes
    likewise against base.pt (when TENPAK_SHARED has them)."""
    py = "/usr/bin/python3"
    if subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
        d = os.path.join(WORK, "shardbin")
        if not os.path.exists(d + "/digests.json"):
            r = subprocess.run([py, "-c", SHARD_GEN, d], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        shutil.rmtree(d + "/delta-exact", ignore_errors=True)
        tp("delta", "build", d + "/base/pytorch_model.bin", d + "/ft", "-o", d + "/delta-exact")
        mp = os.path.join(WORK, "mp-shardexact")
        mount(d + "/delta-exact", mp, "--base", d + "/base/pytorch_model.bin")
        try:
            names = sorted(os.listdir(mp))
            assert names == sorted(os.listdir(d + "/ft")), names
            for n in names:
                assert sha256(os.path.join(mp, n)) == sha256(os.path.join(d, "ft", n)), f"{n}: sha256 differs"
            shards = [os.path.join(mp, n) for n in names if n.endswith(".bin")]
            r = subprocess.run([py, "-c", TORCH_CMP, d + "/digests.json", *shards], capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0, r.stderr
        finally:
            unmount(mp)
    else:
        log("    skip (shards): /usr/bin/python3 has no torch")
    data = os.path.join(SHARED, "data", "yolov5n") if SHARED else ""
    if not data or not os.path.isdir(data):
        log("    (skipped yolov5n: no TENPAK_SHARED/data/yolov5n)")
        return
    cat = os.path.join(WORK, "yolo-pt")
    fts = sorted(n for n in os.listdir(data) if n.startswith("ft-") and n.endswith(".pt"))
    for n in fts:
        out = os.path.join(cat, n[:-len(".pt")])
        if not os.path.exists(out):
            tp("delta", "build", data + "/base.pt", os.path.join(data, n), "-o", out)
    mp = os.path.join(WORK, "yolomp-pt")
    mount(cat, mp, "--base", data + "/base.pt")
    try:
        for n in fts:
            files = os.listdir(os.path.join(mp, n[:-len(".pt")]))
            assert files == [n], files
            assert sha256(os.path.join(mp, n[:-len(".pt")], n)) == sha256(os.path.join(data, n)), n
            log(f"    {n}: served as itself, sha256 equal")
    finally:
        unmount(mp)


def t_base_as_file_url():
    """A base given as the URL of a file (or a hub path of one) works as a
    local file path does, wherever a BASE is accepted: mount --base, verify,
    apply, build (downloaded, recorded) and a mount from the recorded
    location. Before, the URL was taken as a directory (.../x.safetensors/x.safetensors: 404)."""
    d = make_pair("fileurl", "bf16", 4)
    www = os.path.join(WORK, "www-fileurl")
    os.makedirs(www + "/b", exist_ok=True)
    proc, url = start_nginx(www, os.path.join(WORK, "nginx-fileurl"))
    try:
        st = [n for n in os.listdir(d + "/pair/base") if n.endswith(".safetensors")][0]
        shutil.copy(d + "/pair/base/" + st, www + "/b/" + st)
        furl = url + "/b/" + st
        ft = d + "/pair/finetune"
        # Built against the local file, then the same file by URL everywhere.
        tp("delta", "build", d + "/pair/base/" + st, ft, "-o", d + "/delta-file")
        tp("delta", "verify", d + "/delta-file", "--base", furl)
        tp("delta", "apply", d + "/delta-file", "--base", furl, "-o", d + "/out-fileurl")
        for name in os.listdir(ft):
            assert sha256(os.path.join(d + "/out-fileurl", name)) == sha256(os.path.join(ft, name)), name
        mp = os.path.join(WORK, "mp-fileurl")
        mount(d + "/delta-file", mp, "--base", furl)
        for name in os.listdir(ft):
            assert sha256(os.path.join(mp, name)) == sha256(os.path.join(ft, name)), f"{name} through the mount"
        unmount(mp)
        # build with BASE = the file URL: downloaded, recorded; mounted from the record.
        tp("delta", "build", furl, ft, "-o", d + "/delta-url")
        info = json.loads(tp("delta", "inspect", d + "/delta-url", "--json").stdout)
        assert info["base_locations"] == [furl], info["base_locations"]
        mount(d + "/delta-url", mp)
        for name in os.listdir(ft):
            assert sha256(os.path.join(mp, name)) == sha256(os.path.join(ft, name)), f"{name} from the recorded URL"
        unmount(mp)
    finally:
        proc.terminate()
        proc.wait()


def t_catalog_with_symlinked_model_dirs():
    """A catalog whose model directories are symbolic links serves each at
    the link's name (before: named by the resolved path, the mount failed)."""
    d = make_pair("gen")
    cat = os.path.join(WORK, "catalog-links")
    os.makedirs(cat + "/org", exist_ok=True)
    if not os.path.lexists(cat + "/org/linked"):
        os.symlink(d + "/delta", cat + "/org/linked")
    mp = os.path.join(WORK, "mp-catlinks")
    mount(cat, mp, "--base", d + "/pair/base")
    try:
        ft = d + "/pair/finetune"
        assert sorted(os.listdir(mp + "/org/linked")) == sorted(os.listdir(ft)), os.listdir(mp)
        for name in os.listdir(ft):
            assert sha256(os.path.join(mp, "org/linked", name)) == sha256(os.path.join(ft, name)), name
    finally:
        unmount(mp)


TESTS = [t_generated_files_match, t_random_reads_threads_and_processes, t_catalog_two_models, t_yolov5n_real_pairs,
         t_corrupt_frame_gives_eio_never_wrong_bytes, t_unmount_with_active_reader, t_sigterm_and_foreground,
         t_sigint_to_a_daemon_started_by_a_background_job,
         t_sigterm_during_a_stalled_origin_read, t_keep_served_mb, t_scattered_rereads, t_base_read_direct_when_cold,
         t_base_on_fuse_read_through_page_cache,
         t_refusals, t_http_origin_and_cache, t_default_log_in_state_dir,
         t_credentials_redacted, t_sharded_bin_finetune_as_loader_sees, t_checkpoint_finetune_bit_exact,
         t_base_as_file_url, t_catalog_with_symlinked_model_dirs]


def fuse_usable():
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse not accessible"
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        return "not root and no fusermount3"
    return None


def main():
    if not BIN:
        log("TENPAK_BIN not set")
        return 1
    why = fuse_usable()
    if why:
        log(f"SKIP: FUSE unusable here ({why})")
        return 77
    global WORK
    WORK = tempfile.mkdtemp(prefix="tenpak-mount-test-")
    # Every mount of this run caches in its own directory: a cache left by
    # another run must not hide a bug (e.g. serve a frame this run corrupts).
    os.environ["TENPAK_CACHE_DIR"] = os.path.join(WORK, "cache")
    only = sys.argv[1:]
    failed = 0
    try:
        for t in TESTS:
            if only and t.__name__ not in only:
                continue
            t0 = time.time()
            try:
                t()
                log(f"PASS {t.__name__} ({time.time() - t0:.1f} s)")
            except Exception:
                failed += 1
                log(f"FAIL {t.__name__}\n{traceback.format_exc()}")
                for mp in MOUNTS:
                    if os.path.exists(mp + ".log"):
                        with open(mp + ".log") as f:
                            log(f"--- {mp}.log (tail)\n" + "".join(f.readlines()[-15:]))
            finally:
                cleanup_mounts()
    finally:
        cleanup_mounts()
        shutil.rmtree(WORK, ignore_errors=True)
    log(f"{len(TESTS) - failed if not only else 'selected'} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
