// Calls the target its JSON input names ({"target", "value", "timeout_ms"})
// with ctx.call and answers {"ok": reply} or {"error": {type, message,
// name}}, the error as the handler caught it.
exports.handle = async (input, ctx) => {
  const { target, value, timeout_ms: timeoutMs } = JSON.parse(input.toString());
  try {
    const reply = await ctx.call(target, value, timeoutMs);
    return JSON.stringify({ ok: reply.toString() });
  } catch (err) {
    return JSON.stringify({ error: { type: err.type ?? null, message: err.message, name: err.name } });
  }
};
