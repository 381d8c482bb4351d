"""A middleware in Python (gateway TestMiddleware). Request phase: it adds
what it saw of the user to the request. Response phase: it masks a 500
with its own 503 when asked (X-Mask), fails when asked (X-Audit-Fail),
else records the status (X-Audit) and appends itself to X-Order."""
import json


def handle(data, ctx):
    r = ctx.request
    if ctx.options.get("phase") == "request":
        ctx.response.set_header("X-Audit-Saw-User", r.headers.get("x-user") or "nobody")
        return None
    head = json.loads(data)
    if head["status"] == 500 and r.headers.get("x-mask"):
        ctx.response.status = 503
        ctx.response.set_header("Content-Type", "text/plain")
        return "masked by audit"
    if r.headers.get("x-audit-fail"):
        raise RuntimeError("the audit store is unreachable")
    ctx.response.set_header("X-Audit", str(head["status"]))
    ctx.response.set_header("X-Order", ",".join(head["headers"].get("X-Order", []) + ["audit"]))
    return None
