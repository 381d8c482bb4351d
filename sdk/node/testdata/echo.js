exports.handle = async (input) => input;
