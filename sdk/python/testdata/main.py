# Default handler module: BUTTER_HANDLER "" or "handle" loads main.handle.
def handle(event, ctx):
    return b"main:" + event
