# An OpenFaaS-style http-mode function, in the shape of the python3-http
# template: index.py serves HTTP on $http_port and calls handler.handle.
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import handler


class Event:
    def __init__(self, body, headers, method, path):
        self.body, self.headers, self.method, self.path = body, headers, method, path


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        res = handler.handle(Event(body, self.headers, "POST", self.path), None)
        status = res.get("statusCode", 200)
        out = res.get("body", b"")
        if isinstance(out, str):
            out = out.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("http_port", "5000"))), Handler).serve_forever()
