// Fails as handlers do: "file" reads a file of the bundle that is not
// there (the error names its path), "lines" throws a message of two lines.
const fs = require('fs');
const path = require('path');

exports.handle = async (input) => {
  if (input.toString() === 'file') return fs.readFileSync(path.join(__dirname, 'missing.json'));
  throw new Error('first line\nsecond line');
};
