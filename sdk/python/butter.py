"""Helpers for Butter functions written in Python.

Several outputs: return butter.outputs([a, b, ...]) (or ctx.outputs) from
the handler; each becomes a record of the function's output stream, with
its own id (docs/events.md, "Outputs"). Items are as a returned value
(bytes, str, anything else as JSON; None as no output); keyed(key, value)
gives one its own record key. A plain returned value, a list too, is one
output; returning None writes no record.

A function imports this module as `butter` when it runs in Butter's worker
(butter_worker.py puts this directory on sys.path). An exception with a
string attribute `butter_type` is reported with that type; any other
exception is reported as "Exception".
"""


class ButterError(Exception):
    """An error reported to the caller with the type butter_type."""

    butter_type = "Exception"


class PreconditionFailed(ButterError):
    """The input was refused (for example, it fails validation)."""

    butter_type = "PreconditionFailed"


class PostconditionFailed(ButterError):
    """The output was refused (the function could not produce a valid answer)."""

    butter_type = "PostconditionFailed"


class _Outputs:
    """Several outputs; the worker sends them as the outputs envelope."""

    __butter_outputs__ = True

    def __init__(self, items):
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise TypeError("butter: outputs takes a list")
        self.items = list(items)


class _Keyed:
    """An output of outputs([...]) with its own record key."""

    __butter_keyed__ = True

    def __init__(self, key, value):
        self.key = key
        self.value = value


def outputs(items):
    """Several outputs: return outputs([a, b, ...]) from the handler."""
    return _Outputs(items)


def keyed(key, value):
    """An output of outputs([...]) with its own record key."""
    return _Keyed(key, value)
