// Emits an alert for every event, then passes the event on as its output.
exports.handle = async (input, ctx) => {
  await ctx.emit("alerts", "alert:" + input.toString(), "alerts-key");
  return input;
};
