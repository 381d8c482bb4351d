"""Counts events per device: the state block's key is "device"."""

import json


def handle(event, ctx):
    e = json.loads(event)
    s = ctx.state.get() or {"count": 0}
    s["count"] += 1
    ctx.state.set(s)
    return {"device": e["device"], "seq": e["seq"], "count": s["count"]}
