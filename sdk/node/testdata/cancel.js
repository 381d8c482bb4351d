// Waits until the invocation is cancelled (or 10 s pass), then answers.
exports.handle = (input, ctx) =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve('not cancelled'), 10000);
    ctx.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(`cancelled with ${ctx.remainingMs() > 0 ? 'time left' : 'no time left'}`);
    });
  });
