import json


def handle(event, ctx):
    """Emits the input (parsed as JSON) to stream "alerts" with key "d1"."""
    ctx.emit("alerts", json.loads(event), key="d1")
    return "emitted"


def refused(event, ctx):
    """Catches a refused emit and answers with the reason."""
    try:
        ctx.emit("nowhere", event)
        return "accepted"
    except Exception as e:
        return f"refused: {e}"
