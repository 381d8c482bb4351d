// ingest turns a device's HTTP POST into a reading on the readings stream:
// the return value is produced to the function's output, keyed by device.
exports.handle = async (input, ctx) => {
  const reading = JSON.parse(input.toString());
  reading.device = ctx.params.device;
  reading.at = reading.at || new Date().toISOString();
  return { key: reading.device, value: reading };
};
