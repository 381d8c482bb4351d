"""A function that declares JSON input and output (gateway
TestSerializers): an order's total, what it saw of the request's
Content-Type and Accept, and its input echoed. A missing order answers
404, which the gateway passes on as the function made it (JSON: the pool
checks every output against the output_schema)."""
import json


def handle(data, ctx):
    doc = json.loads(data)
    if doc.get("missing"):
        ctx.response.status = 404
        ctx.response.set_header("Content-Type", "application/json")
        return {"total": 0, "error": "no such order"}
    headers = ctx.request.headers if ctx.request else {}
    ctx.response.set_header("Content-Type", "application/json")
    return {
        "total": sum(i["price"] * i["qty"] for i in doc["items"]),
        "seen": {"content_type": headers.get("content-type"), "accept": headers.get("accept")},
        "echo": doc,
    }
