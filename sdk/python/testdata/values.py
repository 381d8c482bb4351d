# Return values of each kind, chosen by the input.
VALUES = {
    "dict": {"a": 1, "b": [True, None]},
    "none": None,
    "number": 42,
    "str": "héllo",
    "bytearray": bytearray(b"raw"),
}


def handle(event, ctx):
    return VALUES[event.decode()]
