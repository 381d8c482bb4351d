'use strict';
// Helpers for Butter functions written in Node. A function gets this module
// with `require('butter')` when it runs in Butter's worker (worker.js).
//
// An error whose `butterType` is set is reported with that type; any other
// thrown error is reported as "Exception".

class ButterError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
    this.butterType = type;
  }
}

/** The input was refused (for example, it fails validation). */
class PreconditionFailed extends ButterError {
  constructor(message) {
    super('PreconditionFailed', message);
  }
}

/** The output was refused (the function could not produce a valid answer). */
class PostconditionFailed extends ButterError {
  constructor(message) {
    super('PostconditionFailed', message);
  }
}

/**
 * A ctx.call failed. `type` is the callee's error type (PreconditionFailed,
 * Exception, ...), Timeout when no reply came in time, CircuitOpen when the
 * call was not sent because the target failed too often lately, Unavailable
 * when it could not be sent, or undefined when the pool refused the call (a
 * target the spec's calls list does not declare). It has no butterType: not
 * caught, it fails the handler as an Exception; throw a PreconditionFailed to
 * pass the callee's refusal on.
 */
class CallError extends Error {
  constructor(target, type, message) {
    super(type ? `call ${target}: ${type}: ${message}` : `call ${target}: ${message}`);
    this.name = 'CallError';
    this.target = target;
    this.type = type;
    this.reason = message;
  }
}

/**
 * Several outputs: return outputs([a, b, ...]) from the handler, and each
 * becomes a record of the function's output stream, with its own id
 * (docs/events.md, "Outputs"). Items are as a returned value (Buffer,
 * string, anything else as JSON; null as no output); keyed(key, value)
 * gives one its own record key. A plain returned value, an array too, is
 * one output.
 */
function outputs(list) {
  if (!Array.isArray(list)) throw new TypeError('butter: outputs takes an array');
  return { [Symbol.for('butter.outputs')]: list };
}

/** An output of outputs([...]) with its own record key. */
function keyed(key, value) {
  return { [Symbol.for('butter.keyed')]: true, key, value };
}

/**
 * A streaming handler: stream(async (input, output, ctx) => {...}) gets its
 * input as a Readable (an async iterable of Buffers, as the body arrives)
 * and writes its output to a Writable as it goes, so a body of any size
 * passes through in bounded memory. Set ctx.response's status and headers
 * before the first write. What the handler returns is ignored; the output
 * ends when it returns. On a stream, a batch's event is read whole and its
 * output collected, as for a buffered handler.
 */
function stream(fn) {
  if (typeof fn !== 'function') throw new TypeError('butter: stream takes a function (input, output, ctx)');
  fn[Symbol.for('butter.stream')] = true;
  return fn;
}

module.exports = { ButterError, PreconditionFailed, PostconditionFailed, CallError, outputs, keyed, stream };
