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

module.exports = { ButterError, PreconditionFailed, PostconditionFailed };
