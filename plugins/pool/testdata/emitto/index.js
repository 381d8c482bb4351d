// Emits to the stream its input names, and answers whether the pool
// accepted the emit or, if it refused it, the error the handler saw.
exports.handle = async (input, ctx) => {
  const stream = input.toString();
  try {
    await ctx.emit(stream, `node emitted to ${stream}`, 'k');
    return `accepted ${stream}`;
  } catch (err) {
    return `refused: ${err.message}`;
  }
};
