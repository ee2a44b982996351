#!/usr/bin/env python3
"""Cross-checks the generated checkpoints with Python's own readers (stdlib
only, nothing is unpickled): every checkpoint seed is a valid zip (CRCs
checked by zipfile.testzip) whose data.pkl disassembles with pickletools, and
every pickle seed disassembles. Usage: check_seeds.py WRITE_SEEDS_BINARY"""
import glob, io, os, pickletools, subprocess, sys, tempfile, zipfile

with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.argv[1], d], check=True)
    cks = sorted(glob.glob(os.path.join(d, "checkpoint", "*")))
    pks = sorted(glob.glob(os.path.join(d, "pickle", "*")))
    assert cks and pks, "no seeds written"
    for f in cks:
        z = zipfile.ZipFile(f)
        assert z.testzip() is None, f + ": bad CRC"
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
        assert len(pkl) == 1, f + ": no data.pkl"
        pickletools.dis(z.read(pkl[0]), out=io.StringIO())
    for f in pks:
        pickletools.dis(open(f, "rb").read(), out=io.StringIO())
    print(f"{len(cks)} checkpoints and {len(pks)} pickles are valid zip/pickle streams")
