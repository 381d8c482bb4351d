def handle(event, ctx):
    """Answers with what the context says about the invocation."""
    return {
        "function": ctx.function,
        "options": ctx.options,
        "meta": ctx.meta,
        "params": ctx.params,
        "deadline": ctx.deadline,
        "remaining_ms": ctx.remaining_ms(),
        "cancelled": ctx.cancelled.is_set(),
    }
