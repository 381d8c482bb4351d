"""Fails as handlers do: "file" opens a file of the bundle that is not
there (the error names its path), "lines" raises a message of two lines."""

import os


def handle(data, ctx):
    if data == b"file":
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "missing.json")) as f:
            return f.read()
    raise RuntimeError("first line\nsecond line")
