// An ES module handler, loaded with import() when require() refuses it.
export async function handle(input, ctx) {
  return `esm:${input}`;
}
