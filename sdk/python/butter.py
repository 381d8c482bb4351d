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


class CallError(RuntimeError):
    """A ctx.call failed. type is the callee's error type
    (PreconditionFailed, Exception, ...), Timeout when no reply came in time,
    CircuitOpen when the call was not sent because the target failed too
    often lately, Unavailable when it could not be sent, or None when the
    pool refused the call (a target the spec's calls list does not declare).
    It has no butter_type: not caught, it fails the handler as an Exception;
    raise PreconditionFailed to pass the callee's refusal on."""

    def __init__(self, target, type, message):
        self.target = target
        self.type = type
        self.message = message
        super().__init__(f"call {target}: {type}: {message}" if type else f"call {target}: {message}")


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


def stream(fn):
    """A streaming handler: @butter.stream def handle(input, output, ctx)
    gets its input as a file-like object (read(n), readline(), iteration
    over chunks as the body arrives) and writes its output with
    output.write(bytes) as it goes, so a body of any size passes through in
    bounded memory. Set ctx.response's status and headers before the first
    write. What the handler returns is ignored. On a stream, a batch's
    event is read whole and its output collected, as for a buffered
    handler."""
    if not callable(fn):
        raise TypeError("butter: stream takes a function (input, output, ctx)")
    fn.__butter_stream__ = True
    return fn
