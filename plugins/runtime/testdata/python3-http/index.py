# Butter's python3-http-style fixture (README.md): Flask served by
# waitress, calling function/handler.py's handle(event, context), as
# OpenFaaS's python3-http template documents its contract. Written for
# Butter's tests; not the template.
import os
import socket

from flask import Flask, request
from waitress import serve

from function import handler

app = Flask(__name__)


class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = socket.gethostname()


def answer(res):
    if not isinstance(res, dict):
        return str(res), 200
    return res.get("body", ""), res.get("statusCode", 200), res.get("headers", {})


@app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
def call_handler(path):
    return answer(handler.handle(Event(), Context()))


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("http_port", "5000")))
