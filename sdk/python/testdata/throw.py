from butter import PostconditionFailed, PreconditionFailed


def handle(event, ctx):
    raise ValueError("boom")


def precondition(event, ctx):
    raise PreconditionFailed(f"bad input: {event.decode()}")


def postcondition(event, ctx):
    raise PostconditionFailed("bad output")


class Custom(Exception):
    butter_type = "PreconditionFailed"


def custom(event, ctx):
    raise Custom("custom typed")
