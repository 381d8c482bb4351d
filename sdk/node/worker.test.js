'use strict';
// Tests of worker.js: each test spawns a real worker process whose fds 3 and 4
// are connected to this process, and speaks the frames of the protocol to it.
// Run with `node --test sdk/node/` from the repository root.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const WORKER = path.join(__dirname, 'worker.js');
const TESTDATA = path.join(__dirname, 'testdata');
const T = { HELLO: 1, INVOKE: 2, DATA: 3, END: 4, RESULT: 5, CANCEL: 6, CALL: 7, REPLY: 8, BATCH: 9, RESULTS: 10, HEAD: 11 };
const WAIT = 5000; // the deadline of every single wait, in ms

function frame(type, id, payload = Buffer.alloc(0)) {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUInt32BE(5 + payload.length, 0);
  b[4] = type;
  b.writeUInt32BE(id, 5);
  payload.copy(b, 9);
  return b;
}

function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Worker is the pool's side of one worker process.
class Worker {
  // spawn starts the worker with its fds 3 and 4 connected to this process.
  static spawn(handler, { concurrency = 1, env = {} } = {}) {
    const child = spawn(process.execPath, [WORKER], {
      cwd: TESTDATA,
      env: { ...process.env, BUTTER_PROTOCOL: '1', BUTTER_FUNCTION: 'fn', BUTTER_HANDLER: handler, BUTTER_CONCURRENCY: String(concurrency), ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    return new Worker(child, child.stdio[3], child.stdio[4], child.stdout, child.stderr);
  }

  constructor(child, input, output, stdout, stderr) {
    this.child = child;
    this.input = input;
    this.frames = [];
    this.waiters = [];
    this.ended = false;
    this.stdout = '';
    this.stderr = '';
    stdout.on('data', (d) => (this.stdout += d.toString('latin1')));
    stderr.on('data', (d) => (this.stderr += d.toString()));
    const streamEnd = (s) => new Promise((resolve) => s.on('close', resolve));
    this.exited = Promise.all([
      new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
      streamEnd(stdout),
      streamEnd(stderr),
    ]).then(([status]) => status);
    input.on('error', () => {}); // the worker may be gone before we write
    let buf = Buffer.alloc(0);
    output.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        this.push({ type: buf[4], id: buf.readUInt32BE(5), payload: buf.subarray(9, 4 + n) });
        buf = buf.subarray(4 + n);
      }
    });
    output.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  push(f) {
    const w = this.waiters.shift();
    if (w) w(f);
    else this.frames.push(f);
  }

  // next resolves with the next frame from the worker (null at EOF).
  // A wait that times out gives up its place, so no frame is lost.
  next(what = 'a frame', ms = WAIT) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.ended) return Promise.resolve(null);
    let waiter;
    const p = new Promise((resolve) => this.waiters.push((waiter = resolve)));
    return withDeadline(p, ms, what).catch((err) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw err;
    });
  }

  async expect(type, id) {
    const f = await this.next(`frame type ${type} id ${id}`);
    assert.ok(f, `expected frame type ${type} id ${id}, got EOF; stderr: ${this.stderr}`);
    assert.deepEqual([f.type, f.id], [type, id], `unexpected frame ${f.type}/${f.id}: ${f.payload}`);
    return f;
  }

  async hello() {
    const f = await this.expect(T.HELLO, 0);
    return JSON.parse(f.payload);
  }

  send(type, id, payload) {
    this.input.write(frame(type, id, payload));
  }

  sendJSON(type, id, v) {
    this.send(type, id, Buffer.from(JSON.stringify(v)));
  }

  invokeStart(id, meta = {}) {
    this.sendJSON(T.INVOKE, id, { function: 'fn', deadline: Date.now() + 30000, options: {}, meta: {}, ...meta });
  }

  invoke(id, input, meta) {
    this.invokeStart(id, meta);
    if (input.length) this.send(T.DATA, id, Buffer.from(input));
    this.send(T.END, id);
  }

  // result collects the output DATA frames of one invocation until its RESULT.
  async result(id) {
    const chunks = [];
    for (;;) {
      const f = await this.next(`the result of invocation ${id}`);
      assert.ok(f, `EOF before the result of ${id}; stderr: ${this.stderr}`);
      assert.equal(f.id, id, `frame of another invocation: ${f.type}/${f.id}`);
      if (f.type === T.DATA) chunks.push(f.payload);
      else if (f.type === T.RESULT) return { output: Buffer.concat(chunks), result: JSON.parse(f.payload), chunks };
      else assert.fail(`unexpected frame ${f.type} in the output of ${id}: ${f.payload}`);
    }
  }

  closeInput() {
    this.input.end();
  }

  wait(what = 'the worker to exit') {
    return withDeadline(this.exited, WAIT, what);
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// withWorker starts a worker for handler, waits for its HELLO, calls fn, and kills
// the worker at the end whatever happened.
async function withWorker(handler, opts, fn) {
  const w = Worker.spawn(handler, opts);
  try {
    await w.hello();
    return await fn(w);
  } finally {
    w.kill();
  }
}

test('HELLO comes first, with protocol 1', async () => {
  const w = Worker.spawn('echo.handle');
  try {
    // executable: the node that runs it (the pool starts the next
    // instances with it when node on PATH is a version manager's shim).
    assert.deepEqual(await w.hello(), { protocol: 1, sdk: 'node/0.2', executable: process.execPath });
    w.closeInput();
    assert.deepEqual(await w.wait(), { code: 0, signal: null });
    assert.equal(await w.next(), null);
  } finally {
    w.kill();
  }
});

test('echo of a 3 MiB input sent as several DATA frames', () =>
  withWorker('echo.handle', {}, async (w) => {
    const input = crypto.randomBytes(3 * 1024 * 1024 + 17);
    w.invokeStart(1);
    for (let off = 0; off < input.length; off += 700 * 1024) w.send(T.DATA, 1, input.subarray(off, off + 700 * 1024));
    w.send(T.END, 1);
    const r = await w.result(1);
    assert.deepEqual(r.result, {});
    assert.ok(r.output.equals(input), 'output differs from input');
    assert.ok(r.chunks.length >= 4, `expected several DATA frames, got ${r.chunks.length}`);
    for (const c of r.chunks) assert.ok(c.length <= 1 << 20, `DATA frame of ${c.length} bytes`);
  }));

test('empty input and the default handler module', async () => {
  for (const handler of ['', 'handle', 'index.handle']) {
    await withWorker(handler, {}, async (w) => {
      w.invoke(1, '');
      const r = await w.result(1);
      assert.equal(r.output.toString(), 'index:', `handler "${handler}"`);
      assert.deepEqual(r.result, {});
    });
  }
});

test('an ES module handler in a subdirectory', () =>
  withWorker('esm/handler.handle', {}, async (w) => {
    w.invoke(1, 'x');
    assert.deepEqual((await w.result(1)).output.toString(), 'esm:x');
  }));

test('return values: string, object, number, null, undefined', () =>
  withWorker('values.handle', {}, async (w) => {
    const want = { object: '{"a":1,"b":[true,null]}', null: '', undefined: '', number: '42', string: 'héllo' };
    let id = 0;
    for (const [input, output] of Object.entries(want)) {
      w.invoke(++id, input);
      const r = await w.result(id);
      assert.equal(r.output.toString('utf8'), output, input);
      assert.equal(r.chunks.length, output ? 1 : 0);
    }
  }));

test('two concurrent invocations with interleaved frames: the slow one finishes last', () =>
  withWorker('slow.handle', { concurrency: 2 }, async (w) => {
    w.invokeStart(1);
    w.invokeStart(2);
    w.send(T.DATA, 1, Buffer.from('6'));
    w.send(T.DATA, 2, Buffer.from('5'));
    w.send(T.DATA, 1, Buffer.from('00'));
    w.send(T.END, 1);
    w.send(T.END, 2);
    const first = await w.result(2);
    assert.equal(first.output.toString(), 'slept 5');
    const second = await w.result(1);
    assert.equal(second.output.toString(), 'slept 600');
    assert.deepEqual(second.result, {});
  }));

test('errors: a thrown Error, PreconditionFailed and PostconditionFailed', async () => {
  const cases = [
    ['throw.handle', { type: 'Exception', message: 'boom' }],
    ['throw.precondition', { type: 'PreconditionFailed', message: 'bad input: xyz' }],
    ['throw.postcondition', { type: 'PostconditionFailed', message: 'bad output' }],
  ];
  for (const [handler, error] of cases) {
    await withWorker(handler, {}, async (w) => {
      w.invoke(9, 'xyz');
      const r = await w.result(9);
      const { detail, ...got } = r.result.error || {};
      assert.deepEqual([r.output.length, got], [0, error], handler);
      // An Exception's stack is the detail, for the pool's log only; the
      // typed errors are the handler's answer and have none.
      if (error.type === 'Exception') assert.match(detail, /Error: boom\n\s+at /, handler);
      else assert.equal(detail, undefined, handler);
    });
  }
});

test('emit sends a CALL and resolves on the REPLY', () =>
  withWorker('emit.handle', {}, async (w) => {
    w.invoke(3, '{"t":21.5}');
    const call = await w.expect(T.CALL, 3);
    const msg = JSON.parse(call.payload);
    assert.deepEqual(msg, { seq: msg.seq, op: 'emit', stream: 'alerts', number: 1, key: 'd1', value: Buffer.from('{"t":21.5}').toString('base64') });
    assert.equal(typeof msg.seq, 'number');
    // Nothing more until the pool has answered.
    await assert.rejects(w.next('nothing', 200), /timed out/);
    w.sendJSON(T.REPLY, 3, { seq: msg.seq, ok: true });
    const r = await w.result(3);
    assert.equal(r.output.toString(), 'emitted');
    assert.deepEqual(r.result, {});
  }));

test('emit refused with ok=false rejects', () =>
  withWorker('emit.refused', {}, async (w) => {
    w.invoke(1, 'v');
    const call = JSON.parse((await w.expect(T.CALL, 1)).payload);
    assert.deepEqual([call.stream, call.key, call.value], ['nowhere', undefined, 'dg==']);
    w.sendJSON(T.REPLY, 1, { seq: call.seq, ok: false, error: 'unknown stream "nowhere"' });
    assert.equal((await w.result(1)).output.toString(), 'refused: unknown stream "nowhere"');
  }));

test('a refused emit the handler does not catch is an Exception', () =>
  withWorker('emit.handle', {}, async (w) => {
    w.invoke(2, '1');
    const call = JSON.parse((await w.expect(T.CALL, 2)).payload);
    w.sendJSON(T.REPLY, 2, { seq: call.seq, ok: false, error: 'unknown stream "alerts"' });
    const r = await w.result(2);
    assert.match(r.result.error.detail, /^Error: unknown stream "alerts"\n\s+at /);
    delete r.result.error.detail;
    assert.deepEqual(r.result, { error: { type: 'Exception', message: 'unknown stream "alerts"' } });
  }));

test('log sends a CALL with level and message; seq increases', () =>
  withWorker('log.handle', {}, async (w) => {
    const seqs = [];
    for (const id of [1, 2]) {
      w.invoke(id, 'abcd');
      const msg = JSON.parse((await w.expect(T.CALL, id)).payload);
      assert.deepEqual(msg, { seq: msg.seq, op: 'log', level: 'warn', message: 'got 4 bytes' });
      seqs.push(msg.seq);
      w.sendJSON(T.REPLY, id, { seq: msg.seq, ok: true });
      assert.equal((await w.result(id)).output.toString(), 'logged');
    }
    assert.ok(seqs.every((s) => Number.isInteger(s) && s > 0), `seqs ${seqs}`);
  }));

test('console.log in the handler goes to stdout and does not corrupt the protocol', async () => {
  const w = Worker.spawn('noisy.handle');
  try {
    await w.hello();
    w.invoke(1, 'payload');
    const r = await w.result(1);
    assert.equal(r.output.toString(), 'payload');
    w.closeInput();
    assert.equal((await w.wait()).code, 0);
    assert.match(w.stdout, /noise from the handler/);
    assert.ok(w.stdout.includes('\0\0\0\x05\x05\0\0\0\x01'));
    assert.match(w.stderr, /more noise on stderr/);
  } finally {
    w.kill();
  }
});

test('the context: function, options, meta, params, deadline', () =>
  withWorker('ctxinfo.handle', {}, async (w) => {
    const deadline = Date.now() + 20000;
    const meta = { 'content-type': 'application/json', 'param.device': 'd1', 'param.room': 'r2', 'ce-type': 't' };
    w.invoke(1, '', { function: 'ingest', deadline, options: { e: 's/a/b/' }, meta });
    const info = JSON.parse((await w.result(1)).output);
    assert.deepEqual(info.params, { device: 'd1', room: 'r2' });
    assert.deepEqual(info.meta, meta);
    assert.deepEqual(info.options, { e: 's/a/b/' });
    assert.equal(info.function, 'ingest');
    assert.equal(info.deadline, deadline);
    assert.ok(info.remainingMs > 15000 && info.remainingMs <= 20000, `remainingMs ${info.remainingMs}`);
    assert.equal(info.aborted, false);
  }));

test('CANCEL aborts ctx.signal and the RESULT still comes', () =>
  withWorker('cancel.handle', {}, async (w) => {
    w.invoke(5, '');
    w.invoke(6, '');
    w.send(T.CANCEL, 6);
    assert.equal((await w.result(6)).output.toString(), 'cancelled with time left');
    w.send(T.CANCEL, 99); // an id not in flight is ignored
    w.send(T.CANCEL, 5);
    assert.equal((await w.result(5)).output.toString(), 'cancelled with time left');
  }));

test('a handler module that does not exist: exit 1 with the reason on stderr, no HELLO', async () => {
  const w = Worker.spawn('missing.handle');
  try {
    assert.deepEqual(await w.wait(), { code: 1, signal: null });
    assert.match(w.stderr, /cannot load handler "missing\.handle"/);
    assert.match(w.stderr, /Cannot find module/);
    assert.equal(await w.next(), null);
  } finally {
    w.kill();
  }
});

test('a module without the export: exit 1', async () => {
  const w = Worker.spawn('echo.nothere');
  try {
    assert.equal((await w.wait()).code, 1);
    assert.match(w.stderr, /no exported function "nothere"/);
  } finally {
    w.kill();
  }
});

test('EOF on fd 3: in-flight invocations finish, then exit 0', async () => {
  const w = Worker.spawn('slow.handle', { concurrency: 2 });
  try {
    await w.hello();
    w.invoke(1, '300');
    w.invoke(2, '100');
    w.closeInput();
    const results = [await w.next(), await w.next(), await w.next(), await w.next()];
    assert.deepEqual(results.map((f) => [f.type, f.id]), [[T.DATA, 2], [T.RESULT, 2], [T.DATA, 1], [T.RESULT, 1]]);
    assert.equal(results[2].payload.toString(), 'slept 300');
    assert.deepEqual(await w.wait(), { code: 0, signal: null });
    assert.equal(await w.next(), null);
  } finally {
    w.kill();
  }
});

test('an unknown frame type: a message on stderr and exit 2', async () => {
  const w = Worker.spawn('echo.handle');
  try {
    await w.hello();
    w.send(42, 1, Buffer.from('?'));
    assert.deepEqual(await w.wait(), { code: 2, signal: null });
    assert.match(w.stderr, /unexpected frame type 42/);
  } finally {
    w.kill();
  }
});

test('protocol errors exit 2: an INVOKE for an id in flight, malformed JSON, a frame cut by EOF', async () => {
  for (const [what, send, message] of [
    ['an INVOKE for an id in flight', (w) => { w.invokeStart(5); w.invokeStart(5); }, /INVOKE for invocation 5, which is in flight/],
    ['malformed JSON', (w) => w.send(T.INVOKE, 5, Buffer.from('{"function":')), /malformed INVOKE payload/],
    ['a frame cut by EOF', (w) => { w.input.write(frame(T.INVOKE, 5, Buffer.from('{}')).subarray(0, 8)); w.closeInput(); }, /fd 3 closed inside a frame/],
  ]) {
    const w = Worker.spawn('echo.handle');
    try {
      await w.hello();
      send(w);
      assert.deepEqual(await w.wait(), { code: 2, signal: null }, what);
      assert.match(w.stderr, message, what);
    } finally {
      w.kill();
    }
  }
});

test('real pipes (FIFOs) on fds 3 and 4', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'butter-node-'));
  const [fifoIn, fifoOut] = [path.join(dir, 'in'), path.join(dir, 'out')];
  execFileSync('mkfifo', [fifoIn, fifoOut]);
  const child = spawn('/bin/sh', ['-c', 'exec "$0" "$1" 3<"$2" 4>"$3"', process.execPath, WORKER, fifoIn, fifoOut], {
    cwd: TESTDATA,
    env: { ...process.env, BUTTER_HANDLER: 'fds.handle' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const w = new Worker(child, fs.createWriteStream(fifoIn), fs.createReadStream(fifoOut), child.stdout, child.stderr);
  try {
    await w.hello();
    w.invoke(1, '');
    assert.deepEqual(JSON.parse((await w.result(1)).output), { fd3: 'fifo', fd4: 'fifo' });
    w.closeInput();
    assert.deepEqual(await w.wait(), { code: 0, signal: null });
  } finally {
    w.kill();
    // Should the worker never have opened the FIFOs, our opens of them are
    // still blocked: open the other ends once to release them.
    const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;
    for (const [file, flags] of [[fifoIn, O_RDONLY], [fifoOut, O_WRONLY]]) {
      try {
        fs.closeSync(fs.openSync(file, flags | O_NONBLOCK));
      } catch {}
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('state: get, set and delete travel in INVOKE and RESULT', () =>
  withWorker('state.count', {}, async (w) => {
    const meta = { 'param.device': 'd1' };
    w.invoke(1, '', { meta, state: { key: 'd1', value: { n: 41 } } });
    let r = await w.result(1);
    assert.deepEqual(JSON.parse(r.output), { key: 'd1', n: 42, device: 'd1' });
    assert.deepEqual(r.result, { state: { value: { n: 42 } } });
    // No state yet for the key.
    w.invoke(2, '', { meta, state: { key: 'd2', field: 'device' } });
    r = await w.result(2);
    assert.deepEqual(JSON.parse(r.output), { key: 'd2', n: 1, device: 'd1' });
    assert.deepEqual(r.result, { state: { value: { n: 1 } } });
  }));

test('state: delete is reported as deleted; an untouched state is not reported', async () => {
  await withWorker('state.remove', {}, async (w) => {
    w.invoke(1, '', { state: { key: 'd1', value: { n: 3 } } });
    const r = await w.result(1);
    assert.deepEqual(JSON.parse(r.output), { after: null });
    assert.deepEqual(r.result, { state: { deleted: true } });
  });
  await withWorker('state.read', {}, async (w) => {
    w.invoke(1, '', { state: { key: 'd1', value: { n: 3 } } });
    const r = await w.result(1);
    assert.deepEqual(JSON.parse(r.output), { state: { n: 3 }, key: 'd1' });
    assert.deepEqual(r.result, {});
  });
});

test('state: a failed call reports no change', () =>
  withWorker('state.fail', {}, async (w) => {
    w.invoke(1, '', { state: { key: 'd1' } });
    const r = await w.result(1);
    assert.match(r.result.error.detail, /^Error: failed after a set\n\s+at /);
    delete r.result.error.detail;
    assert.deepEqual(r.result, { error: { type: 'Exception', message: 'failed after a set' } });
  }));

test('state: set fails without a key, without a state block, and for what JSON cannot hold', () =>
  withWorker('state.trySet', {}, async (w) => {
    const cases = [
      [{ state: { key: '', field: 'device' } }, '', 'refused: butter: state: this call has no state key (the event has no "device" field, no record key and no Butter-State-Key header)'],
      [{}, '', 'refused: butter: state: function fn has no state block'],
      [{ state: { key: 'k' } }, 'fn', 'refused: butter: state: a function cannot be stored as JSON'],
    ];
    let id = 0;
    for (const [meta, input, want] of cases) {
      w.invoke(++id, input, meta);
      const r = await w.result(id);
      assert.equal(r.output.toString(), want);
      assert.deepEqual(r.result, {});
    }
    w.invoke(++id, '', { state: { key: 'k' } });
    assert.deepEqual((await w.result(id)).result, { state: { value: { n: 1 } } });
  }));

// batchPayload encodes a BATCH payload (docs/worker-protocol.md, "Batches").
function batchPayload(deadline, events) {
  const parts = [];
  const head = Buffer.alloc(12);
  head.writeBigInt64BE(BigInt(deadline), 0);
  head.writeUInt32BE(events.length, 8);
  parts.push(head);
  for (const [input, meta] of events) {
    const entries = Object.entries(meta);
    const n = Buffer.alloc(2);
    n.writeUInt16BE(entries.length, 0);
    parts.push(n);
    for (const [k, v] of entries) {
      const kb = Buffer.from(k);
      const vb = Buffer.from(v);
      const h = Buffer.alloc(2);
      h.writeUInt16BE(kb.length, 0);
      const l = Buffer.alloc(4);
      l.writeUInt32BE(vb.length, 0);
      parts.push(h, kb, l, vb);
    }
    const ib = Buffer.from(input);
    const l = Buffer.alloc(4);
    l.writeUInt32BE(ib.length, 0);
    parts.push(l, ib);
  }
  return Buffer.concat(parts);
}

// readResults decodes a RESULTS payload.
function readResults(p) {
  const first = p.readUInt32BE(0);
  const n = p.readUInt32BE(4);
  const out = [];
  let off = 8;
  for (let k = 0; k < n; k++) {
    if (p[off] === 0) {
      const len = p.readUInt32BE(off + 1);
      out.push({ output: p.toString('utf8', off + 5, off + 5 + len) });
      off += 5 + len;
    } else {
      const tl = p.readUInt16BE(off + 1);
      const type = p.toString('utf8', off + 3, off + 3 + tl);
      const ml = p.readUInt32BE(off + 3 + tl);
      out.push({ error: { type, message: p.toString('utf8', off + 7 + tl, off + 7 + tl + ml) } });
      off += 7 + tl + ml;
    }
  }
  assert.equal(off, p.length, 'bytes after the last result');
  return { first, results: out };
}

test('protocol 2: a BATCH runs in order, its CALLs carry the event index, and the first failure ends it', async () => {
  await withWorker('batch.handle', { env: { BUTTER_PROTOCOL: '2' } }, async (w) => {
    const events = [['a', { ce_id: 'i0', 'param.n': '0' }], ['log', { ce_id: 'i1' }], ['b', { ce_id: 'i2' }], ['fail', { ce_id: 'i3' }], ['c', { ce_id: 'i4' }]];
    w.send(T.BATCH, 9, batchPayload(Date.now() + 30000, events));
    const results = [];
    let call;
    while (results.length === 0 || !results[results.length - 1].error) {
      const f = await w.next('RESULTS of batch 9');
      assert.ok(f, `EOF; stderr: ${w.stderr}`);
      assert.equal(f.id, 9);
      if (f.type === T.CALL) {
        call = JSON.parse(f.payload);
        w.sendJSON(T.REPLY, 9, { seq: call.seq, ok: true });
        continue;
      }
      assert.equal(f.type, T.RESULTS, `frame ${f.type}`);
      const r = readResults(f.payload);
      assert.equal(r.first, results.length, 'results out of order');
      results.push(...r.results);
    }
    assert.deepEqual(results, [
      { output: 'A i0 0' },
      { output: 'LOG i1 -' },
      { output: 'B i2 -' },
      { error: { type: 'PreconditionFailed', message: 'refused' } },
    ]);
    assert.equal(call.op, 'log');
    assert.equal(call.index, 1);
  });
});

test('protocol 2: RESULTS frames stay within the 16 MiB frame limit, however large the outputs', async () => {
  await withWorker('big.handle', { env: { BUTTER_PROTOCOL: '2' } }, async (w) => {
    // Eight 3 MiB outputs held together would make a 24 MiB frame; 1000 KiB
    // then 15.5 MiB would make 16.5 MiB.
    const sizes = [3072, 3072, 3072, 3072, 3072, 3072, 3072, 3072, 1000, 15872];
    const events = sizes.map((kib, k) => [`${kib}:${String.fromCharCode(97 + k)}`, {}]);
    w.send(T.BATCH, 4, batchPayload(Date.now() + 30000, events));
    const outputs = [];
    while (outputs.length < sizes.length) {
      const f = await w.next('RESULTS of batch 4', 60000); // 40 MiB of frames: slow on a loaded machine
      assert.ok(f, `EOF after ${outputs.length} results; stderr: ${w.stderr}`);
      assert.deepEqual([f.type, f.id], [T.RESULTS, 4]);
      assert.ok(5 + f.payload.length <= 16 << 20, `a RESULTS frame of ${5 + f.payload.length} bytes`);
      const r = readResults(f.payload);
      assert.equal(r.first, outputs.length, 'results out of order');
      outputs.push(...r.results);
    }
    outputs.forEach((r, k) => {
      assert.ok(r.output, `event ${k}: ${JSON.stringify(r.error)}`);
      assert.equal(r.output.length, sizes[k] * 1024, `event ${k}'s output`);
      assert.equal(r.output[0], String.fromCharCode(97 + k));
    });
  });
});

test('a worker of a protocol 1 pool says 1 and takes no BATCH', async () => {
  const w = Worker.spawn('batch.handle', { env: { BUTTER_PROTOCOL: '1' } });
  try {
    assert.equal((await w.hello()).protocol, 1);
    w.send(T.BATCH, 1, batchPayload(0, [['a', {}]]));
    const status = await w.wait();
    assert.equal(status.code, 2);
    assert.match(w.stderr, /BATCH/);
  } finally {
    w.kill();
  }
});

test('ctx.call sends op call and resolves with the reply value', () =>
  withWorker('call.handle', {}, async (w) => {
    w.invoke(4, 'in');
    const msg = JSON.parse((await w.expect(T.CALL, 4)).payload);
    assert.deepEqual(msg, { seq: msg.seq, op: 'call', target: 'scorer', key: 'k1', timeout_ms: 250, value: Buffer.from('in').toString('base64') });
    w.sendJSON(T.REPLY, 4, { seq: msg.seq, ok: true, value: Buffer.from('42').toString('base64') });
    assert.equal((await w.result(4)).output.toString(), 'reply 42');
  }));

test('ctx.call rejects with a CallError carrying the error type', () =>
  withWorker('call.handle', {}, async (w) => {
    w.invoke(5, 'in');
    let msg = JSON.parse((await w.expect(T.CALL, 5)).payload);
    w.sendJSON(T.REPLY, 5, { seq: msg.seq, ok: false, error_type: 'PreconditionFailed', error: 'not a number' });
    assert.equal((await w.result(5)).output.toString(), 'CallError PreconditionFailed not a number butterType=undefined');
    w.invoke(6, 'in');
    msg = JSON.parse((await w.expect(T.CALL, 6)).payload);
    w.sendJSON(T.REPLY, 6, { seq: msg.seq, ok: false, error: 'unknown call target "scorer"' });
    assert.equal((await w.result(6)).output.toString(), 'CallError undefined unknown call target "scorer" butterType=undefined');
  }));

test('a CallError the handler does not catch is an Exception', () =>
  withWorker('call.uncaught', {}, async (w) => {
    w.invoke(7, 'in');
    const msg = JSON.parse((await w.expect(T.CALL, 7)).payload);
    assert.equal(msg.timeout_ms, undefined);
    w.sendJSON(T.REPLY, 7, { seq: msg.seq, ok: false, error_type: 'PreconditionFailed', error: 'no' });
    const r = await w.result(7);
    assert.equal(r.result.error.type, 'Exception');
    assert.equal(r.result.error.message, 'call scorer: PreconditionFailed: no');
  }));

test('outputs() returns the outputs envelope', () =>
  withWorker('exact.many', {}, async (w) => {
    w.invoke(1, 'x');
    const r = await w.result(1);
    assert.deepEqual(JSON.parse(r.output), {
      'butter.outputs': [{ base64: 'AAE=' }, { text: 'text' }, { value: { x: 1 } }, { value: null }, { key: 'k2', text: 'b' }],
    });
  }));

test('ctx.event is the metadata of the event', () =>
  withWorker('exact.event', {}, async (w) => {
    const meta = {
      ce_id: 'e1', ce_source: 'src', ce_type: 't', ce_subject: 'k', ce_time: '2026-12-03T08:00:00Z', 
      'butter.position': 'in/2/41', ce_traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', ce_ttl: '30s',
      ce_httpmethod: 'PUT', ce_httppath: '/p', ce_httpquery: 'a=1', ce_httpheaders: '{"x-a":"1"}',
    };
    w.invoke(1, 'x', { meta });
    const e = JSON.parse((await w.result(1)).output);
    assert.deepEqual(e, {
      id: 'e1', source: 'src', type: 't', subject: 'k', time: '2026-12-03T08:00:00Z', stream: 'in', partition: 2, offset: 41,
      traceparent: meta.ce_traceparent, ttl: '30s', http: { method: 'PUT', path: '/p', query: 'a=1', headers: { 'x-a': '1' } },
    });
    w.invoke(2, 'x', { meta: {} });
    const none = JSON.parse((await w.result(2)).output);
    assert.deepEqual([none.id, none.partition, none.http], [null, null, null]);
  }));

test('emits are numbered as the handler calls emit', () =>
  withWorker('exact.emits', {}, async (w) => {
    w.invoke(1, 'x');
    const calls = [JSON.parse((await w.expect(T.CALL, 1)).payload), JSON.parse((await w.expect(T.CALL, 1)).payload)];
    assert.deepEqual(calls.map((c) => [c.number, Buffer.from(c.value, 'base64').toString()]), [[1, 'a'], [2, 'b']]);
    for (const c of calls.reverse()) w.sendJSON(T.REPLY, 1, { seq: c.seq, ok: true });
    assert.equal((await w.result(1)).output.toString(), 'done');
  }));

const HTTP_META = { meta: { ce_httpmethod: 'POST', ce_httppath: '/items', ce_httpquery: 'q=1&q=2' } };

test('protocol 3: ctx.request, and ctx.response as one HEAD before the output; none for a failed call', () =>
  withWorker('head.handle', { env: { BUTTER_PROTOCOL: '3' } }, async (w) => {
    w.invoke(1, 'x', HTTP_META);
    const head = await w.expect(T.HEAD, 1);
    assert.deepEqual(JSON.parse(head.payload), { status: 201, headers: { Location: ['/items/1'], 'X-Multi': ['a', 'b'] } });
    assert.equal((await w.result(1)).output.toString(), 'POST /items 1,2');
    w.invoke(2, 'fail', HTTP_META);
    assert.equal((await w.result(2)).result.error.type, 'Exception');
    w.invoke(3, 'x');
    await w.expect(T.HEAD, 3);
    assert.equal((await w.result(3)).output.toString(), 'no request');
  }));

test('protocol 2: no HEAD', () =>
  withWorker('head.handle', { env: { BUTTER_PROTOCOL: '2' } }, async (w) => {
    w.invoke(1, 'x', HTTP_META);
    assert.equal((await w.result(1)).output.toString(), 'POST /items 1,2');
  }));
