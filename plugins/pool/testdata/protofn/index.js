// Protocol tests (proto_test.go): "log" logs one line at each level
// through the context; "<KiB>:<c>" answers <KiB> KiB of the character c,
// at once (no await: a batch's results pile up between flushes); anything
// else is answered upper-cased.
exports.handle = async (input, ctx) => {
  const s = input.toString();
  if (s === 'log') {
    for (const level of ['debug', 'info', 'warn', 'error']) await ctx.log(level, `node logs at ${level}`);
    return 'logged';
  }
  const m = /^(\d+):(.)$/.exec(s);
  if (m) return Buffer.alloc(Number(m[1]) * 1024, m[2]);
  return s.toUpperCase();
};
