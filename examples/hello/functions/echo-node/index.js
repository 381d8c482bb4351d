// Echo: the answer is the event's body, unchanged.
exports.handle = async (input, ctx) => input;
