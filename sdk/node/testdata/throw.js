const { PreconditionFailed, PostconditionFailed } = require('butter');

exports.handle = async () => {
  throw new Error('boom');
};
exports.precondition = async (input) => {
  throw new PreconditionFailed(`bad input: ${input}`);
};
exports.postcondition = () => {
  throw new PostconditionFailed('bad output');
};
