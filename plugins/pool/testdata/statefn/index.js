// A counter per state key. The body selects what to do: {"op": "read"}
// answers without changing the state, {"op": "delete"} deletes it,
// {"op": "big"} sets a state over the limit,
// {"slow": true} waits between reading and writing the state, so that
// calls of one key that were not serialized would lose updates.
exports.handle = async (input, ctx) => {
  let body = {};
  try {
    body = JSON.parse(input.toString() || '{}');
  } catch {}
  if (body.op === 'read') return { key: ctx.state.key, state: ctx.state.get() };
  if (body.op === 'big') {
    ctx.state.set('x'.repeat(1000001));
    return null; // no output: the refusal is the status
  }
  if (body.op === 'delete') {
    ctx.state.delete();
    return { key: ctx.state.key, deleted: true };
  }
  const s = ctx.state.get() || { n: 0 };
  if (body.slow) await new Promise((resolve) => setTimeout(resolve, 20));
  s.n += 1;
  ctx.state.set(s);
  return { key: ctx.state.key, n: s.n };
};
