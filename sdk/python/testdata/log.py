def handle(event, ctx):
    ctx.log("warn", f"got {len(event)} bytes")
    return "logged"
