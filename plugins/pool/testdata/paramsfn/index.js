// Answers with the call's route and query parameters.
exports.handle = (input, ctx) => ({ device: ctx.params.device, params: ctx.params });
