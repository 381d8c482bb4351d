# An http-runtime function that streams (gateway TestHTTPRuntimeStreams):
# GET .../stream answers 201 with X-Stream, writes "first\n", and writes
# "last\n" only once POST .../release came, so a caller that reads
# "first" before it releases has seen the status, the headers and the
# start of the body while the body was still being written. GET .../hang
# answers nothing until released (TestHTTPRuntimeTimeout).
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

released = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/hang"):
            released.wait(60)
        self.send_response(201)
        self.send_header("X-Stream", "yes")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"first\n")
        self.wfile.flush()
        released.wait(60)
        self.wfile.write(b"last\n" if released.is_set() else b"never released\n")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        released.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["http_port"])), Handler).serve_forever()
