'use strict';
// The tests' handler, as a node20 template user writes one.
module.exports = async (event, context) => {
  if (event.path.endsWith('/boom')) throw new Error('the handler failed on purpose');
  if (event.method === 'POST' && event.path.endsWith('/items')) {
    return context
      .status(201)
      .headers({ Location: `/items/${event.body.name}`, 'X-Fixture': 'node20' })
      .succeed({ created: event.body.name, count: event.body.count + 1 });
  }
  return context.status(200).succeed({
    method: event.method,
    path: event.path,
    query: event.query,
    contentType: event.headers['content-type'] || null,
    custom: event.headers['x-custom'] || null,
    body: typeof event.body === 'object' && !Buffer.isBuffer(event.body) ? event.body : String(event.body || ''),
  });
};
