exports.handle = async (input, ctx) => {
  await ctx.log('warn', `got ${input.length} bytes`);
  return 'logged';
};
