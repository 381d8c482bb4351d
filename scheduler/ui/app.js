// Butter's web UI (docs/ui.md). Plain JavaScript, no framework and no
// build step: the control plane embeds this file and serves it under
// /ui/. Every piece of data comes from the control plane's API, sent with
// the token the user logged in with (sessionStorage, X-Butter-Token), so
// the UI shows exactly what that token may read, and says so when the
// API refuses (403). Pages are addressed by the URL's hash:
//
//   #/                          projects
//   #/login                     the token
//   #/p/NAME/functions          the functions as blocks, the streams between them
//   #/p/NAME/revisions[/ID]     revisions, a revision's spec diff, rollback
//   #/p/NAME/deadletters[/FN]   a function's dead letters, replay
//   #/p/NAME/logs?function=F    live log lines
//   #/p/NAME/traces[/TRACE]     recent traces, a trace's spans
'use strict';

(() => {
  const TOKEN_KEY = 'butter-token';
  const $ = (sel, root = document) => root.querySelector(sel);

  // el builds an element: attrs are properties (class, text, href, on*:
  // listeners, data-*: dataset); children are nodes or text. Text is never
  // parsed as HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the page's CSP
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // The page being shown; its controller is aborted when another is, which
  // stops its requests, polls and log stream.
  let page = new AbortController();

  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function headers(json) {
    const h = {};
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) h['X-Butter-Token'] = tok;
    if (json) h['Content-Type'] = 'application/json';
    return h;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method, headers: headers(body !== undefined), signal: page.signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!resp.ok) {
      let msg = await resp.text();
      try { msg = JSON.parse(msg).error || msg; } catch (_) { /* not JSON */ }
      throw new APIError(resp.status, msg);
    }
    return resp.json();
  }

  const statusText = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Too Large', 422: 'Unprocessable', 500: 'Server Error', 503: 'Unavailable' };

  // showError shows an API error in the banner (403s say what the token
  // lacks, as the API words it), or clears it.
  function showError(err) {
    const box = $('#error');
    box.replaceChildren();
    if (!err || err.name === 'AbortError') {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    if (err instanceof APIError) {
      box.dataset.status = String(err.status);
      box.append(el('span', { class: 'status', text: `${err.status} ${statusText[err.status] || ''}`.trim() }), err.message);
      if (err.status === 403 && /ACL token (required|not found|expired)|malformed ACL token/.test(err.message)) {
        box.append(' ', el('a', { href: '#/login', text: 'Log in with a token' }));
      }
    } else {
      box.dataset.status = '';
      box.append(String(err.message || err));
    }
  }

  // guarded runs a page's work, showing what fails.
  async function guarded(fn) {
    try {
      await fn();
    } catch (err) {
      if (!page.signal.aborted) showError(err);
    }
  }

  // every calls fn now and then every ms until the page changes.
  function every(ms, fn) {
    const signal = page.signal;
    const tick = async () => {
      if (signal.aborted) return;
      await guarded(fn);
      if (!signal.aborted) setTimeout(tick, ms);
    };
    return tick();
  }

  // Formatting.
  function fmtSeconds(s) {
    if (s === undefined || s === null) return '–';
    if (s < 0.001) return `${Math.round(s * 1e6)}µs`;
    if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
    return `${s.toFixed(2)}s`;
  }
  function fmtRate(r) {
    if (r === undefined || r === null) return '–';
    return r >= 100 ? `${r.toFixed(0)}/s` : `${r.toFixed(2)}/s`;
  }
  function fmtTime(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleString();
  }
  function short(id) { return (id || '').slice(0, 12); }
  const enc = encodeURIComponent;

  // Routing.
  function parseHash() {
    const h = location.hash.replace(/^#/, '') || '/';
    const [path, query] = h.split('?');
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
  }

  function crumbs(project) {
    const nav = $('#crumbs');
    nav.replaceChildren(el('a', { href: '#/', text: 'Projects' }));
    if (project) nav.append('/ ', el('a', { href: `#/p/${enc(project)}/functions`, text: project }));
  }

  async function route() {
    page.abort();
    page = new AbortController();
    showError(null);
    const { parts, query } = parseHash();
    const view = $('#view');
    view.replaceChildren();
    if (parts[0] === 'login') {
      crumbs();
      return loginView(view);
    }
    if (!(await whoami())) return;
    if (parts[0] === 'p' && parts[1]) {
      const project = parts[1];
      const tab = parts[2] || 'functions';
      crumbs(project);
      view.append(el('h1', { text: project }), tabs(project, tab));
      const body = el('div', { id: 'tab' });
      view.append(body);
      const views = { functions: functionsView, revisions: revisionsView, deadletters: deadLettersView, logs: logsView, traces: tracesView };
      return guarded(() => (views[tab] || functionsView)(body, project, parts[3], query));
    }
    crumbs();
    return guarded(() => projectsView(view));
  }

  function tabs(project, current) {
    const names = [['functions', 'Functions'], ['revisions', 'Revisions'], ['deadletters', 'Dead letters'], ['logs', 'Logs'], ['traces', 'Traces']];
    return el('nav', { class: 'tabs' }, names.map(([t, label]) =>
      el('a', { href: `#/p/${enc(project)}/${t}`, class: t === current ? 'on' : '', text: label, 'data-tab': t })));
  }

  // whoami checks the token (GET /v1/acl/token/self) and shows who is
  // logged in; without a usable token it shows the login page.
  async function whoami() {
    const who = $('#who');
    const out = $('#logout');
    try {
      const tok = await api('GET', '/v1/acl/token/self');
      who.textContent = `token: ${tok.name || tok.accessor_id} (${tok.type})`;
      out.hidden = false;
      return true;
    } catch (err) {
      if (err instanceof APIError && err.status === 400 && /ACLs are off/.test(err.message)) {
        who.textContent = 'ACLs are off on this control plane';
        out.hidden = true;
        return true;
      }
      if (err instanceof APIError && err.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        who.textContent = '';
        out.hidden = true;
        crumbs();
        loginView($('#view'), err);
        return false;
      }
      showError(err);
      return false;
    }
  }

  function loginView(view, why) {
    const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx', spellcheck: false });
    const form = el('form', { class: 'login', id: 'login-form' },
      el('h1', { text: 'Log in' }),
      el('p', { class: 'muted' }, 'The UI reads the control plane\'s API with an ACL token, as the CLI does (',
        el('code', { text: 'butter acl token create' }), '; under ', el('code', { text: 'butter dev' }),
        ', the management token it printed, in ', el('code', { text: '.butter/dev/management-token' }),
        '). It is kept in this tab only (sessionStorage) and sent as ', el('code', { text: 'X-Butter-Token' }), '.'),
      el('label', { for: 'token', text: 'Token secret' }), input,
      el('button', { class: 'primary', id: 'login', type: 'submit', text: 'Log in' }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      try {
        await api('GET', '/v1/acl/token/self');
      } catch (err) {
        if (!(err instanceof APIError && err.status === 400 && /ACLs are off/.test(err.message))) {
          sessionStorage.removeItem(TOKEN_KEY);
          showError(err);
          return;
        }
      }
      location.hash = '#/';
    });
    view.replaceChildren(form);
    if (why) showError(why);
    input.focus();
  }

  async function projectsView(view) {
    const list = await api('GET', '/v1/projects');
    view.append(el('h1', { text: 'Projects' }));
    if (!list.projects.length) {
      view.append(el('p', { class: 'muted', text: 'No project this token may read.' }));
      return;
    }
    view.append(el('ul', { class: 'list', id: 'projects' }, list.projects.map((p) =>
      el('li', {}, el('a', { href: `#/p/${enc(p)}/functions`, class: 'project-link', 'data-project': p, text: p })))));
  }

  // The functions as blocks (trigger, function, output, statistics), in
  // columns from the triggers to the last stream, with the streams between
  // them and SVG edges along the data's way.
  async function functionsView(view, project) {
    let shown = '';
    let graph = null;
    await every(2000, async () => {
      const data = await api('GET', `/v1/projects/${enc(project)}/functions`);
      const shape = JSON.stringify(data.functions.map((f) => [f.function, f.inputs, f.output, f.emits])) + data.revision;
      if (shape !== shown) {
        shown = shape;
        view.replaceChildren(el('p', { class: 'muted' }, `Revision ${short(data.revision)} · statistics over about the last minute, read every few seconds`,
          data.stale ? ' (from a follower: no autoscaler signals there)' : ''));
        graph = drawGraph(project, data);
        view.append(graph);
      }
      for (const f of data.functions) updateStats(graph, f);
      requestAnimationFrame(graph.redraw);
    });
  }

  function streamName(data, topic) {
    const s = data.streams.find((x) => x.topic === topic);
    return s ? s.name : topic;
  }

  function drawGraph(project, data) {
    const fns = data.functions;
    const producers = {};
    const consumers = {};
    for (const f of fns) {
      for (const t of [f.output, ...(f.emits || [])].filter(Boolean)) (producers[t] = producers[t] || []).push(f.function);
      for (const t of f.inputs || []) (consumers[t] = consumers[t] || []).push(f.function);
    }
    const topics = [...new Set([...Object.keys(producers), ...Object.keys(consumers)])];
    // Levels: a function after the streams it reads, a stream after the
    // functions that write it (bounded, for cycles).
    const level = {};
    for (const f of fns) level['f:' + f.function] = 0;
    for (const t of topics) level['s:' + t] = 0;
    for (let i = 0; i < fns.length + topics.length; i++) {
      for (const t of topics) for (const p of producers[t] || []) level['s:' + t] = Math.max(level['s:' + t], level['f:' + p] + 1);
      for (const f of fns) for (const t of f.inputs || []) level['f:' + f.function] = Math.max(level['f:' + f.function], level['s:' + t] + 1);
    }
    const cols = [];
    const nodes = {};
    const col = (n) => (cols[n] = cols[n] || el('div', { class: 'col' }));
    for (const f of fns) {
      const b = block(project, data, f);
      nodes['f:' + f.function] = b;
      col(level['f:' + f.function]).append(b);
    }
    for (const t of topics.sort()) {
      const s = el('div', { class: 'stream-node', 'data-stream': streamName(data, t), title: t, text: streamName(data, t) });
      nodes['s:' + t] = s;
      col(level['s:' + t]).append(s);
    }
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'edges');
    const g = el('div', { class: 'graph', id: 'graph' }, svg, cols.filter(Boolean));
    const edges = [];
    for (const f of fns) {
      for (const t of f.inputs || []) edges.push([nodes['s:' + t], nodes['f:' + f.function]]);
      for (const t of [f.output, ...(f.emits || [])].filter(Boolean)) edges.push([nodes['f:' + f.function], nodes['s:' + t]]);
    }
    const drawEdges = () => {
      if (!g.isConnected) return;
      const box = g.getBoundingClientRect();
      svg.setAttribute('width', g.scrollWidth);
      svg.setAttribute('height', g.scrollHeight);
      svg.replaceChildren();
      for (const [a, b] of edges) {
        if (!a || !b) continue;
        const ra = a.getBoundingClientRect();
        const rb = b.getBoundingClientRect();
        const x1 = ra.right - box.left + g.scrollLeft;
        const y1 = ra.top + ra.height / 2 - box.top;
        const x2 = rb.left - box.left + g.scrollLeft;
        const y2 = rb.top + rb.height / 2 - box.top;
        const dx = Math.max(30, Math.abs(x2 - x1) / 2);
        const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
        p.setAttribute('d', `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`);
        svg.append(p);
      }
    };
    requestAnimationFrame(drawEdges);
    window.addEventListener('resize', drawEdges, { signal: page.signal });
    g.redraw = drawEdges;
    return g;
  }

  function block(project, data, f) {
    const triggers = [
      ...(f.routes || []).map((r) => `HTTP ${r}`),
      ...(f.schedules || []).map((s) => `cron ${s}`),
      ...(f.inputs || []).map((t) => `stream ${streamName(data, t)}`),
      f.queued ? 'queued calls' : null,
    ].filter(Boolean);
    const outputs = [
      f.output ? `→ ${streamName(data, f.output)}` : null,
      ...(f.emits || []).map((t) => `emits → ${streamName(data, t)}`),
      ...(f.dead_letters || []).map((t) => `dead letters → ${streamName(data, t)}`),
    ].filter(Boolean);
    const stat = (name, label) => el('div', {}, el('span', { text: label }), el('b', { 'data-stat': name, text: '–' }));
    const p = enc(project);
    const fn = enc(f.function);
    return el('div', { class: 'fn-block', 'data-function': f.function },
      el('div', { class: 'trigger' }, triggers.length ? triggers.map((t) => el('div', { text: t })) : el('span', { class: 'muted', text: 'no trigger' })),
      el('div', {}, el('div', { class: 'name' }, f.function, el('small', { text: `${f.runtime} · pool ${f.pool}` }))),
      el('div', { class: 'output' }, outputs.length ? outputs.map((t) => el('div', { text: t })) : el('span', { class: 'muted', text: 'no output' })),
      el('div', { class: 'stats' }, stat('rate', 'rate'), stat('errors', 'errors'), stat('error-share', 'error %'),
        stat('p50', 'p50'), stat('p99', 'p99'), stat('instances', 'instances'), stat('inflight', 'in flight'), stat('lag', 'lag'), stat('window', 'over')),
      el('div', { class: 'links' },
        el('a', { href: `#/p/${p}/logs?function=${fn}`, text: 'logs' }),
        (f.dead_letters || []).length ? el('a', { href: `#/p/${p}/deadletters/${fn}`, text: 'dead letters' }) : null,
        el('a', { href: `#/p/${p}/traces?function=${fn}`, text: 'traces' })));
  }

  function updateStats(graph, f) {
    const b = graph && graph.querySelector(`.fn-block[data-function="${CSS.escape(f.function)}"]`);
    if (!b) return;
    const s = f.signals || {};
    const t = s.traffic;
    const set = (name, v, bad) => {
      const e = b.querySelector(`[data-stat="${name}"]`);
      e.textContent = v;
      e.classList.toggle('bad', !!bad);
    };
    set('rate', t ? fmtRate(t.rate) : '–');
    set('errors', t ? fmtRate(t.error_rate) : '–', t && t.errors > 0);
    set('error-share', t && t.calls > 0 ? `${((100 * t.errors) / t.calls).toFixed(1)}%` : '–', t && t.errors > 0);
    set('p50', t ? fmtSeconds(t.p50_seconds) : '–');
    set('p99', t ? fmtSeconds(t.p99_seconds) : '–');
    set('instances', f.signals ? String(s.instances) : '–');
    set('inflight', f.signals ? String(s.inflight + (s.queued ? ` +${s.queued}` : '')) : '–');
    set('lag', f.signals ? String(s.lag || 0) : '–', s.lag > 0);
    set('window', t ? `${Math.round(t.window_seconds)}s` : '–');
  }

  // Revisions: the list, the diff of a revision's spec files against the
  // one before it, and the rollback of the active one.
  async function revisionsView(view, project, selected) {
    const list = await api('GET', `/v1/projects/${enc(project)}/revisions`);
    list.sort((a, b) => new Date(b.created) - new Date(a.created));
    const active = list.findIndex((r) => r.active);
    const prev = active >= 0 ? list[active + 1] : undefined;
    const sel = list.find((r) => r.id === selected) || list[Math.max(active, 0)];
    const notice = el('div', { id: 'rollback-result' });
    const rb = el('button', { id: 'rollback', class: 'danger', disabled: !prev, text: prev ? `Roll back to ${short(prev.id)}` : 'Nothing to roll back to' });
    const cancel = el('button', { id: 'rollback-cancel', text: 'Cancel', hidden: true });
    let armed = false;
    rb.addEventListener('click', () => guarded(async () => {
      if (!armed) {
        armed = true;
        rb.textContent = `Confirm: make ${short(prev.id)} active`;
        cancel.hidden = false;
        return;
      }
      rb.disabled = true;
      const out = await api('POST', `/v1/projects/${enc(project)}/rollback`);
      notice.replaceChildren(el('div', { class: 'notice', text: `Rolled back: revision ${out.revision} is active${out.deployer ? '; the deployer is rolling it out' : ''}.` }));
      setTimeout(() => { if (!page.signal.aborted) route(); }, 1500);
    }).finally(() => { if (!armed) rb.disabled = !prev; }));
    cancel.addEventListener('click', () => { armed = false; cancel.hidden = true; rb.textContent = `Roll back to ${short(prev.id)}`; });
    view.append(el('div', { class: 'controls' }, rb, cancel), notice,
      el('table', { id: 'revisions' },
        el('tr', {}, ['revision', 'created', 'author', 'git', 'status', ''].map((h) => el('th', { text: h }))),
        list.map((r) => el('tr', { 'data-revision': r.id, class: r.active ? 'active' : '' },
          el('td', { class: 'mono' }, el('a', { href: `#/p/${enc(project)}/revisions/${enc(r.id)}`, text: r.id })),
          el('td', { text: fmtTime(r.created) }),
          el('td', { text: r.author || '' }),
          el('td', { class: 'mono', text: r.git_sha ? short(r.git_sha) + (r.dirty ? '-dirty' : '') : '' }),
          el('td', {}, el('span', { class: `badge ${r.deployment.status || ''}`, text: r.deployment.status || '–' }), ' ',
            el('span', { class: 'muted', text: r.deployment.message || '' })),
          el('td', {}, r.active ? el('span', { class: 'badge active', text: 'active' }) : null)))));
    if (!sel) return;
    const idx = list.indexOf(sel);
    const before = list[idx + 1];
    const [a, b] = await Promise.all([
      before ? api('GET', `/v1/projects/${enc(project)}/revisions/${enc(before.id)}`) : Promise.resolve({ specs: {} }),
      api('GET', `/v1/projects/${enc(project)}/revisions/${enc(sel.id)}`),
    ]);
    view.append(el('h2', { text: before ? `Revision ${short(sel.id)} against ${short(before.id)}` : `Revision ${short(sel.id)} (the first)` }),
      el('div', { id: 'diff' }, specDiff(a.specs || {}, b.specs || {})));
  }

  function specDiff(oldSpecs, newSpecs) {
    const files = [...new Set([...Object.keys(oldSpecs), ...Object.keys(newSpecs)])].sort();
    const out = [];
    for (const f of files) {
      const a = oldSpecs[f];
      const b = newSpecs[f];
      if (a === b) {
        out.push(el('div', { class: 'diff', 'data-file': f }, el('div', { class: 'file' }, f, el('span', { class: 'muted', text: ' unchanged' }))));
        continue;
      }
      const label = a === undefined ? ' added' : b === undefined ? ' removed' : '';
      out.push(el('div', { class: 'diff changed', 'data-file': f }, el('div', { class: 'file' }, f, el('span', { class: 'muted', text: label })),
        diffLines((a || '').split('\n'), (b || '').split('\n'))));
    }
    return out;
  }

  // diffLines is a line diff (longest common subsequence), with runs of
  // more than 6 unchanged lines cut to 3 either side.
  function diffLines(a, b) {
    const n = a.length;
    const m = b.length;
    const ops = [];
    if (n * m > 4e6) {
      a.forEach((l) => ops.push(['del', l]));
      b.forEach((l) => ops.push(['add', l]));
    } else {
      const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
      for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      let i = 0;
      let j = 0;
      while (i < n && j < m) {
        if (a[i] === b[j]) { ops.push(['same', a[i]]); i++; j++; } else if (lcs[i + 1][j] >= lcs[i][j + 1]) ops.push(['del', a[i++]]); else ops.push(['add', b[j++]]);
      }
      while (i < n) ops.push(['del', a[i++]]);
      while (j < m) ops.push(['add', b[j++]]);
    }
    const lines = [];
    for (let k = 0; k < ops.length; k++) {
      const [op, text] = ops[k];
      if (op === 'same') {
        let end = k;
        while (end < ops.length && ops[end][0] === 'same') end++;
        if (end - k > 6) {
          for (let x = k; x < k + 3 && k > 0; x++) lines.push(el('div', { class: 'l same', text: '  ' + ops[x][1] }));
          lines.push(el('div', { class: 'l same muted', text: `  … ${end - k - (k > 0 ? 3 : 0) - (end < ops.length ? 3 : 0)} unchanged lines` }));
          for (let x = Math.max(end - 3, k); x < end && end < ops.length; x++) lines.push(el('div', { class: 'l same', text: '  ' + ops[x][1] }));
          k = end - 1;
          continue;
        }
      }
      lines.push(el('div', { class: `l ${op}`, text: (op === 'add' ? '+ ' : op === 'del' ? '- ' : '  ') + text }));
    }
    return lines;
  }

  // Dead letters of one function, newest first, each with a replay button.
  async function deadLettersView(view, project, fn) {
    const fns = (await api('GET', `/v1/projects/${enc(project)}/functions`)).functions.filter((f) => (f.dead_letters || []).length);
    if (!fns.length) {
      view.append(el('p', { class: 'muted', text: 'No function of the active revision has dead-letter topics (only functions triggered by streams, ticks or queued calls do).' }));
      return;
    }
    const current = fns.find((f) => f.function === fn) || fns[0];
    const select = el('select', { id: 'dl-function', onchange: (e) => { location.hash = `#/p/${enc(project)}/deadletters/${enc(e.target.value)}`; } },
      fns.map((f) => el('option', { value: f.function, selected: f.function === current.function, text: f.function })));
    const table = el('div', { id: 'deadletters' });
    const replayed = {};
    view.append(el('div', { class: 'controls' }, el('label', { text: 'Function ' }, select),
      el('span', { class: 'muted', text: `topics: ${current.dead_letters.join(', ')}` })), table);
    await every(3000, async () => {
      const list = await api('GET', `/v1/projects/${enc(project)}/functions/${enc(current.function)}/deadletters`);
      if (!list.dead_letters.length) {
        table.replaceChildren(el('p', { class: 'muted', id: 'no-deadletters', text: 'No dead letter.' }));
        return;
      }
      table.replaceChildren(el('table', {},
        el('tr', {}, ['time', 'error', 'attempts', 'origin', 'key', 'value', ''].map((h) => el('th', { text: h }))),
        list.dead_letters.map((d) => deadLetterRow(project, current.function, d, replayed))));
    });
  }

  function deadLetterRow(project, fn, d, replayed) {
    const where = `${d.topic}/${d.partition}/${d.offset}`;
    const result = el('div', { class: 'replayed', text: replayed[where] || '' });
    const btn = el('button', { class: 'replay', text: 'Replay', 'data-where': where });
    btn.addEventListener('click', () => guarded(async () => {
      btn.disabled = true;
      try {
        const out = await api('POST', `/v1/projects/${enc(project)}/functions/${enc(fn)}/deadletters/replay`, { topic: d.topic, partition: d.partition, offset: d.offset });
        replayed[where] = `replayed to ${out.topic}/${out.partition}/${out.offset}`;
        result.textContent = replayed[where];
      } finally {
        btn.disabled = false;
      }
    }));
    return el('tr', { class: 'dl-row', 'data-id': d.id || '', 'data-where': where },
      el('td', { text: fmtTime(d.time) }),
      el('td', {}, el('span', { class: 'badge failed error-type', text: d.error_type || '?' }), el('pre', { class: 'error-message', text: d.error_message || '' }),
        d.error_details ? el('pre', { class: 'muted', text: d.error_details }) : null,
        d.headers && d.headers.ce_replayedfrom ? el('div', { class: 'muted', text: `a replay of ${d.headers.ce_replayedfrom}` }) : null),
      el('td', { text: String(d.attempts) }),
      el('td', { class: 'mono', text: d.origin || '' }),
      el('td', { class: 'mono', text: d.key || '' }),
      el('td', {}, el('pre', { text: d.value !== undefined && d.value !== '' ? d.value : d.value_base64 ? `(base64) ${d.value_base64}` : '' })),
      el('td', {}, d.origin ? btn : el('span', { class: 'muted', text: 'no origin' }), result));
  }

  // Live log lines, read from the control plane's server-sent events.
  async function logsView(view, project, _sub, query) {
    const fns = (await api('GET', `/v1/projects/${enc(project)}/functions`)).functions;
    const fn = query.get('function') || '';
    const trace = query.get('trace') || '';
    const select = el('select', { id: 'log-function', onchange: (e) => { location.hash = `#/p/${enc(project)}/logs${e.target.value ? '?function=' + enc(e.target.value) : ''}`; } },
      el('option', { value: '', text: 'all functions' }), fns.map((f) => el('option', { value: f.function, selected: f.function === fn, text: f.function })));
    const state = el('span', { id: 'log-state', class: 'muted', text: 'connecting…' });
    const box = el('div', { class: 'logs', id: 'log-lines' });
    view.append(el('div', { class: 'controls' }, el('label', { text: 'Function ' }, select),
      trace ? el('span', {}, 'trace ', el('code', { text: trace }), ' ', el('a', { href: `#/p/${enc(project)}/logs`, text: '(all)' })) : null, state), box);
    const seen = new Set();
    let since = '15m';
    const signal = page.signal;
    while (!signal.aborted) {
      const params = new URLSearchParams({ follow: 'true', since });
      if (fn) params.set('function', fn);
      if (trace) params.set('trace', trace);
      try {
        const resp = await fetch(`/v1/projects/${enc(project)}/logs?${params}`, { headers: headers(false), signal });
        if (!resp.ok) {
          let msg = await resp.text();
          try { msg = JSON.parse(msg).error || msg; } catch (_) { /* not JSON */ }
          throw new APIError(resp.status, msg);
        }
        state.textContent = 'live';
        showError(null);
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let id = '';
            const data = [];
            for (const line of event.split('\n')) {
              if (line.startsWith('id: ')) id = line.slice(4);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (!data.length || (id && seen.has(id))) continue;
            if (id) seen.add(id);
            try {
              const rec = JSON.parse(data.join('\n'));
              since = rec.time || since;
              appendLog(box, project, rec);
            } catch (_) { /* not a log record */ }
          }
        }
        state.textContent = 'disconnected; reconnecting…';
      } catch (err) {
        if (signal.aborted) return;
        state.textContent = 'disconnected; reconnecting…';
        if (err instanceof APIError) {
          showError(err);
          if (err.status === 403 || err.status === 404) return;
        }
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  function appendLog(box, project, r) {
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    const lv = (r.level || 'info').toLowerCase();
    box.append(el('div', { class: 'log-line', 'data-function': r.function || '', 'data-invocation': r.invocation || '' },
      el('span', { class: 'meta', text: (r.time || '').replace('T', ' ').replace(/\.(\d{3})\d*Z$/, '.$1Z') + ' ' }),
      el('span', { class: `lv lv-${lv}`, text: `[${lv.toUpperCase()}]` }),
      el('span', { class: 'fn', text: `${r.function}: ` }),
      el('span', { class: 'msg', text: r.message }),
      r.invocation ? el('span', { class: 'meta', text: `  invocation=${r.invocation}` }) : null,
      r.trace_id ? el('span', { class: 'meta' }, ' ', el('a', { href: `#/p/${enc(project)}/traces/${enc(r.trace_id)}`, text: `trace=${r.trace_id.slice(0, 8)}…` })) : null));
    while (box.childElementCount > 1000) box.firstChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  // Traces of recent invocations: the control plane's own spans (under
  // butter dev) or those Butter's processes export to it by OTLP.
  async function tracesView(view, project, traceID, query) {
    if (traceID) return traceView(view, project, traceID);
    const fn = query.get('function') || '';
    const table = el('div', { id: 'traces' });
    view.append(el('p', { class: 'muted' }, 'The newest traces this control plane keeps in memory',
      fn ? [' with function ', el('code', { text: fn }), ' ', el('a', { href: `#/p/${enc(project)}/traces`, text: '(all)' })] : '', '.'), table);
    await every(3000, async () => {
      const list = (await api('GET', `/v1/projects/${enc(project)}/traces`)).traces.filter((t) => !fn || (t.functions || []).includes(fn));
      if (!list.length) {
        table.replaceChildren(el('p', { class: 'muted', text: 'No trace yet. butter dev keeps its own; a control plane keeps what processes export to it (OTEL_EXPORTER_OTLP_ENDPOINT).' }));
        return;
      }
      table.replaceChildren(el('table', {},
        el('tr', {}, ['start', 'root', 'duration', 'spans', 'errors', 'functions', 'invocation'].map((h) => el('th', { text: h }))),
        list.map((t) => el('tr', { class: 'trace-row', 'data-trace': t.trace_id },
          el('td', { text: fmtTime(t.start) }),
          el('td', {}, el('a', { href: `#/p/${enc(project)}/traces/${enc(t.trace_id)}`, text: t.root })),
          el('td', { class: 'mono', text: fmtSeconds(t.duration_seconds) }),
          el('td', { text: String(t.spans) }),
          el('td', { class: t.errors ? 'bad' : '', text: String(t.errors) }),
          el('td', { text: (t.functions || []).join(', ') }),
          el('td', { class: 'mono', text: t.invocation || '' })))));
    });
  }

  async function traceView(view, project, id) {
    const tr = await api('GET', `/v1/projects/${enc(project)}/traces/${enc(id)}`);
    const spans = tr.spans;
    const byId = Object.fromEntries(spans.map((s) => [s.span_id, s]));
    const children = {};
    const roots = [];
    for (const s of spans) {
      if (s.parent_id && byId[s.parent_id]) (children[s.parent_id] = children[s.parent_id] || []).push(s);
      else roots.push(s);
    }
    const t0 = Math.min(...spans.map((s) => Date.parse(s.start)));
    const t1 = Math.max(...spans.map((s) => Date.parse(s.end)));
    const total = Math.max(t1 - t0, 1);
    const rows = [];
    const walk = (s, depth) => {
      const start = Date.parse(s.start);
      const dur = (Date.parse(s.end) - start) / 1000;
      const attrs = el('div', { class: 'attrs', hidden: true },
        el('pre', { text: [`${s.kind} span of ${s.service || '?'}`, s.error ? `error: ${s.message || ''}` : null,
          ...Object.entries(s.attributes || {}).sort().map(([k, v]) => `${k} = ${v}`),
          ...(s.events || []).map((e) => `event ${e.name} ${JSON.stringify(e.attributes || {})}`)].filter(Boolean).join('\n') }));
      const row = el('div', { class: 'span-row', 'data-span': s.name, onclick: () => { attrs.hidden = !attrs.hidden; } },
        el('div', { class: 'span-name', title: s.name, style: `padding-left:${depth * 14}px`, text: s.name }),
        el('div', { class: 'bar-track' }, el('div', { class: `bar${s.error ? ' error' : ''}`, style: `left:${((start - t0) / total) * 100}%;width:${Math.max(((dur * 1000) / total) * 100, 0.3)}%` })),
        el('div', { class: 'dur', text: fmtSeconds(dur) }), attrs);
      rows.push(row);
      for (const c of (children[s.span_id] || []).sort((a, b) => Date.parse(a.start) - Date.parse(b.start))) walk(c, depth + 1);
    };
    roots.sort((a, b) => Date.parse(a.start) - Date.parse(b.start)).forEach((r) => walk(r, 0));
    view.append(el('p', {}, el('a', { href: `#/p/${enc(project)}/traces`, text: '← traces' }), ' · ',
      el('code', { text: id }), ` · ${spans.length} spans over ${fmtSeconds(total / 1000)} · `,
      el('a', { href: `#/p/${enc(project)}/logs?trace=${enc(id)}`, id: 'trace-logs', text: 'log lines of this trace' })),
    el('div', { class: 'waterfall', id: 'waterfall' }, rows));
  }

  $('#logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('#who').textContent = '';
    $('#logout').hidden = true;
    location.hash = '#/login';
  });
  window.addEventListener('hashchange', route);
  route();
})();
