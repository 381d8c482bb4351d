// Writes to stdout and stderr, including bytes that look like a frame header.
exports.handle = async (input) => {
  console.log('noise from the handler');
  process.stdout.write(Buffer.from([0, 0, 0, 5, 5, 0, 0, 0, 1]));
  console.error('more noise on stderr');
  return input;
};
