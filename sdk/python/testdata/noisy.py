import sys


def handle(event, ctx):
    """Prints to stdout and stderr, including bytes that look like a frame."""
    print("noise from the handler")
    sys.stdout.buffer.write(b"\x00\x00\x00\x05\x05\x00\x00\x00\x01")
    sys.stdout.flush()
    print("more noise on stderr", file=sys.stderr)
    return event
