import sys


def handle(data, ctx):
    """Names which of the modules slow to import are loaded."""
    slow = ("asyncio", "inspect", "concurrent.futures", "ssl", "logging")
    return " ".join(m for m in slow if m in sys.modules)
