#!/usr/bin/env python3
"""Peak memory of a command: ru_maxrss (what `/usr/bin/time -f %M` reports; it counts the pages of mapped
files the command touched, such as the inputs `tenpak dataset build` maps) and the peak of RssAnon (the
heap and other anonymous memory; /proc/PID/status sampled every 20 ms), plus its CPU seconds.

    bench/peak_mem.py CMD [ARGS...]

The command runs under a 7 GiB address-space limit (RLIMIT_AS), so that a run that would grow past what a
shared VM can give fails instead. docs/BENCHMARKS.md, Dataset deltas run 19.
"""
import resource
import subprocess
import sys
import time


def limit():
    resource.setrlimit(resource.RLIMIT_AS, (7 << 30, 7 << 30))


p = subprocess.Popen(sys.argv[1:], preexec_fn=limit, stdout=subprocess.DEVNULL)
peak_anon = 0
while p.poll() is None:
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    peak_anon = max(peak_anon, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.02)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print("rc=%d maxrss_MB=%.1f peak_anon_MB=%.1f cpu_s=%.2f"
      % (p.returncode, ru.ru_maxrss / 1024, peak_anon / 1024, ru.ru_utime + ru.ru_stime))
sys.exit(p.returncode)
