"""Upper-cases its input; "fail" is refused (PreconditionFailed); "pid"
answers the worker's pid."""

import os


class Refused(Exception):
    butter_type = "PreconditionFailed"


def handle(data, ctx):
    if data == b"pid":
        return str(os.getpid())
    if data == b"fail":
        raise Refused("refused")
    return data.upper()
