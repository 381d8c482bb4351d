// Several outputs, the event's metadata, numbered emits (docs/events.md).
const { outputs, keyed } = require('butter');

exports.many = () => outputs([Buffer.from([0, 1]), 'text', { x: 1 }, null, keyed('k2', 'b')]);
exports.event = (input, ctx) => ctx.event;
// Two emits at once: numbered in the order the handler called emit.
exports.emits = async (input, ctx) => {
  await Promise.all([ctx.emit('s', 'a'), ctx.emit('s', 'b')]);
  return 'done';
};
