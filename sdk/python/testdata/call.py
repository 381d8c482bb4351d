"""Calls "scorer" with the input (timeout 0.25 s, key k1) and answers the
reply, or the CallError's class, type and message."""
import butter


def handle(data, ctx):
    try:
        return b"reply " + ctx.call("scorer", data, timeout=0.25, key="k1")
    except butter.CallError as e:
        return f"{type(e).__name__} {e.type} {e.message} butter_type={getattr(e, 'butter_type', None)}"


def uncaught(data, ctx):
    return ctx.call("scorer", data)
