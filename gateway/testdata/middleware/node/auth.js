'use strict';
// A middleware in Node (gateway TestMiddleware). Request phase: no token,
// a 401 of its own (short-circuit); a bad one, a typed error; a good one,
// X-User added to the request. Response phase: it appends itself to
// X-Order and says what it saw.
const { PreconditionFailed } = require('butter');

exports.handle = async (input, ctx) => {
  const r = ctx.request;
  if (ctx.options.phase === 'request') {
    if (input.length !== 0) throw new Error('the request phase got input');
    const token = r.headers['x-token'];
    if (token === 'boom') throw new PreconditionFailed('a token that explodes');
    if (token !== 'letmein') {
      ctx.response.status = 401;
      ctx.response.setHeader('WWW-Authenticate', 'Token');
      ctx.response.setHeader('Content-Type', 'application/json');
      return { error: 'no valid token', path: r.path };
    }
    ctx.response.setHeader('X-User', 'alice');
    return null;
  }
  const head = JSON.parse(input.toString());
  ctx.response.setHeader('X-Order', (head.headers['X-Order'] || []).concat(['auth']).join(','));
  ctx.response.setHeader('X-Auth-Saw', `${head.status} ${ctx.options.status}`);
  return null;
};

// echo is a handler behind the middleware: what it saw of the request.
exports.echo = async (input, ctx) => {
  const r = ctx.request;
  if (ctx.options.mode === 'fail') throw new Error('the handler failed');
  if (ctx.options.mode === 'create') {
    ctx.response.status = 201;
    ctx.response.setHeader('Location', '/items/1');
  }
  ctx.response.setHeader('Content-Type', 'application/json');
  return {
    user: r.headers['x-user'] || null, saw: r.headers['x-audit-saw-user'] || null,
    token: r.headers['x-token'] || null, body: input.toString(),
  };
};
