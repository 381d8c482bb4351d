// The target of the context-call tests, consuming its request topic:
// "fail" is refused (PreconditionFailed), "boom" throws (an Exception),
// "slow" answers after 1.5s, anything else is answered "callee got <it>".
const { PreconditionFailed } = require('butter');

exports.handle = async (input) => {
  const v = input.toString();
  if (v === 'fail') throw new PreconditionFailed(`callee refuses ${v}`);
  if (v === 'boom') throw new Error('callee blew up');
  if (v === 'slow') await new Promise((resolve) => setTimeout(resolve, 1500));
  return `callee got ${v}`;
};
