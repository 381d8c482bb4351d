import time


def handle(event, ctx):
    """Sleeps for the number of milliseconds given as input."""
    ms = int(event)
    time.sleep(ms / 1000)
    return f"slept {ms}"
