"""Upper-cases its input; "fail" is refused (PreconditionFailed)."""


class Refused(Exception):
    butter_type = "PreconditionFailed"


def handle(data, ctx):
    if data == b"fail":
        raise Refused("refused")
    return data.upper()
