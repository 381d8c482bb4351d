// Per-key state: a counter per key.
exports.count = (input, ctx) => {
  const s = ctx.state.get() || { n: 0 };
  s.n++;
  ctx.state.set(s);
  return { key: ctx.state.key, n: s.n, device: ctx.params.device };
};

// Deletes the state, then shows what get() sees.
exports.remove = (input, ctx) => {
  ctx.state.delete();
  return { after: ctx.state.get() };
};

// Sets the state, then fails: the change must not be reported.
exports.fail = (input, ctx) => {
  ctx.state.set({ n: 1000 });
  throw new Error('failed after a set');
};

// Reads without changing; mutating what get() returned changes nothing.
exports.read = (input, ctx) => {
  const s = ctx.state.get();
  if (s) s.n = -1;
  return { state: ctx.state.get(), key: ctx.state.key };
};

// Tries to set the state and answers with the error message.
exports.trySet = (input, ctx) => {
  try {
    ctx.state.set(input.toString() === 'fn' ? () => 1 : { n: 1 });
    return 'set';
  } catch (err) {
    return `refused: ${err.message}`;
  }
};
