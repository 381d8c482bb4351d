"""The pool's handling of HEAD (head_test.go). "forbidden" sets a status
outside 200-599 and headers a function may not set, with one it may;
"late", "twice" and "badjson" write raw frames through the worker's own
send (the worker module, butter_worker), as a misbehaving SDK would: a
HEAD after output, a second HEAD, a HEAD that is not JSON."""
import butter_worker as worker


def handle(data, ctx):
    if data == b"forbidden":
        ctx.response.status = 700
        for name in ("Connection", "Content-Length", "Transfer-Encoding", "X-Request-Id", "Butter-Status", "Butter-Extra"):
            ctx.response.set_header(name, "no")
        ctx.response.set_header("Bad Name", "no")
        ctx.response.set_header("X-Bad-Value", "a\nb")
        ctx.response.set_header("X-Ok", ["1", "2"])
        return "forbidden"
    if data == b"late":
        worker.send(worker.DATA, ctx._id, b"early ")
        worker.send(worker.HEAD, ctx._id, b'{"status": 201, "headers": {"X-Late": ["yes"]}}')
        return "output"
    if data == b"twice":
        worker.send(worker.HEAD, ctx._id, b'{"status": 201, "headers": {"X-First": ["yes"]}}')
        worker.send(worker.HEAD, ctx._id, b'{"status": 202, "headers": {"X-Second": ["yes"]}}')
        return "twice"
    if data == b"badjson":
        worker.send(worker.HEAD, ctx._id, b'{"status": 201')
        return "badjson"
    return data
