"""Protocol tests (proto_test.go): "log" logs one line at each level
through the context; "type:<T>" raises an exception of butter_type T;
"<KiB>:<c>" answers <KiB> KiB of the character c;
"hold" starts a child process that keeps the worker's fd 4 (worker to
pool) open, and nothing else, and answers the worker's pid: once the
worker is killed, the pool does not see it end (fd 4 stays open) until it
writes to the worker's fd 3; anything else is answered upper-cased."""

import os
import subprocess


def handle(data, ctx):
    if data == b"log":
        for level in ("debug", "info", "warn", "error"):
            ctx.log(level, f"python logs at {level}")
        return "logged"
    if data.startswith(b"type:"):
        e = RuntimeError(f"an error of type {data[5:].decode()}")
        e.butter_type = data[5:].decode()
        raise e
    if data == b"hold":
        subprocess.Popen(["sleep", "3600"], pass_fds=(4,), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return str(os.getpid())
    kib, sep, c = data.partition(b":")
    if sep and kib.isdigit() and len(c) == 1:
        return c * (int(kib) * 1024)
    return data.upper()
