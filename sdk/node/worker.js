'use strict';
// Butter worker for Node: runs one function's handler and serves the worker
// protocol, versions 1 to 3 (docs/worker-protocol.md), on fd 3 (pool ->
// worker) and fd 4 (worker -> pool). Run as `node worker.js` in the bundle
// directory.
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const path = require('path');
const url = require('url');
const util = require('util');
const Module = require('module');
const { Readable, Writable } = require('stream');
const { CallError } = require('./butter.js');

const T = { HELLO: 1, INVOKE: 2, DATA: 3, END: 4, RESULT: 5, CANCEL: 6, CALL: 7, REPLY: 8, BATCH: 9, RESULTS: 10, HEAD: 11 };
// PROTOCOL is the version spoken: the newest both this SDK (3) and the pool
// (BUTTER_PROTOCOL) know. Version 3 adds HEAD (the answer's status and headers).
const PROTOCOL = Math.max(1, Math.min(3, Number(process.env.BUTTER_PROTOCOL) || 1));
const MAX_FRAME = 16 << 20; // largest frame length (type + id + payload)
const CHUNK = 1 << 20; // largest output DATA payload we send
// The node that runs this worker, read before the handler's code runs: the
// pool starts the function's next instances with it, past a version
// manager's shim (docs/worker-protocol.md, HELLO).
const EXECUTABLE = process.execPath || '';
const EMPTY = Buffer.alloc(0);

const invocations = new Map(); // id -> invocation
let handler = null;
// streamHandler is the handler when it is a streaming one (butter.stream);
// handler then wraps it for batches, whose events are whole.
let streamHandler = null;
// STREAM_HWM is how much input a streaming invocation buffers before the
// worker stops reading fd 3 (the pool's writes then wait: back-pressure
// to the caller), unless a context call awaits its REPLY, which must get
// through.
const STREAM_HWM = 4 << 20;
let input = null; // fd 3
const full = new Set(); // streaming invocations over STREAM_HWM
let out = null;
let flushed = Promise.resolve(); // settles when the last frame queued has been written
let closing = false; // fd 3 reached EOF

function die(code, message) {
  process.stderr.write(`butter worker: ${message}\n`);
  process.exit(code);
}

// `require('butter')` from a function resolves to this SDK's butter.js unless
// the bundle brings its own module of that name.
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  try {
    return resolveFilename.call(this, request, ...rest);
  } catch (err) {
    if (request === 'butter') return path.join(__dirname, 'butter.js');
    throw err;
  }
};

// loadHandler resolves BUTTER_HANDLER ("module.export"; "export" alone means
// module "index"; empty means "index.handle") relative to the working directory.
async function loadHandler(spec) {
  const dot = spec.lastIndexOf('.');
  const modName = dot < 0 ? 'index' : spec.slice(0, dot);
  const name = dot < 0 ? spec : spec.slice(dot + 1);
  const file = path.resolve(process.cwd(), modName);
  let mod;
  try {
    mod = require(file);
  } catch (err) {
    if (err.code !== 'ERR_REQUIRE_ESM') throw err;
    mod = await import(url.pathToFileURL(require.resolve(file)).href);
  }
  const fn = mod[name] ?? mod.default?.[name];
  if (typeof fn !== 'function') throw new Error(`module "${modName}" has no exported function "${name}"`);
  return fn;
}

// openFd wraps an inherited descriptor: net.Socket for pipes and sockets,
// an fs stream for anything else.
function openFd(fd, readable) {
  try {
    return new net.Socket({ fd, readable, writable: !readable, allowHalfOpen: true });
  } catch {
    return readable ? fs.createReadStream(null, { fd }) : fs.createWriteStream(null, { fd });
  }
}

// send writes one frame; the promise settles once it has been written.
function send(type, id, payload = EMPTY) {
  const frame = Buffer.allocUnsafe(9 + payload.length);
  frame.writeUInt32BE(5 + payload.length, 0);
  frame[4] = type;
  frame.writeUInt32BE(id, 5);
  payload.copy(frame, 9);
  return (flushed = new Promise((resolve) => out.write(frame, resolve)));
}

const json = (v) => Buffer.from(JSON.stringify(v));

function parse(payload, what) {
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch (err) {
    die(2, `malformed ${what} payload: ${err.message}`);
  }
}

// OUTPUTS marks the value of butter.outputs([...]) (butter.js): several
// outputs, sent as the outputs envelope (docs/events.md, "Outputs").
const OUTPUTS = Symbol.for('butter.outputs');
const KEYED = Symbol.for('butter.keyed');

// outputs is ctx.outputs and butter.outputs: the handler returns it.
function outputs(list) {
  if (!Array.isArray(list)) throw new TypeError('butter: outputs takes an array');
  return { [OUTPUTS]: list };
}

// envelope encodes several outputs: {"butter.outputs": [{value|text|base64, key?}]}.
function envelope(list) {
  const items = list.map((v) => {
    const item = {};
    if (v && v[KEYED]) {
      item.key = String(v.key);
      v = v.value;
    }
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) item.base64 = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    else if (typeof v === 'string') item.text = v;
    else item.value = v === undefined ? null : v;
    return item;
  });
  return Buffer.from(JSON.stringify({ 'butter.outputs': items }), 'utf8');
}

// event is ctx.event: the metadata of the event a call handles
// (docs/events.md, "What a function sees").
function event(meta) {
  // butter.position is "<stream>/<partition>/<offset>".
  const at = /^(.*)\/(\d+)\/(\d+)$/.exec(meta['butter.position'] || '');
  let http = null;
  if (meta.ce_httpmethod) {
    let headers = {};
    try {
      headers = JSON.parse(meta.ce_httpheaders || '{}');
    } catch {}
    http = { method: meta.ce_httpmethod, path: meta.ce_httppath || '', query: meta.ce_httpquery || '', headers };
  }
  return {
    id: meta.ce_id || null,
    source: meta.ce_source || null,
    type: meta.ce_type || null,
    subject: meta.ce_subject || null,
    time: meta.ce_time || null,
    stream: at ? at[1] : null,
    partition: at ? Number(at[2]) : null,
    offset: at ? Number(at[3]) : null,
    traceparent: meta.ce_traceparent || null,
    ttl: meta.ce_ttl || null,
    http,
  };
}

// request is ctx.request: the HTTP request a call came from, or null for an
// event that did not come from HTTP (docs/gateway.md, "Headers").
function request(meta, params) {
  if (!meta.ce_httpmethod) return null;
  let headers = {};
  try {
    headers = JSON.parse(meta.ce_httpheaders || '{}');
  } catch {}
  const rawQuery = meta.ce_httpquery || '';
  return {
    method: meta.ce_httpmethod,
    path: meta.ce_httppath || '',
    route: meta.ce_httproute || null,
    params,
    rawQuery,
    query: new URLSearchParams(rawQuery),
    headers,
    remoteAddr: meta.ce_httpremoteaddr || null,
    requestId: meta.ce_id || null,
    traceparent: meta.ce_traceparent || null,
  };
}

// Response is ctx.response: the status and headers of the answer to an HTTP
// call, sent (HEAD) before the output when the handler returns without an
// error. Header names are case-insensitive; a header may have several values.
class Response {
  constructor() {
    this.status = undefined; // 200 when never set
    this.headers = new Map(); // lower-case name -> [name, [values]]
  }
  setHeader(name, value) {
    const vs = Array.isArray(value) ? value.map(String) : [String(value)];
    this.headers.set(String(name).toLowerCase(), [String(name), vs]);
    return this;
  }
  appendHeader(name, value) {
    const h = this.headers.get(String(name).toLowerCase());
    if (!h) return this.setHeader(name, value);
    h[1].push(...(Array.isArray(value) ? value.map(String) : [String(value)]));
    return this;
  }
  getHeader(name) {
    const h = this.headers.get(String(name).toLowerCase());
    return h ? (h[1].length === 1 ? h[1][0] : h[1]) : undefined;
  }
  removeHeader(name) {
    this.headers.delete(String(name).toLowerCase());
    return this;
  }
  // head is the HEAD payload, or null when nothing was set (or the pool
  // predates protocol 3, which ignores it).
  head() {
    if (PROTOCOL < 3 || (this.status === undefined && this.headers.size === 0)) return null;
    const headers = {};
    for (const [name, vs] of this.headers.values()) headers[name] = vs;
    const status = Number(this.status) || 0;
    return json(status ? { status, headers } : { headers });
  }
}

// emitCall is the CALL of ctx.emit: n numbers the call's emits (from 1), so
// that a retried call's emits get the same ids.
function emitCall(stream, value, key, n, index) {
  const c = { op: 'emit', stream: String(stream), number: n };
  if (index !== undefined) c.index = index;
  if (key !== undefined && key !== null) c.key = String(key);
  c.value = toBuffer(value).toString('base64');
  return c;
}

// toBuffer: Buffer as is, string as UTF-8, null/undefined empty, outputs as
// their envelope, else JSON.
function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v && v[OUTPUTS]) return envelope(v[OUTPUTS]);
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v === null || v === undefined) return EMPTY;
  const s = JSON.stringify(v);
  return s === undefined ? EMPTY : Buffer.from(s, 'utf8');
}

// readFrames parses the byte stream into frames without copying more than once.
function readFrames(input, onFrame, onEnd) {
  let chunks = [];
  let have = 0;
  let need = 4;
  let length = -1;
  input.on('data', (chunk) => {
    chunks.push(chunk);
    have += chunk.length;
    while (have >= need) {
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have);
      const b = all.subarray(0, need);
      chunks = have > need ? [all.subarray(need)] : [];
      have -= need;
      if (length < 0) {
        length = b.readUInt32BE(0);
        if (length < 5 || length > MAX_FRAME) die(2, `bad frame length ${length}`);
        need = length;
      } else {
        onFrame(b[0], b.readUInt32BE(1), b.subarray(5));
        length = -1;
        need = 4;
      }
    }
  });
  input.on('end', () => (have > 0 || length >= 0 ? die(2, 'fd 3 closed inside a frame') : onEnd()));
  input.on('error', (err) => die(1, `reading fd 3: ${err.message}`));
}

// newState is ctx.state: the per-key state of a function with a state block
// (docs/state.md), sent in INVOKE's "state" ({key, field, value}). get()
// returns a fresh copy of the current state (null when there is none);
// set(v) replaces it with v as JSON, set(null) or delete() removes it. The
// change goes back in RESULT, and the pool keeps it only if the handler
// succeeds. result() is the RESULT's "state" as JSON text, or null.
function newState(fn, s) {
  let value = s && s.value !== undefined && s.value !== null ? JSON.stringify(s.value) : null;
  let changed = false;
  const change = (v) => {
    if (!s) throw new Error(`butter: state: function ${fn} has no state block`);
    if (!s.key) {
      throw new Error(`butter: state: this call has no state key (the event has no "${s.field}" field, no record key and no Butter-State-Key header)`);
    }
    const text = v === undefined ? 'null' : JSON.stringify(v);
    if (text === undefined) throw new TypeError(`butter: state: a ${typeof v} cannot be stored as JSON`);
    value = text === 'null' ? null : text;
    changed = true;
  };
  const api = {
    key: (s && s.key) || null,
    get: () => (value === null ? null : JSON.parse(value)),
    set: (v) => change(v),
    delete: () => change(null),
  };
  const result = () => (!changed ? null : value === null ? '{"deleted":true}' : `{"value":${value}}`);
  return [api, result];
}

// nowNs is the time in Unix nanoseconds (to a fraction of a microsecond).
function nowNs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}

// newSpan is ctx.span: the handler's span (docs/worker-protocol.md,
// "Spans"). When the pool traces the call (meta "butter.span"), it records
// attributes and events and goes back in RESULT; its traceparent, the
// child of the invocation's, is what the handler's own calls pass on.
// Otherwise it records nothing, and its traceparent is the invocation's.
function newSpan(meta) {
  const tp = meta.ce_traceparent || '';
  const noop = { recording: false, traceparent: tp || null, setAttribute() { return this; }, addEvent() { return this; } };
  if (meta['butter.span'] !== '1' || tp.length !== 55) return noop;
  const id = crypto.randomBytes(8).toString('hex');
  return {
    recording: true,
    id,
    startNs: nowNs(),
    attributes: {},
    events: [],
    traceparent: `00-${tp.slice(3, 35)}-${id}-${tp.slice(53)}`,
    setAttribute(key, value) {
      this.attributes[String(key)] = value;
      return this;
    },
    addEvent(name, attributes) {
      this.events.push({ name: String(name), time_ns: nowNs(), attributes: attributes || undefined });
      return this;
    },
  };
}

// spanResult is the RESULT's "span", or undefined.
function spanResult(span) {
  if (!span.recording) return undefined;
  return { id: span.id, start_ns: span.startNs, end_ns: nowNs(), attributes: span.attributes, events: span.events };
}

function newInvocation(id, m) {
  const controller = new AbortController();
  const inv = { id, input: [], started: false, done: false, seq: 0, calls: new Map(), controller };
  const meta = m.meta || {};
  const params = {};
  for (const [k, v] of Object.entries(meta)) if (k.startsWith('param.')) params[k.slice(6)] = v;
  const deadline = Number(m.deadline) || 0; // 0: none given
  const fn = m.function || process.env.BUTTER_FUNCTION || '';
  const [state, stateResult] = newState(fn, m.state);
  inv.stateResult = stateResult;
  let emits = 0;
  inv.ctx = {
    function: fn,
    options: m.options || {},
    meta,
    event: event(meta),
    request: request(meta, params),
    span: newSpan(meta),
    response: new Response(),
    outputs,
    params,
    state,
    deadline: deadline ? new Date(deadline) : null,
    signal: controller.signal,
    remainingMs: () => (deadline ? Math.max(0, deadline - Date.now()) : Infinity),
    log: (level, message) => call(inv, { op: 'log', level: String(level), message: String(message) }),
    emit: (stream, value, key) => call(inv, emitCall(stream, value, key, ++emits)),
    call: (target, value, timeoutMs, key) => ctxCall(inv, undefined, target, value, timeoutMs, key),
  };
  return inv;
}

// call sends a CALL; the promise settles with the matching REPLY. With raw,
// it resolves with the REPLY itself, ok or not.
function call(inv, msg, raw) {
  if (inv.done) return Promise.reject(new Error('butter: context call after the invocation finished'));
  if (closing) return Promise.reject(new Error('butter: the pool closed the connection'));
  const seq = ++inv.seq;
  const pending = { raw };
  const promise = new Promise((resolve, reject) => Object.assign(pending, { resolve, reject }));
  pending.promise = promise.then(() => {}, () => {});
  inv.calls.set(seq, pending);
  if (full.size) input.resume(); // the REPLY must get through
  send(T.CALL, inv.id, json({ seq, ...msg }));
  return raw ? promise : promise.then(() => undefined);
}

// ctxCall is ctx.call(target, value, timeoutMs, key): emit and await
// (docs/worker-protocol.md, "call"). It resolves with the reply as a Buffer,
// or rejects with a CallError whose type is the callee's error type,
// Timeout, CircuitOpen, ... (undefined when the pool refused the call).
function ctxCall(inv, index, target, value, timeoutMs, key) {
  const c = { op: 'call', target: String(target) };
  if (index !== undefined) c.index = index;
  if (key !== undefined && key !== null) c.key = String(key);
  if (timeoutMs !== undefined && timeoutMs !== null) {
    const ms = Math.ceil(Number(timeoutMs));
    if (!(ms > 0)) return Promise.reject(new TypeError(`butter: ctx.call: timeout ${timeoutMs} is not a positive number of milliseconds`));
    c.timeout_ms = ms;
  }
  c.value = toBuffer(value).toString('base64');
  return call(inv, c, true).then((reply) => {
    if (!reply.ok) throw new CallError(c.target, reply.error_type || undefined, reply.error || 'context call failed');
    return Buffer.from(reply.value || '', 'base64');
  });
}

function settleCall(inv, seq, reply) {
  const pending = inv.calls.get(seq);
  if (!pending) return;
  inv.calls.delete(seq);
  if (reply.ok || pending.raw) pending.resolve(reply);
  else pending.reject(new Error(reply.error || 'context call failed'));
}

// readBatch decodes a BATCH payload (docs/worker-protocol.md, "Batches"):
// the deadline, then each event's metadata and input (a view of payload).
function readBatch(p) {
  let off = 0;
  const need = (n) => {
    if (off + n > p.length) die(2, `malformed BATCH payload: ${n} bytes wanted at ${off} of ${p.length}`);
    const at = off;
    off += n;
    return at;
  };
  const deadline = Number(p.readBigInt64BE(need(8)));
  const count = p.readUInt32BE(need(4));
  if (count > p.length) die(2, `malformed BATCH payload: ${count} events in ${p.length} bytes`);
  const events = [];
  for (let k = 0; k < count; k++) {
    const meta = {};
    for (let pairs = p.readUInt16BE(need(2)); pairs > 0; pairs--) {
      const klen = p.readUInt16BE(need(2));
      const key = p.toString('utf8', need(klen), off);
      const vlen = p.readUInt32BE(need(4));
      meta[key] = p.toString('utf8', need(vlen), off);
    }
    const ilen = p.readUInt32BE(need(4));
    events.push({ meta, input: p.subarray(need(ilen), off) });
  }
  if (off !== p.length) die(2, `malformed BATCH payload: ${p.length - off} bytes after the last event`);
  return { deadline, events };
}

// Results of a batch are held and written together in RESULTS frames:
// after the first FLUSH_FIRST, then every FLUSH_EVERY, every FLUSH_MS while
// the batch runs, and at its end.
const FLUSH_FIRST = 8;
const FLUSH_EVERY = 32;
const FLUSH_MS = 1;

// runBatch runs a batch's events one at a time, in order; the first failure
// ends it. ctx is as for an invocation, with the event's meta and index.
async function runBatch(inv, deadline, events) {
  inv.started = true;
  let held = []; // encoded results not yet written
  let heldBytes = 0; // their length
  let first = 0; // index of the first of them
  let next = FLUSH_FIRST; // how many to hold before writing them
  const flush = () => {
    if (held.length === 0) return;
    const body = Buffer.concat(held, heldBytes);
    const head = Buffer.allocUnsafe(17);
    head.writeUInt32BE(13 + body.length, 0);
    head[4] = T.RESULTS;
    head.writeUInt32BE(inv.id, 5);
    head.writeUInt32BE(first, 9);
    head.writeUInt32BE(held.length, 13);
    const frame = Buffer.concat([head, body]);
    flushed = new Promise((resolve) => out.write(frame, resolve));
    first += held.length;
    held = [];
    heldBytes = 0;
    next = FLUSH_EVERY;
  };
  // A RESULTS frame must fit in MAX_FRAME: a result that would take the
  // frame past it goes in the next one, and a frame of a chunk's worth or
  // more is written at once.
  const add = (result) => {
    if (held.length && 13 + heldBytes + result.length > MAX_FRAME) flush();
    held.push(result);
    heldBytes += result.length;
    if (held.length >= next || heldBytes >= CHUNK) flush();
  };
  const timer = setInterval(flush, FLUSH_MS);
  for (let k = 0; k < events.length; k++) {
    if (inv.controller.signal.aborted) {
      add(errorResult('Skipped', 'the batch was cancelled before this event ran'));
      break;
    }
    const ev = events[k];
    const params = {};
    for (const [key, v] of Object.entries(ev.meta)) if (key.startsWith('param.')) params[key.slice(6)] = v;
    // A batch's events record no span; each one's traceparent is its own.
    const ctx = { ...inv.ctx, meta: ev.meta, event: event(ev.meta), params, span: newSpan(ev.meta) };
    let emits = 0;
    ctx.log = (level, message) => call(inv, { op: 'log', index: k, level: String(level), message: String(message) });
    ctx.emit = (stream, value, key) => call(inv, emitCall(stream, value, key, ++emits, k));
    ctx.call = (target, value, timeoutMs, key) => ctxCall(inv, k, target, value, timeoutMs, key);
    let output;
    let error;
    try {
      output = toBuffer(await handler(ev.input, ctx));
      if (output.length > MAX_FRAME - 64) {
        error = { type: 'PostconditionFailed', message: `an output of ${output.length} bytes is more than one frame carries` };
      }
    } catch (err) {
      error = typedError(err);
      // RESULTS carry no detail: it goes to the function's log.
      if (error.detail) console.error(error.detail);
    }
    if (error) {
      add(errorResult(error.type, error.message));
      break;
    }
    const r = Buffer.allocUnsafe(5);
    r[0] = 0;
    r.writeUInt32BE(output.length, 1);
    add(Buffer.concat([r, output]));
  }
  clearInterval(timer);
  // The id must not be freed while a CALL of it awaits its REPLY.
  while (inv.calls.size) await Promise.all([...inv.calls.values()].map((c) => c.promise));
  inv.done = true;
  invocations.delete(inv.id);
  flush();
  maybeExit();
}

// typedError is a handler's exception as RESULT carries it: its type and
// message for the caller, and for an Exception its stack as the detail,
// which the pool logs with the call's request id and never answers with
// (docs/worker-protocol.md, "Errors").
function typedError(err) {
  const type = (err && typeof err.butterType === 'string' && err.butterType) || 'Exception';
  const error = { type, message: (err && err.message) || String(err) };
  if (type === 'Exception') error.detail = util.inspect(err);
  return error;
}

function errorResult(type, message) {
  const t = Buffer.from(type, 'utf8');
  const m = Buffer.from(message, 'utf8');
  const r = Buffer.allocUnsafe(7 + t.length + m.length);
  r[0] = 1;
  r.writeUInt16BE(t.length, 1);
  t.copy(r, 3);
  r.writeUInt32BE(m.length, 3 + t.length);
  m.copy(r, 7 + t.length);
  return r;
}

async function run(inv) {
  inv.started = true;
  const input = Buffer.concat(inv.input);
  inv.input = null;
  let output;
  let error;
  try {
    output = toBuffer(await handler(input, inv.ctx));
  } catch (err) {
    error = typedError(err);
  }
  // The id must not be freed while a CALL of it awaits its REPLY.
  while (inv.calls.size) await Promise.all([...inv.calls.values()].map((c) => c.promise));
  inv.done = true;
  if (!error) {
    const head = inv.ctx.response.head();
    if (head) send(T.HEAD, inv.id, head);
    for (let off = 0; off < output.length; off += CHUNK) await send(T.DATA, inv.id, output.subarray(off, off + CHUNK));
  }
  invocations.delete(inv.id); // before RESULT: the pool may reuse the id at once
  const state = error ? null : inv.stateResult();
  const span = spanResult(inv.ctx.span);
  let result = error ? JSON.stringify({ error, span }) : state ? `{"state":${state}}` : '{}';
  if (span && !error) result = result.slice(0, -1) + (result.length > 2 ? ',' : '') + `"span":${JSON.stringify(span)}}`;
  send(T.RESULT, inv.id, Buffer.from(result));
  maybeExit();
}

// runStream runs a streaming handler from the INVOKE on: its input is
// pushed as DATA frames come, its output sent as it writes.
async function runStream(inv) {
  inv.started = true;
  let headSent = false;
  const head = () => {
    if (headSent) return;
    headSent = true;
    const h = inv.ctx.response.head();
    if (h) send(T.HEAD, inv.id, h);
  };
  inv.readable = new Readable({
    highWaterMark: STREAM_HWM,
    read() {
      if (full.delete(inv) && full.size === 0) input.resume();
    },
  });
  const output = new Writable({
    highWaterMark: CHUNK,
    write(chunk, _enc, cb) {
      head();
      let last = flushed;
      for (let off = 0; off < chunk.length; off += CHUNK) last = send(T.DATA, inv.id, chunk.subarray(off, off + CHUNK));
      last.then(() => cb(), cb);
    },
  });
  let error;
  try {
    await streamHandler(inv.readable, output, inv.ctx);
    if (!output.writableEnded) output.end();
    if (!output.writableFinished) await new Promise((resolve, reject) => output.once('finish', resolve).once('error', reject));
  } catch (err) {
    error = typedError(err);
  }
  full.delete(inv);
  if (full.size === 0 && input) input.resume();
  inv.readable.destroy();
  while (inv.calls.size) await Promise.all([...inv.calls.values()].map((c) => c.promise));
  inv.done = true;
  if (!error) head();
  invocations.delete(inv.id);
  const state = error ? null : inv.stateResult();
  send(T.RESULT, inv.id, Buffer.from(error ? JSON.stringify({ error }) : state ? `{"state":${state}}` : '{}'));
  maybeExit();
}

// pushInput gives a streaming invocation a chunk of its input, and stops
// reading fd 3 while it holds more than STREAM_HWM unread.
function pushInput(inv, chunk) {
  if (!inv.readable || inv.readable.destroyed || inv.inputEnded) return;
  if (!inv.readable.push(chunk) && !full.has(inv)) {
    full.add(inv);
    let waiting = false;
    for (const i of invocations.values()) waiting = waiting || i.calls.size > 0;
    if (!waiting) input.pause();
  }
}

function maybeExit() {
  if (closing && invocations.size === 0) flushed.then(() => process.exit(0));
}

function onFrame(type, id, payload) {
  const inv = invocations.get(id);
  switch (type) {
    case T.INVOKE: {
      if (inv) die(2, `INVOKE for invocation ${id}, which is in flight`);
      const n = newInvocation(id, parse(payload, 'INVOKE'));
      invocations.set(id, n);
      if (streamHandler) runStream(n);
      break;
    }
    case T.DATA:
      if (inv && inv.readable) pushInput(inv, payload);
      else if (inv && !inv.started) inv.input.push(payload);
      break;
    case T.END:
      if (inv && inv.readable && !inv.inputEnded) {
        inv.inputEnded = true;
        inv.readable.push(null);
      }
      else if (inv && !inv.started) run(inv);
      break;
    case T.BATCH: {
      if (PROTOCOL < 2) die(2, `unexpected BATCH frame (batch ${id}): protocol ${PROTOCOL} has none`);
      if (inv) die(2, `BATCH for id ${id}, which is in flight`);
      const { deadline, events } = readBatch(payload);
      const b = newInvocation(id, { deadline });
      invocations.set(id, b);
      runBatch(b, deadline, events);
      break;
    }
    case T.CANCEL:
      if (inv && inv.readable) {
        // A streaming handler runs from the INVOKE on: its input ends in
        // an error, its context is aborted, and its RESULT follows.
        inv.controller.abort(new Error('invocation cancelled'));
        inv.readable.destroy(new Error('butter: the call was cancelled (its deadline passed, or its caller went away)'));
      } else if (inv && !inv.started && PROTOCOL >= 2) {
        // Its input will not end (the pool's caller broke off): drop it, never run it.
        invocations.delete(id);
        send(T.RESULT, id, json({ error: { type: 'Skipped', message: 'cancelled before its input ended' } }));
      } else if (inv) inv.controller.abort(new Error('invocation cancelled'));
      break;
    case T.REPLY: {
      const reply = parse(payload, 'REPLY');
      if (inv) settleCall(inv, reply.seq, reply);
      break;
    }
    default:
      die(2, `unexpected frame type ${type} (invocation ${id})`);
  }
}

function onEnd() {
  closing = true;
  for (const inv of invocations.values()) {
    // Input that never ended can no longer end; calls can no longer be answered.
    if (!inv.started) invocations.delete(inv.id);
    if (inv.readable && !inv.readable.readableEnded) inv.readable.destroy(new Error('butter: the pool closed the connection'));
    for (const seq of [...inv.calls.keys()]) settleCall(inv, seq, { ok: false, error: 'the pool closed the connection' });
  }
  maybeExit();
}

async function main() {
  const spec = process.env.BUTTER_HANDLER || 'index.handle';
  try {
    handler = await loadHandler(spec);
  } catch (err) {
    die(1, `cannot load handler "${spec}" from ${process.cwd()}: ${(err && err.stack) || err}`);
  }
  if (handler[Symbol.for('butter.stream')]) {
    streamHandler = handler;
    // A batch's events are whole: the stream handler reads one and its
    // output is collected.
    handler = async (data, ctx) => {
      const chunks = [];
      const collect = new Writable({
        write(chunk, _enc, cb) {
          chunks.push(Buffer.from(chunk));
          cb();
        },
      });
      await streamHandler(Readable.from([data]), collect, ctx);
      if (!collect.writableEnded) collect.end();
      return Buffer.concat(chunks);
    };
  }
  out = openFd(4, false);
  out.on('error', (err) => die(1, `writing fd 4: ${err.message}`));
  input = openFd(3, true);
  send(T.HELLO, 0, json({ protocol: PROTOCOL, sdk: 'node/0.2', executable: EXECUTABLE }));
  readFrames(input, onFrame, onEnd);
}

if (require.main === module) main();
