'use strict';
// POST /items: 201 Created with the new item's Location
// (docs/gateway.md, "The HTTP contract").
const { PreconditionFailed } = require('butter');

exports.handle = async (input, ctx) => {
  let item;
  try {
    item = JSON.parse(input.toString());
  } catch (err) {
    throw new PreconditionFailed(`the body is not JSON: ${err.message}`);
  }
  if (typeof item.name !== 'string' || item.name === '') throw new PreconditionFailed('the item needs a name');
  ctx.response.status = 201;
  ctx.response.setHeader('Location', `/items/${encodeURIComponent(item.name)}`);
  ctx.response.setHeader('Content-Type', 'application/json');
  return { ...item, created: true };
};
