"""Emits to the stream its input names, and answers whether the pool
accepted the emit or, if it refused it, the error the handler saw."""


def handle(data, ctx):
    stream = data.decode()
    try:
        ctx.emit(stream, f"python emitted to {stream}", key="k")
    except Exception as e:
        return f"refused: {e}"
    return f"accepted {stream}"
