"""Calls the target its JSON input names ({"target", "value", "timeout_ms"})
with ctx.call and answers {"ok": reply} or {"error": {type, message, name}},
the error as the handler caught it."""
import json

import butter


def handle(data, ctx):
    req = json.loads(data)
    timeout = req.get("timeout_ms")
    try:
        reply = ctx.call(req["target"], req["value"], timeout=None if timeout is None else timeout / 1000)
        return json.dumps({"ok": reply.decode()})
    except butter.CallError as e:
        return json.dumps({"error": {"type": e.type, "message": e.message, "name": type(e).__name__}})
