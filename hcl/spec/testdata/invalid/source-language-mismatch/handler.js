exports.handle = (x) => x
