"""detect raises an alert when a device's temperature jumps.

The state is per device (state { key = "device" }): the function maps
(reading, state) to (alert or None, new state). An alert is the output,
one record on the alerts stream; None is no output, and writes no record
(docs/events.md, "Outputs"), so the stream holds alerts only.
"""

import json

THRESHOLD = 5.0


def handle(event, ctx):
    reading = json.loads(event)
    ctx.span.set_attribute("device", reading["device"])
    state = ctx.state.get() or {}
    last = state.get("temperature")
    ctx.state.set({"temperature": reading["temperature"]})
    if last is not None and abs(reading["temperature"] - last) > THRESHOLD:
        ctx.span.add_event("alert", {"from": last, "to": reading["temperature"]})
        return {
            "device": reading["device"],
            "from": last,
            "to": reading["temperature"],
            "at": reading.get("at"),
        }
    return None
