"""The HTTP contract in Python (gateway TestHTTPContract): the request as
ctx.request, and the answer's status and headers through ctx.response."""
import json

from butter import PreconditionFailed


def handle(data, ctx):
    mode = ctx.options.get("mode")
    if mode == "refuse":
        raise PreconditionFailed("refused on purpose")
    if mode == "create":
        item = json.loads(data)
        ctx.response.status = 201
        ctx.response.set_header("Location", "/items/" + item["name"])
        ctx.response.add_header("X-Multi", "a")
        ctx.response.add_header("X-Multi", "b")
        ctx.response.set_header("Content-Type", "application/json")
        return {"created": item["name"]}
    if mode == "notfound":
        ctx.response.status = 404
        ctx.response.set_header("X-Step", "python")
        return "no such item"
    if mode == "tag":
        ctx.response.set_header("X-Tag", "python")
        return data
    r = ctx.request
    if r is None:
        return {"request": None}
    return {"method": r.method, "path": r.path, "route": r.route, "params": r.params, "rawQuery": r.raw_query,
            "query": r.query, "custom": r.headers.get("x-custom"), "hop": r.headers.get("x-hop"),
            "auth": r.headers.get("authorization"), "remote": r.remote_addr, "requestId": r.request_id,
            "traceparent": r.traceparent, "body": data.decode()}
