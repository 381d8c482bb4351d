// Protocol tests (proto_test.go): "log" logs one line at each level
// through the context; "type:<T>" throws an error of butterType T;
// "<KiB>:<c>" answers <KiB> KiB of the character c,
// at once (no await: a batch's results pile up between flushes); anything
// else is answered upper-cased.
exports.handle = async (input, ctx) => {
  const s = input.toString();
  if (s === 'log') {
    for (const level of ['debug', 'info', 'warn', 'error']) await ctx.log(level, `node logs at ${level}`);
    return 'logged';
  }
  if (s.startsWith('type:')) {
    const err = new Error(`an error of type ${s.slice(5)}`);
    err.butterType = s.slice(5);
    throw err;
  }
  const m = /^(\d+):(.)$/.exec(s);
  if (m) return Buffer.alloc(Number(m[1]) * 1024, m[2]);
  return s.toUpperCase();
};
