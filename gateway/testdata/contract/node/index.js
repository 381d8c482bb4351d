'use strict';
// The HTTP contract in Node (gateway TestHTTPContract): the request as
// ctx.request, and the answer's status and headers through ctx.response.
const { PreconditionFailed } = require('butter');

exports.handle = async (input, ctx) => {
  const r = ctx.request;
  if (ctx.options.mode === 'refuse') throw new PreconditionFailed('refused on purpose');
  if (ctx.options.mode === 'create') {
    const item = JSON.parse(input.toString());
    ctx.response.status = 201;
    ctx.response.setHeader('Location', `/items/${item.name}`);
    ctx.response.appendHeader('X-Multi', 'a');
    ctx.response.appendHeader('X-Multi', 'b');
    ctx.response.setHeader('Content-Type', 'application/json');
    return { created: item.name };
  }
  if (ctx.options.mode === 'notfound') {
    ctx.response.status = 404;
    ctx.response.setHeader('X-Step', 'node');
    return 'no such item';
  }
  if (ctx.options.mode === 'tag') {
    ctx.response.setHeader('X-Tag', 'node');
    return input;
  }
  if (!r) return { request: null };
  return {
    method: r.method, path: r.path, route: r.route, params: r.params, rawQuery: r.rawQuery,
    query: Object.fromEntries([...new Set(r.query.keys())].map((k) => [k, r.query.getAll(k)])),
    custom: r.headers['x-custom'] || null, hop: r.headers['x-hop'] || null, auth: r.headers.authorization || null,
    remote: r.remoteAddr, requestId: r.requestId, traceparent: r.traceparent, body: input.toString(),
  };
};
