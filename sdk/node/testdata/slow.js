// Sleeps for the number of milliseconds given as input, then answers "slept N".
exports.handle = async (input) => {
  const ms = Number(input.toString());
  await new Promise((resolve) => setTimeout(resolve, ms));
  return `slept ${ms}`;
};
