#!/usr/bin/env python3
"""A small HTTP/1.1 file server with byte-range support, for the download tests (no internet).

Serves the files of --root on 127.0.0.1 (--port, else one the OS chooses; printed as "port N"),
answering "Range: bytes=A-B" with 206 and Content-Range. GET /__stats answers the body bytes
served so far and the number of requests. Faults for the tests:
  --no-ranges         ignore Range headers (200 with the whole file)
  --die-after BYTES   exit abruptly once this many body bytes have been sent (mid-response)
  --lie               answer ranges with a Content-Range one byte off
"""
import argparse
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--no-ranges", action="store_true")
    parser.add_argument("--die-after", type=int, default=-1)
    parser.add_argument("--lie", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    lock = threading.Lock()
    stats = {"bytes": 0, "requests": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *unused):
            pass

        def send_body(self, data):
            with lock:
                stats["requests"] += 1
                allowed = len(data)
                if args.die_after >= 0:
                    allowed = max(0, min(len(data), args.die_after - stats["bytes"]))
                stats["bytes"] += allowed
            self.wfile.write(data[:allowed])
            if allowed < len(data):
                self.wfile.flush()
                os._exit(0)

        def do_GET(self):
            if self.path == "/__stats":
                body = ("bytes %d\nrequests %d\n" % (stats["bytes"], stats["requests"])).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            path = os.path.realpath(os.path.join(args.root, self.path.lstrip("/")))
            if not path.startswith(os.path.realpath(args.root)) or not os.path.isfile(path):
                self.send_error(404)
                return
            size = os.path.getsize(path)
            match = RANGE.match(self.headers.get("Range", ""))
            with open(path, "rb") as f:
                if match is None or args.no_ranges:
                    data = f.read()
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    self.send_body(data)
                    return
                first = int(match.group(1))
                last = int(match.group(2)) if match.group(2) else size - 1
                if first >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                last = min(last, size - 1)
                f.seek(first)
                data = f.read(last - first + 1)
            shown = first + 1 if args.lie else first
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (shown, last, size))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.send_body(data)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("port %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
