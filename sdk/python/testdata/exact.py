"""Several outputs, the event's metadata, numbered emits (docs/events.md)."""

import butter


def many(event, ctx):
    return butter.outputs([b"\x00\x01", "text", {"x": 1}, None, butter.keyed("k2", "b")])


def many_ctx(event, ctx):
    return ctx.outputs(["a"])


def event(event, ctx):
    e = dict(vars(ctx.event))
    e["http"] = vars(e["http"]) if e["http"] else None
    return e


def emits(event, ctx):
    ctx.emit("s", "a")
    ctx.emit("s", "b")
    return "done"
