def handle(event, ctx):
    """Waits until the invocation is cancelled (or 10 s pass)."""
    if ctx.cancelled.wait(10):
        return "cancelled with " + ("time left" if ctx.remaining_ms() > 0 else "no time left")
    return "not cancelled"
