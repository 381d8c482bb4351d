// Upper-cases its input; "fail" is refused (PreconditionFailed).
exports.handle = async (input) => {
  const s = input.toString();
  if (s === 'fail') {
    const err = new Error('refused');
    err.butterType = 'PreconditionFailed';
    throw err;
  }
  return s.toUpperCase();
};
