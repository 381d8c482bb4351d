"""Outputs, emits and metadata (issue 16, items 2 and 6): the input, JSON,
says what to do. n: how many outputs (0: none, 1: a plain value, more:
butter.outputs); emits: how many emits to "side" first; fail_once: fail
the first attempt of each event (after its emits); fail: refuse the
input; meta: answer ctx.event."""

import json

import butter

failed = set()


def handle(event, ctx):
    job = json.loads(event)
    for i in range(job.get("emits", 0)):
        ctx.emit("side", f"emit {i} of {job['id']}")
    if job.get("fail"):
        raise butter.PreconditionFailed(f"refused {job['id']}")
    if job.get("fail_once") and ctx.event.id not in failed:
        failed.add(ctx.event.id)
        raise RuntimeError(f"first attempt of {job['id']} fails")
    if job.get("meta"):
        e = dict(vars(ctx.event))
        e["http"] = vars(e["http"]) if e["http"] else None
        return e
    n = job.get("n", 0)
    if n == 0:
        return None
    if n == 1:
        return f"out 0 of {job['id']}"
    items = [f"out {i} of {job['id']}" for i in range(n)]
    if job.get("keyed"):
        items[-1] = butter.keyed("other", items[-1])
    return butter.outputs(items)
