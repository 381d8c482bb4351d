// Emits the input (parsed as JSON) to stream "alerts" with key "d1", then answers.
exports.handle = async (input, ctx) => {
  await ctx.emit('alerts', JSON.parse(input.toString()), 'd1');
  return 'emitted';
};
// Catches a refused emit and answers with the reason.
exports.refused = async (input, ctx) => {
  try {
    await ctx.emit('nowhere', input);
    return 'accepted';
  } catch (err) {
    return `refused: ${err.message}`;
  }
};
