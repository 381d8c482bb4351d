'use strict';
// Butter's node20-style fixture (README.md): an express server that calls
// function/handler.js as (event, context), as OpenFaaS's node20 template
// documents its contract. Written for Butter's tests; not the template.
const express = require('express');
const bodyParser = require('body-parser');
const handler = require('./function/handler');

const app = express();
app.disable('x-powered-by');
app.use(bodyParser.json());
app.use(bodyParser.text({ type: 'text/*' }));
app.use(bodyParser.raw({ type: () => true }));

function makeEvent(req) {
  return { body: req.body, headers: req.headers, method: req.method, query: req.query, path: req.path };
}

function makeContext(res) {
  let code = 200;
  let sent = false;
  const context = {
    status(c) {
      code = c;
      return context;
    },
    headers(hs) {
      for (const [k, v] of Object.entries(hs || {})) res.set(k, v);
      return context;
    },
    succeed(value) {
      if (sent) return;
      sent = true;
      if (value === undefined || value === null) res.status(code).end();
      else if (typeof value === 'object' && !Buffer.isBuffer(value)) res.status(code).json(value);
      else res.status(code).send(value);
    },
    fail(err) {
      if (sent) return;
      sent = true;
      res.status(500).send(String(err && err.message ? err.message : err));
    },
  };
  return context;
}

app.all('*', async (req, res) => {
  const context = makeContext(res);
  try {
    const out = await handler(makeEvent(req), context);
    if (out !== undefined && !res.headersSent) context.succeed(out);
  } catch (err) {
    context.fail(err);
  }
});

const port = Number(process.env.http_port) || 3000;
app.listen(port, '127.0.0.1');
