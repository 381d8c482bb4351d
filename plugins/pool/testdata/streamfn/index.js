'use strict';
// A streaming echo (butter.stream): copies its input to its output as it
// comes, and logs the worker's peak RSS when done. "fail" in the first
// chunk fails after some output. It logs (a context call) 300 ms in,
// before it reads: the REPLY must get through while the input backs up.
const butter = require('butter');

exports.handle = butter.stream(async (input, output, ctx) => {
  ctx.response.setHeader('X-Streamed', 'node');
  // A context call while the input backs up past the worker's limit: its
  // REPLY must get through the held-back reader.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await ctx.log('info', 'node stream start');
  let first = true;
  for await (const chunk of input) {
    if (first && chunk.subarray(0, 4).toString() === 'fail') {
      output.write('partial');
      throw new butter.PreconditionFailed('node stream refuses fail');
    }
    first = false;
    if (!output.write(chunk)) await new Promise((resolve) => output.once('drain', resolve));
  }
  // VmHWM, the peak RSS of this process image: getrusage's maxrss would
  // count the pool's RSS at the fork, which an exec does not reset.
  const hwm = /VmHWM:\s+(\d+) kB/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1];
  await ctx.log('info', `node stream maxrss_kib=${hwm}`);
});
