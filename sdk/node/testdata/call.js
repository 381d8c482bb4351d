// Calls "scorer" with the input (timeout 250 ms, key k1) and answers the
// reply, or the CallError's name, type and reason.
exports.handle = async (input, ctx) => {
  try {
    const reply = await ctx.call('scorer', input, 250, 'k1');
    return `reply ${reply.toString()}`;
  } catch (err) {
    return `${err.name} ${err.type} ${err.reason} butterType=${err.butterType}`;
  }
};
// Does not catch the CallError.
exports.uncaught = async (input, ctx) => ctx.call('scorer', input);
