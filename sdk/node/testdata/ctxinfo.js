// Answers with what the context says about the invocation.
exports.handle = async (input, ctx) => ({
  function: ctx.function,
  options: ctx.options,
  meta: ctx.meta,
  params: ctx.params,
  deadline: ctx.deadline.getTime(),
  remainingMs: ctx.remainingMs(),
  aborted: ctx.signal.aborted,
});
