// threshold raises an alert for a reading above 30 degrees; any other
// reading makes no output, so no record.
exports.handle = async (input) => {
  const reading = JSON.parse(input.toString());
  if (reading.temperature <= 30) {
    return undefined;
  }
  return { device: reading.device, temperature: reading.temperature, alert: 'too hot' };
};
