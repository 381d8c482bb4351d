// ctx.request and ctx.response (worker.test.js): sets 201, Location and a
// header of two values, and answers the request's method and path; "fail"
// throws after setting them.
exports.handle = async (input, ctx) => {
  ctx.response.status = 201;
  ctx.response.setHeader('Location', '/items/1');
  ctx.response.appendHeader('X-Multi', 'a').appendHeader('X-Multi', 'b');
  if (input.toString() === 'fail') throw new Error('failed after setting the head');
  const r = ctx.request;
  return r ? `${r.method} ${r.path} ${r.query.getAll('q').join(',')}` : 'no request';
};
