// Outputs, emits and metadata (issue 16, items 2 and 6): the input, JSON,
// says what to do. n: how many outputs (0: none, 1: a plain value, more:
// butter.outputs); emits: how many emits to "side" first; fail_once:
// fail the first attempt of each event (after its emits); fail: refuse
// the input; meta: answer ctx.event.
const { outputs, keyed, PreconditionFailed } = require('butter');

const failed = new Set();

exports.handle = async (input, ctx) => {
  const job = JSON.parse(input.toString());
  for (let i = 0; i < (job.emits || 0); i++) await ctx.emit('side', `emit ${i} of ${job.id}`);
  if (job.fail) throw new PreconditionFailed(`refused ${job.id}`);
  if (job.fail_once && !failed.has(ctx.event.id)) {
    failed.add(ctx.event.id);
    throw new Error(`first attempt of ${job.id} fails`);
  }
  if (job.meta) return ctx.event;
  const n = job.n || 0;
  if (n === 0) return null;
  if (n === 1) return `out 0 of ${job.id}`;
  const list = [];
  for (let i = 0; i < n; i++) list.push(i === n - 1 && job.keyed ? keyed('other', `out ${i} of ${job.id}`) : `out ${i} of ${job.id}`);
  return outputs(list);
};
