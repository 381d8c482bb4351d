// Upper-cases its input; "fail" is refused (PreconditionFailed); "pid"
// answers the worker's pid.
exports.handle = async (input) => {
  const s = input.toString();
  if (s === 'pid') return String(process.pid);
  if (s === 'fail') {
    const err = new Error('refused');
    err.butterType = 'PreconditionFailed';
    throw err;
  }
  return s.toUpperCase();
};
