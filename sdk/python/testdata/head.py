"""ctx.request and ctx.response (test_worker.py): sets 201, Location and a
header of two values, and answers the request's method, path and query;
"fail" raises after setting them."""


def handle(data, ctx):
    ctx.response.status = 201
    ctx.response.set_header("Location", "/items/1")
    ctx.response.add_header("X-Multi", "a")
    ctx.response.add_header("X-Multi", "b")
    if data == b"fail":
        raise RuntimeError("failed after setting the head")
    r = ctx.request
    if r is None:
        return "no request"
    return f"{r.method} {r.path} {','.join(r.query['q'])}"
