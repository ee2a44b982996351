#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 file server for TenPak's remote tests (stdlib only).

Serves files under --root on 127.0.0.1 (any free port, written to --port-file).
Plain paths behave like a correct CDN: HEAD gives size and ETag, GET with
"Range: bytes=a-b" gives 206. Paths of the form

    /f/MODE-N-TAG/relative/path

serve the same file but inject fault MODE into the first N GET responses of
that MODE-N-TAG (N = "inf": every response). TAG only makes counters unique.
Modes:
    500       status 500
    reset     connection reset (RST) before any response
    trunc     206 headers with the right length, half the body, then close
    shortlen  206 with the right Content-Range but one byte less of body/length
    badrange  206 with a Content-Range shifted by one byte
    full200   200 with the whole file (a server ignoring the range)
    stall     206, 1 KiB of the body, a STALL_S second pause, the rest
    trickle   206, the body at ~4 KiB/s (above a stall threshold, far below a useful rate)
    flip      206 with one bit flipped every 4096 bytes of the body
    changed   206 whose Content-Range says the file has another size
    etag      206 with another ETag than HEAD gave
    404, 401  that status (on HEAD too)
    gone      404 to GET (HEAD is fine): a file deleted after it was opened
    nohead    405 to HEAD (GET is fine): the size comes from a 0-0 range request
The server stops on SIGTERM or when its parent process dies.
"""
import argparse
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Long against the clients' 1 s low-speed window: libcurl samples its
# transfer speed once per wall-clock second, so depending on where the
# stall falls between second boundaries it notices only after up to ~3 s;
# with a 3 s stall the rest of the body sometimes arrived first (a flaky
# "no retry" in FaultTest.TransientFaultsAreHiddenByRetries under load).
STALL_S = 8.0
counts = {}
lock = threading.Lock()


def take_fault(spec):
    """True when this GET under spec ("MODE-N-TAG") must be faulty."""
    mode, n, _tag = spec.split("-", 2)
    with lock:
        c = counts.get(spec, 0)
        counts[spec] = c + 1
    return n == "inf" or c < int(n)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."

    def log_message(self, fmt, *args):  # quiet
        pass

    def resolve(self):
        path = self.path.split("?", 1)[0]
        m = re.match(r"^/f/([a-z0-9]+-(?:inf|\d+)-[A-Za-z0-9_]+)/(.*)$", path)
        spec = None
        if m:
            spec, path = m.group(1), "/" + m.group(2)
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if not full.startswith(os.path.realpath(self.root) + os.sep) or not os.path.isfile(full):
            return spec, None
        return spec, full

    def etag(self, full):
        st = os.stat(full)
        return '"%x-%x"' % (st.st_mtime_ns, st.st_size)

    def send_status(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        spec, full = self.resolve()
        mode = spec.split("-")[0] if spec else None
        if mode in ("404", "401"):
            return self.send_status(int(mode))
        if mode == "nohead":
            return self.send_status(405)
        if full is None:
            return self.send_status(404)
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(full)))
        self.send_header("ETag", self.etag(full))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        spec, full = self.resolve()
        mode = spec.split("-")[0] if spec else None
        if mode in ("404", "401"):
            return self.send_status(int(mode))
        if full is None:
            return self.send_status(404)
        size = os.path.getsize(full)
        m = re.match(r"^bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        with open(full, "rb") as f:
            if not m:
                data = f.read()
                a, b = 0, size - 1
            else:
                a, b = int(m.group(1)), min(int(m.group(2)), size - 1)
                if a >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                f.seek(a)
                data = f.read(b - a + 1)
        fault = mode is not None and take_fault(spec)
        if not fault or mode in ("ok", "nohead"):
            return self.reply(m is not None, a, b, size, data, self.etag(full))
        if mode == "500":
            return self.send_status(500)
        if mode == "gone":
            return self.send_status(404)
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if mode == "full200":
            with open(full, "rb") as f:
                return self.reply(False, 0, size - 1, size, f.read(), self.etag(full))
        if mode == "badrange":
            return self.reply(True, a + 1, b + 1, size, data, self.etag(full))
        if mode == "changed":
            return self.reply(True, a, b, size + 4096, data, self.etag(full))
        if mode == "etag":
            return self.reply(True, a, b, size, data, '"changed"')
        if mode == "flip":
            d = bytearray(data)
            for i in range(0, len(d), 4096):
                d[i] ^= 0x10
            return self.reply(True, a, b, size, bytes(d), self.etag(full))
        if mode == "shortlen":
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, size))
            self.send_header("Content-Length", str(len(data) - 1))
            self.end_headers()
            return self.wfile.write(data[:-1])
        if mode == "trickle":  # the whole body at ~4 KiB/s: above any stall threshold, far below a useful rate
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, size))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", self.etag(full))
            self.end_headers()
            try:
                for i in range(0, len(data), 1024):
                    self.wfile.write(data[i:i + 1024])
                    self.wfile.flush()
                    time.sleep(0.25)
            except OSError:
                self.close_connection = True
            return
        if mode in ("trunc", "stall"):
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, size))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", self.etag(full))
            self.end_headers()
            half = len(data) // 2 if mode == "trunc" else min(1024, len(data) // 2)
            self.wfile.write(data[:half])
            self.wfile.flush()
            if mode == "trunc":
                self.close_connection = True
                return
            time.sleep(STALL_S)
            try:
                self.wfile.write(data[half:])
            except OSError:
                self.close_connection = True
            return
        return self.send_status(400)

    def reply(self, partial, a, b, size, data, etag):
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, size))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", etag)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    Handler.root = args.root
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    parent = os.getppid()

    def watchdog():  # never outlive the test process
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
