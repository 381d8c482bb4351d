// For batches: "fail" is refused; "log" logs through a context call first;
// anything else answers upper-cased with its ce_id and its param n.
exports.handle = async (input, ctx) => {
  const s = input.toString();
  if (s === 'fail') {
    const err = new Error('refused');
    err.butterType = 'PreconditionFailed';
    throw err;
  }
  if (s === 'log') await ctx.log('info', 'from a batch');
  return `${s.toUpperCase()} ${ctx.meta.ce_id} ${ctx.params.n ?? '-'}`;
};
