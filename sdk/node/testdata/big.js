// For batches: the input "<KiB>:<c>" answers <KiB> KiB of the character c,
// at once (no await), so that a batch's results pile up between flushes.
exports.handle = (input) => {
  const [kib, c] = input.toString().split(':');
  return Buffer.alloc(Number(kib) * 1024, c);
};
