// Default handler module: BUTTER_HANDLER "" or "handle" loads index.handle.
exports.handle = async (input) => Buffer.concat([Buffer.from('index:'), input]);
