def handle(event, ctx):
    """Echo: the answer is the event's body, unchanged."""
    return event
