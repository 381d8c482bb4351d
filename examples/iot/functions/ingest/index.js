// ingest turns a device's HTTP POST into a reading on the readings stream,
// keyed by device so that each device's readings stay in order. The emit is
// acknowledged by Kafka before the caller gets its answer.
exports.handle = async (input, ctx) => {
  const reading = JSON.parse(input.toString());
  reading.device = ctx.params.device;
  // The handler's span, when the platform traces the call (docs/observability.md).
  ctx.span.setAttribute('device', reading.device);
  reading.at = reading.at || new Date().toISOString();
  await ctx.emit('readings', reading, reading.device);
  return { accepted: true, device: reading.device, at: reading.at };
};
