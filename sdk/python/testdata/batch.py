"""For batches: "fail" is refused; "log" logs through a context call first;
anything else answers upper-cased with its ce_id and its param n."""


class Refused(Exception):
    butter_type = "PreconditionFailed"


def handle(data, ctx):
    s = data.decode()
    if s == "fail":
        raise Refused("refused")
    if s == "log":
        ctx.log("info", "from a batch")
    return f"{s.upper()} {ctx.meta.get('ce_id')} {ctx.params.get('n', '-')}"
