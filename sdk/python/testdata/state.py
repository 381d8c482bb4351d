"""Per-key state: a counter per key, and the edge cases of ctx.state."""


def count(event, ctx):
    s = ctx.state.get() or {"n": 0}
    s["n"] += 1
    ctx.state.set(s)
    return {"key": ctx.state.key, "n": s["n"], "device": ctx.params.get("device")}


def remove(event, ctx):
    ctx.state.delete()
    return {"after": ctx.state.get()}


def fail(event, ctx):
    ctx.state.set({"n": 1000})
    raise RuntimeError("failed after a set")


def read(event, ctx):
    s = ctx.state.get()
    if s:
        s["n"] = -1  # mutating what get() returned changes nothing
    return {"state": ctx.state.get(), "key": ctx.state.key}


def try_set(event, ctx):
    try:
        ctx.state.set({"n": float("nan")} if event == b"nan" else {"n": 1})
        return "set"
    except (RuntimeError, TypeError) as e:
        return f"refused: {e}"
