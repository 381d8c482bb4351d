// The benchmarks' Node function: it answers its input unchanged.
exports.handle = async (input) => input;
