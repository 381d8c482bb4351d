"""Butter worker for Python: runs one function's handler and serves the worker
protocol, versions 1 to 3 (docs/worker-protocol.md), on fd 3 (pool -> worker)
and fd 4 (worker -> pool). The pool runs `python3 butter_main.py` in the
bundle directory, which imports this module (so that its bytecode comes
from __pycache__ rather than being compiled at every start) and calls
main(); `python3 butter_worker.py` works too. Standard library only.

Start time matters (a cold start waits for it): modules that are slow to
import and serve one rare path are imported on that path. asyncio (which
pulls in ssl and logging, about 30 ms) only when a handler returns an
awaitable, traceback only for a failure; calls run on plain threads
rather than concurrent.futures. JSON goes through _butter_json and base64
through binascii (json and base64 import re, about 10 ms), and
importlib.util (6 ms) is imported only for a module the import system
cannot find.
"""

import binascii
import importlib
import math
import os
import struct
import sys
import threading
import time
import types

import _butter_json as json  # json's encoding, without importing re (its doc)

HELLO, INVOKE, DATA, END, RESULT, CANCEL, CALL, REPLY, BATCH, RESULTS, HEAD = range(1, 12)
PROTOCOL = 3  # the newest version this SDK speaks; 3 adds HEAD (status and headers)
MAX_FRAME = 16 << 20  # largest frame length (type + id + payload)
CHUNK = 1 << 20  # largest output DATA payload we send
IN_FD, OUT_FD = 3, 4
# The interpreter that runs this worker, read before the handler's code
# runs: the pool starts the function's next instances with it, past a
# version manager's shim (docs/worker-protocol.md, HELLO).
EXECUTABLE = sys.executable or ""

_write_lock = threading.Lock()

# A streaming invocation (butter.stream) buffers at most STREAM_HWM bytes of
# input before the reader stops reading fd 3 (the pool's writes then wait:
# back-pressure to the caller), unless a context call awaits its REPLY,
# which must get through. _space wakes the reader: a handler read, or a
# context call began.
STREAM_HWM = 4 << 20
_space = threading.Condition()
_pending_calls = [0]


def die(code, message):
    """Writes message to stderr and ends the process at once with code."""
    try:
        sys.stdout.flush()
        sys.stderr.write(f"butter worker: {message}\n")
        sys.stderr.flush()
    finally:
        os._exit(code)


def send(ftype, fid, payload=b""):
    """Writes one whole frame to fd 4; safe to call from any thread."""
    view = memoryview(struct.pack(">IBI", 5 + len(payload), ftype, fid) + payload)
    with _write_lock:
        try:
            while view:
                view = view[os.write(OUT_FD, view):]
        except OSError as e:
            die(1, f"writing fd 4: {e}")


class Outputs:
    """Several outputs (ctx.outputs, butter.outputs): sent as the outputs
    envelope (docs/events.md, "Outputs")."""

    __butter_outputs__ = True

    def __init__(self, items):
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise TypeError("butter: outputs takes a list")
        self.items = list(items)


def _envelope(items):
    """{"butter.outputs": [{value|text|base64, key?}, ...]} as bytes."""
    out = []
    for v in items:
        item = {}
        if getattr(v, "__butter_keyed__", False):
            item["key"] = str(v.key)
            v = v.value
        if isinstance(v, (bytes, bytearray, memoryview)):
            item["base64"] = binascii.b2a_base64(bytes(v), newline=False).decode("ascii")
        elif isinstance(v, str):
            item["text"] = v
        else:
            item["value"] = v
        out.append(item)
    return json.dumps({"butter.outputs": out}, separators=(",", ":")).encode("utf-8")


def event_of(meta):
    """ctx.event: the metadata of the event a call handles
    (docs/events.md, "What a function sees")."""

    # butter.position is "<stream>/<partition>/<offset>".
    stream, partition, offset = None, None, None
    parts = (meta.get("butter.position") or "").rsplit("/", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        stream, partition, offset = parts[0], int(parts[1]), int(parts[2])
    http = None
    if meta.get("ce_httpmethod"):
        try:
            headers = json.loads(meta.get("ce_httpheaders") or "{}")
        except ValueError:
            headers = {}
        http = types.SimpleNamespace(method=meta["ce_httpmethod"], path=meta.get("ce_httppath", ""),
                                     query=meta.get("ce_httpquery", ""), headers=headers)
    return types.SimpleNamespace(
        id=meta.get("ce_id"), source=meta.get("ce_source"), type=meta.get("ce_type"),
        subject=meta.get("ce_subject"), time=meta.get("ce_time"), stream=stream,
        partition=partition, offset=offset,
        traceparent=meta.get("ce_traceparent"), ttl=meta.get("ce_ttl"), http=http)


class Request:
    """ctx.request: the HTTP request a call came from (docs/gateway.md,
    "Headers"); ctx.request is None for an event that did not come from
    HTTP. headers has lower-case names, without the hop-by-hop headers and
    the credentials; query is the raw query parsed, each name to a list of
    values."""

    def __init__(self, meta, params):
        try:
            self.headers = json.loads(meta.get("ce_httpheaders") or "{}")
        except ValueError:
            self.headers = {}
        self.method = meta["ce_httpmethod"]
        self.path = meta.get("ce_httppath", "")
        self.route = meta.get("ce_httproute")
        self.params = params
        self.raw_query = meta.get("ce_httpquery", "")
        import urllib.parse  # on this path only: start time (above)
        self.query = urllib.parse.parse_qs(self.raw_query, keep_blank_values=True)
        self.remote_addr = meta.get("ce_httpremoteaddr")
        self.request_id = meta.get("ce_id")
        self.traceparent = meta.get("ce_traceparent")

    def __repr__(self):
        return f"Request({self.method} {self.path})"


class Response:
    """ctx.response: the status and headers of the answer to an HTTP call,
    sent before the output when the handler returns without an error (an
    error answers with its type's status). Header names are
    case-insensitive; add_header gives a header another value."""

    def __init__(self):
        self.status = None  # 200 when never set
        self._headers = {}  # lower-case name -> [name, [values]]

    def set_header(self, name, value):
        values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        self._headers[str(name).lower()] = [str(name), values]

    def add_header(self, name, value):
        h = self._headers.get(str(name).lower())
        if h is None:
            self.set_header(name, value)
        else:
            h[1].append(str(value))

    def get_header(self, name):
        h = self._headers.get(str(name).lower())
        return None if h is None else list(h[1])

    def remove_header(self, name):
        self._headers.pop(str(name).lower(), None)

    def _head(self, protocol):
        if protocol < 3 or (self.status is None and not self._headers):
            return None
        head = {"headers": {n: vs for n, vs in self._headers.values()}}
        if self.status:
            head["status"] = int(self.status)
        return json.dumps(head).encode()


def to_bytes(value):
    """bytes as is, str as UTF-8, None as empty, outputs as their envelope,
    anything else as JSON."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if getattr(value, "__butter_outputs__", False):
        return _envelope(value.items)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


class ContextCallError(RuntimeError):
    """The pool refused a context call (its REPLY had ok=false)."""


class State:
    """ctx.state: the per-key state of a function with a state block
    (docs/state.md), sent in INVOKE's "state" ({key, field, value}).

    get() returns a fresh copy of the current state (None when there is
    none); set(value) replaces it with value as JSON; set(None) or delete()
    removes it. The change goes back in RESULT, and the pool keeps it only
    if the handler succeeds.
    """

    def __init__(self, function, m):
        self._function = function
        self._m = m
        self.key = (m or {}).get("key") or None
        value = (m or {}).get("value")
        self._value = None if value is None else json.dumps(value)
        self._changed = False

    def get(self):
        return None if self._value is None else json.loads(self._value)

    def set(self, value):
        if self._m is None:
            raise RuntimeError(f"butter: state: function {self._function} has no state block")
        if not self.key:
            raise RuntimeError(
                f'butter: state: this call has no state key (the event has no "{self._m.get("field", "")}" '
                "field, no record key and no Butter-State-Key header)")
        try:
            text = None if value is None else json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"butter: state: {e}") from None
        self._value = text
        self._changed = True

    def delete(self):
        self.set(None)

    def _result(self):
        """The RESULT's "state" as JSON text, or None when unchanged."""
        if not self._changed:
            return None
        return '{"deleted":true}' if self._value is None else '{"value":' + self._value + "}"


class Span:
    """ctx.span: the handler's span (docs/worker-protocol.md, "Spans").

    When the pool traces the call (meta "butter.span"), it records
    attributes and events and goes back in RESULT; its traceparent, the
    child of the invocation's, is what the handler's own calls pass on.
    Otherwise it records nothing, and its traceparent is the invocation's.
    """

    def __init__(self, meta):
        tp = meta.get("ce_traceparent") or ""
        self.recording = meta.get("butter.span") == "1" and len(tp) == 55
        self.traceparent = tp or None
        if self.recording:
            self.id = os.urandom(8).hex()
            self.traceparent = "00-" + tp[3:35] + "-" + self.id + "-" + tp[53:]
            self._start = time.time_ns()
            self._attributes = {}
            self._events = []

    def set_attribute(self, key, value):
        if self.recording:
            self._attributes[str(key)] = value
        return self

    def add_event(self, name, attributes=None):
        if self.recording:
            ev = {"name": str(name), "time_ns": time.time_ns()}
            if attributes:
                ev["attributes"] = dict(attributes)
            self._events.append(ev)
        return self

    def _result(self):
        """The RESULT's "span", or None."""
        if not self.recording:
            return None
        return {"id": self.id, "start_ns": self._start, "end_ns": time.time_ns(),
                "attributes": self._attributes, "events": self._events}


class Context:
    """What a handler knows about its invocation, and its calls to the pool."""

    def __init__(self, fid, m):
        self._id = fid
        self.function = m.get("function") or os.environ.get("BUTTER_FUNCTION", "")
        self.options = m.get("options") or {}
        self.meta = m.get("meta") or {}
        self.event = event_of(self.meta)
        self.params = {k[6:]: v for k, v in self.meta.items() if k.startswith("param.")}
        self.request = Request(self.meta, self.params) if self.meta.get("ce_httpmethod") else None
        self.response = Response()
        self.span = Span(self.meta)
        self.state = State(self.function, m.get("state"))
        self._emits = 0
        ms = m.get("deadline") or 0
        self.deadline = ms / 1000.0 if ms else math.inf  # Unix seconds
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        self._calls = {}  # seq -> [threading.Event, reply]
        self._closed = None  # why no more calls are possible
        self._input = []
        self._started = False
        self._stream = None  # a streaming handler's StreamInput

    def remaining_ms(self):
        if self.deadline == math.inf:
            return math.inf
        return max(0, int(self.deadline * 1000 - time.time() * 1000))

    @staticmethod
    def outputs(items):
        """Several outputs: return ctx.outputs([a, b, ...]) from the handler."""
        return Outputs(items)

    def log(self, level, message):
        self._call({"op": "log", "level": str(level), "message": str(message)})

    def emit(self, stream, value, key=None):
        with self._lock:
            self._emits += 1
            n = self._emits
        msg = {"op": "emit", "stream": str(stream), "number": n}
        if key is not None:
            msg["key"] = str(key)
        msg["value"] = binascii.b2a_base64(to_bytes(value), newline=False).decode("ascii")
        self._call(msg)

    def call(self, target, value, timeout=None, key=None):
        return _ctx_call(self._call, None, target, value, timeout, key)

    def _call(self, msg, raw=False):
        """Sends a CALL and blocks until its REPLY; raises if ok is false
        (with raw, returns the REPLY whatever it says)."""
        with self._lock:
            if self._closed:
                raise ContextCallError(self._closed)
            self._seq += 1
            seq = self._seq
            pending = self._calls[seq] = [threading.Event(), None]
        with _space:
            _pending_calls[0] += 1
            _space.notify_all()  # a reader held back by a full stream reads on
        send(CALL, self._id, json.dumps({"seq": seq, **msg}).encode())
        pending[0].wait()
        reply = pending[1]
        if not raw and not reply.get("ok"):
            raise ContextCallError(reply.get("error") or "context call failed")
        return reply

    def _reply(self, seq, reply):
        with self._lock:
            pending = self._calls.pop(seq, None)
        if pending:
            with _space:
                _pending_calls[0] -= 1
            pending[1] = reply
            pending[0].set()

    def _close(self, why):
        """Refuses further calls and fails the pending ones (fd 3 ended)."""
        with self._lock:
            self._closed = why
            pending = list(self._calls)
        for seq in pending:
            self._reply(seq, {"ok": False, "error": why})

    def _drain(self):
        """Waits for the REPLY of every pending call, then refuses new ones."""
        while True:
            with self._lock:
                if not self._calls:
                    self._closed = self._closed or "context call after the invocation finished"
                    return
                event = next(iter(self._calls.values()))[0]
            event.wait()


class EventContext:
    """The context of one event of a batch: its own meta and params, the
    batch's deadline, cancellation and context calls (which carry the
    event's index)."""

    def __init__(self, batch, index, meta):
        self._batch = batch
        self._index = index
        self.function = batch.function
        self.options = {}
        self.meta = meta
        self.event = event_of(meta)
        self.params = {k[6:]: v for k, v in meta.items() if k.startswith("param.")}
        self.span = Span(meta)  # records nothing in a batch; its traceparent is the event's
        self.state = batch.state
        self.deadline = batch.deadline
        self.cancelled = batch.cancelled
        self._emits = 0

    outputs = staticmethod(Outputs)

    def remaining_ms(self):
        return self._batch.remaining_ms()

    def log(self, level, message):
        self._batch._call({"op": "log", "index": self._index, "level": str(level), "message": str(message)})

    def emit(self, stream, value, key=None):
        self._emits += 1  # an event of a batch runs on one thread
        msg = {"op": "emit", "index": self._index, "stream": str(stream), "number": self._emits}
        if key is not None:
            msg["key"] = str(key)
        msg["value"] = binascii.b2a_base64(to_bytes(value), newline=False).decode("ascii")
        self._batch._call(msg)

    def call(self, target, value, timeout=None, key=None):
        return _ctx_call(self._batch._call, self._index, target, value, timeout, key)


def _ctx_call(call, index, target, value, timeout, key):
    """ctx.call(target, value, timeout=None, key=None): emit and await
    (docs/worker-protocol.md, "call"). Returns the reply's bytes, or raises
    butter.CallError (its type the callee's error type, Timeout,
    CircuitOpen, ...; None when the pool refused the call). timeout is in
    seconds; None waits until the call's own deadline."""
    import butter

    msg = {"op": "call", "target": str(target)}
    if index is not None:
        msg["index"] = index
    if key is not None:
        msg["key"] = str(key)
    if timeout is not None:
        if not timeout > 0:
            raise ValueError(f"butter: ctx.call: timeout {timeout!r} is not a positive number of seconds")
        msg["timeout_ms"] = max(1, math.ceil(timeout * 1000))
    msg["value"] = binascii.b2a_base64(to_bytes(value), newline=False).decode("ascii")
    reply = call(msg, raw=True)
    if not reply.get("ok"):
        raise butter.CallError(msg["target"], reply.get("error_type") or None, reply.get("error") or "context call failed")
    return binascii.a2b_base64(reply.get("value") or "")


def read_batch(p):
    """Decodes a BATCH payload (docs/worker-protocol.md, "Batches"): the
    deadline, then each event's metadata and input."""
    try:
        deadline, count = struct.unpack_from(">qI", p, 0)
        off = 12
        if count > len(p):
            raise ValueError(f"{count} events in {len(p)} bytes")
        events = []
        for _ in range(count):
            (pairs,) = struct.unpack_from(">H", p, off)
            off += 2
            meta = {}
            for _ in range(pairs):
                (klen,) = struct.unpack_from(">H", p, off)
                key = p[off + 2:off + 2 + klen]
                off += 2 + klen
                (vlen,) = struct.unpack_from(">I", p, off)
                value = p[off + 4:off + 4 + vlen]
                off += 4 + vlen
                if len(key) != klen or len(value) != vlen:
                    raise ValueError("truncated")
                meta[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
            (ilen,) = struct.unpack_from(">I", p, off)
            data = p[off + 4:off + 4 + ilen]
            off += 4 + ilen
            if len(data) != ilen:
                raise ValueError("truncated")
            events.append((meta, data))
        if off != len(p):
            raise ValueError(f"{len(p) - off} bytes after the last event")
        return deadline, events
    except (struct.error, ValueError) as e:
        die(2, f"malformed BATCH payload: {e}")


# A batch's results are held and written together in RESULTS frames: after
# the first FLUSH_FIRST, then every FLUSH_EVERY, every FLUSH_SECONDS while the
# batch runs, and at its end.
FLUSH_FIRST, FLUSH_EVERY, FLUSH_SECONDS = 8, 32, 0.001


def run_batch(handler, invocations, ctx, events):
    """Runs a batch's events one at a time, in order; the first failure ends
    it (docs/worker-protocol.md, "Batches")."""
    lock = threading.Lock()
    held = []
    held_bytes = [0]
    first = [0]
    limit = [FLUSH_FIRST]
    ended = threading.Event()

    def flush_locked():
        if held:
            send(RESULTS, ctx._id, struct.pack(">II", first[0], len(held)) + b"".join(held))
            first[0] += len(held)
            held.clear()
            held_bytes[0] = 0
            limit[0] = FLUSH_EVERY

    def flush():
        with lock:
            flush_locked()

    def add(result):
        # A RESULTS frame must fit in MAX_FRAME (its length counts type, id,
        # first and n, then the results): a result that would take the frame
        # past it goes in the next one, and a frame of a chunk's worth or
        # more is written at once.
        with lock:
            if held and 13 + held_bytes[0] + len(result) > MAX_FRAME:
                flush_locked()
            held.append(result)
            held_bytes[0] += len(result)
            if len(held) >= limit[0] or held_bytes[0] >= CHUNK:
                flush_locked()

    def tick():
        while not ended.wait(FLUSH_SECONDS):
            flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    for index, (meta, data) in enumerate(events):
        if ctx.cancelled.is_set():
            add(_error_result("Skipped", "the batch was cancelled before this event ran"))
            break
        output, error = call_handler(handler, data, EventContext(ctx, index, meta))
        if error:
            if error.get("detail"):
                # RESULTS carry no detail: it goes to the function's log.
                sys.stderr.write(error["detail"])
            add(_error_result(error["type"], error["message"]))
            break
        if len(output) > MAX_FRAME - 64:
            add(_error_result("PostconditionFailed", f"an output of {len(output)} bytes is more than one frame carries"))
            break
        add(b"\x00" + struct.pack(">I", len(output)) + output)
    ended.set()
    ticker.join()
    ctx._drain()  # the id must not be freed while a CALL of it awaits its REPLY
    invocations.pop(ctx._id, None)
    flush()


def _error_result(kind, message):
    t, m = kind.encode("utf-8"), message.encode("utf-8")
    return b"\x01" + struct.pack(">H", len(t)) + t + struct.pack(">I", len(m)) + m


def _import(module):
    """Imports the handler's module. A module that is a file of the
    working directory is loaded from that file when the import system
    cannot find it: a sandbox that hides a tree inside the directory (butter
    dev's .butter beside a single-file source at the project's root) lets
    the instance open the directory's files but not list the directory,
    which is how the import system looks for modules."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        path = os.path.join(os.getcwd(), *module.split(".")) + ".py"
        if e.name != module or not os.path.isfile(path):
            raise
        # On this path only: importlib.util costs 6 ms of start (above).
        from importlib.util import module_from_spec, spec_from_file_location

        spec = spec_from_file_location(module, path)
        mod = module_from_spec(spec)
        sys.modules[module] = mod
        spec.loader.exec_module(mod)
        return mod


def load_handler():
    spec = os.environ.get("BUTTER_HANDLER") or "main.handle"
    module, _, name = spec.rpartition(".")
    sys.path.insert(0, os.getcwd())
    # A bundle's installed requirements (package deps): after the
    # function's own modules.
    packages = os.path.join(os.getcwd(), "python_packages")
    if os.path.isdir(packages):
        sys.path.insert(1, packages)
    try:
        fn = getattr(_import(module or "main"), name)
        if not callable(fn):
            raise TypeError(f"{spec} is not callable")
        return fn
    except BaseException:
        import traceback

        die(1, f'cannot load handler "{spec}" from {os.getcwd()}:\n{traceback.format_exc()}')


def call_handler(handler, data, ctx):
    """Runs the handler: (output, None), or (None, the error as RESULT
    carries it) when it raised."""
    try:
        result = handler(data, ctx)
        if _isawaitable(result):
            import asyncio

            result = asyncio.run(_wait(result))
        return to_bytes(result), None
    except BaseException as e:
        kind = getattr(e, "butter_type", None)
        kind = kind if isinstance(kind, str) and kind else "Exception"
        error = {"type": kind, "message": str(e) or type(e).__name__}
        if kind == "Exception":
            import traceback

            # For the pool's log, with the call's request id; never for
            # the caller (docs/worker-protocol.md, "Errors").
            error["detail"] = traceback.format_exc()
        return None, error


_protocol = 1  # the version spoken, set by main


def run(handler, invocations, ctx, data):
    output, error = call_handler(handler, data, ctx)
    ctx._drain()  # the id must not be freed while a CALL of it awaits its REPLY
    if error is None:
        head = ctx.response._head(_protocol)
        if head is not None:
            send(HEAD, ctx._id, head)
        for off in range(0, len(output), CHUNK):
            send(DATA, ctx._id, output[off:off + CHUNK])
    invocations.pop(ctx._id, None)  # before RESULT: the pool may reuse the id at once
    span = ctx.span._result()
    if error:
        result = json.dumps({"error": error, "span": span} if span else {"error": error})
    else:
        state = ctx.state._result()
        result = '{"state":' + state + "}" if state else "{}"
        if span:
            result = result[:-1] + ("," if len(result) > 2 else "") + '"span":' + json.dumps(span, default=str) + "}"
    send(RESULT, ctx._id, result.encode())


async def _wait(awaitable):
    return await awaitable


def _isawaitable(obj):
    """inspect.isawaitable without importing inspect: a coroutine, a
    generator-based coroutine, or an object whose type has __await__."""
    return (
        isinstance(obj, types.CoroutineType)
        or isinstance(obj, types.GeneratorType) and bool(obj.gi_code.co_flags & 0x100)  # CO_ITERABLE_COROUTINE
        or hasattr(type(obj), "__await__")
    )


class _Threads:
    """Runs calls on up to n threads, started as calls need them, as
    concurrent.futures.ThreadPoolExecutor does, without its import cost."""

    def __init__(self, n):
        self._n = n
        self._tasks = []
        self._cond = threading.Condition()
        self._idle = 0
        self._threads = []
        self._closed = False

    def submit(self, fn, *args):
        with self._cond:
            self._tasks.append((fn, args))
            if self._idle > len(self._tasks) - 1:
                self._cond.notify()
                return
            if len(self._threads) < self._n:
                t = threading.Thread(target=self._work, name=f"butter-invocation_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            else:
                self._cond.notify()

    def _work(self):
        while True:
            with self._cond:
                while not self._tasks and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._tasks:
                    return
                fn, args = self._tasks.pop(0)
            try:
                fn(*args)
            except BaseException:
                import traceback

                traceback.print_exc()

    def shutdown(self):
        """Waits for the calls submitted to finish; the threads then end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()


def frames(f):
    """Yields (type, id, payload) from the stream until its end."""
    while True:
        header = f.read(4)
        if not header:
            return
        if len(header) < 4:
            die(2, "fd 3 closed inside a frame")
        n = struct.unpack(">I", header)[0]
        if n < 5 or n > MAX_FRAME:
            die(2, f"bad frame length {n}")
        body = f.read(n)
        if len(body) < n:
            die(2, "fd 3 closed inside a frame")
        yield body[0], struct.unpack_from(">I", body, 1)[0], body[5:]


def parse(payload, what):
    try:
        return json.loads(payload)
    except ValueError as e:
        die(2, f"malformed {what} payload: {e}")


class StreamInput:
    """A streaming handler's input: a file-like object over the DATA
    frames as they come. read(n) returns up to n bytes (all that is left
    with n < 0), b"" at the end; iterating yields chunks as they come."""

    def __init__(self):
        self._chunks = []
        self._queued = 0
        self._ended = False
        self._error = None

    # The reader thread's side.
    def _push(self, chunk):
        with _space:
            if self._ended or self._error:
                return
            self._chunks.append(chunk)
            self._queued += len(chunk)
            _space.notify_all()
            while self._queued > STREAM_HWM and not self._error and not _pending_calls[0]:
                _space.wait()

    def _end(self, error=None):
        with _space:
            self._ended = True
            self._error = self._error or error
            _space.notify_all()

    # The handler's side.
    def read(self, n=-1):
        with _space:
            while not self._chunks and not self._ended and not self._error:
                _space.wait()
            if self._error:
                raise self._error
            if n is None or n < 0:
                while not self._ended and not self._error:
                    _space.wait()
                if self._error:
                    raise self._error
                out = b"".join(self._chunks)
                self._chunks, self._queued = [], 0
            elif not self._chunks:
                out = b""
            else:
                first = self._chunks[0]
                out, rest = first[:n], first[n:]
                if rest:
                    self._chunks[0] = rest
                else:
                    self._chunks.pop(0)
                self._queued -= len(out)
            _space.notify_all()
            return out

    def __iter__(self):
        while True:
            chunk = self.read(1 << 20)
            if not chunk:
                return
            yield chunk

    def readline(self):
        parts = []
        while True:
            with _space:
                while not self._chunks and not self._ended and not self._error:
                    _space.wait()
                if self._error:
                    raise self._error
                if not self._chunks:
                    return b"".join(parts)
                first = self._chunks[0]
                i = first.find(b"\n")
                if i >= 0:
                    parts.append(first[:i + 1])
                    rest = first[i + 1:]
                    if rest:
                        self._chunks[0] = rest
                    else:
                        self._chunks.pop(0)
                    self._queued -= i + 1
                    _space.notify_all()
                    return b"".join(parts)
                parts.append(self._chunks.pop(0))
                self._queued -= len(first)
                _space.notify_all()


class StreamOutput:
    """A streaming handler's output: write(bytes or str) sends it at once
    (in DATA frames of at most CHUNK), after the answer's head."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._head_sent = False

    def _head(self):
        if not self._head_sent:
            self._head_sent = True
            head = self._ctx.response._head(_protocol)
            if head is not None:
                send(HEAD, self._ctx._id, head)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = bytes(data)
        self._head()
        for off in range(0, len(data), CHUNK):
            send(DATA, self._ctx._id, data[off:off + CHUNK])
        return len(data)

    def flush(self):
        pass


def run_stream(handler, invocations, ctx):
    """Runs a streaming handler from the INVOKE on."""
    output = StreamOutput(ctx)
    error = None
    try:
        result = handler(ctx._stream, output, ctx)
        if _isawaitable(result):
            import asyncio

            asyncio.run(_wait(result))
    except BaseException as e:
        _, error = call_handler(_raise(e), b"", ctx)
    ctx._stream._end(RuntimeError("butter: the handler returned"))
    ctx._drain()
    if error is None:
        output._head()
    invocations.pop(ctx._id, None)
    if error:
        result = json.dumps({"error": error})
    else:
        state = ctx.state._result()
        result = '{"state":' + state + "}" if state else "{}"
    send(RESULT, ctx._id, result.encode())


def _raise(e):
    """A handler that raises e, to type it as call_handler does."""

    def h(data, ctx):
        raise e

    return h


def _collecting(stream_handler):
    """A buffered handler over a streaming one, for a batch's whole events."""

    class _Collect:
        def __init__(self):
            self.parts = []

        def write(self, data):
            self.parts.append(data.encode("utf-8") if isinstance(data, str) else bytes(data))

        def flush(self):
            pass

    def h(data, ctx):
        s = StreamInput()
        s._chunks, s._queued, s._ended = ([data] if data else []), len(data), True
        out = _Collect()
        result = stream_handler(s, out, ctx)
        if _isawaitable(result):
            import asyncio

            asyncio.run(_wait(result))
        return b"".join(out.parts)

    return h


def main():
    handler = load_handler()
    streaming = getattr(handler, "__butter_stream__", False)
    batch_handler = _collecting(handler) if streaming else handler
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # prints reach the function's log promptly
    try:
        concurrency = max(1, int(os.environ.get("BUTTER_CONCURRENCY") or 1))
    except ValueError:
        concurrency = 1
    try:
        os.fstat(OUT_FD)
        reader = open(IN_FD, "rb", buffering=1 << 16, closefd=False)
    except OSError as e:
        die(1, f"fds 3 and 4 must be open: {e}")
    try:
        protocol = max(1, min(PROTOCOL, int(os.environ.get("BUTTER_PROTOCOL") or 1)))
    except ValueError:
        protocol = 1
    global _protocol
    _protocol = protocol
    send(HELLO, 0, json.dumps({"protocol": protocol, "sdk": "python/0.2", "executable": EXECUTABLE}).encode())

    invocations = {}  # id -> Context; read here, entries removed by run()
    pool = _Threads(concurrency)
    for ftype, fid, payload in frames(reader):
        ctx = invocations.get(fid)
        if ftype == INVOKE:
            if ctx is not None:
                die(2, f"INVOKE for invocation {fid}, which is in flight")
            ctx = invocations[fid] = Context(fid, parse(payload, "INVOKE"))
            if streaming:
                ctx._started = True
                ctx._stream = StreamInput()
                pool.submit(run_stream, handler, invocations, ctx)
        elif ftype == DATA:
            if ctx is not None and ctx._stream is not None:
                ctx._stream._push(payload)
            elif ctx is not None and not ctx._started:
                ctx._input.append(payload)
        elif ftype == END:
            if ctx is not None and ctx._stream is not None:
                ctx._stream._end()
            elif ctx is not None and not ctx._started:
                ctx._started = True
                data, ctx._input = b"".join(ctx._input), None
                pool.submit(run, handler, invocations, ctx, data)
        elif ftype == BATCH:
            if protocol < 2:
                die(2, f"unexpected BATCH frame (batch {fid}): protocol {protocol} has none")
            if ctx is not None:
                die(2, f"BATCH for id {fid}, which is in flight")
            deadline, events = read_batch(payload)
            ctx = invocations[fid] = Context(fid, {"deadline": deadline})
            ctx._started = True
            pool.submit(run_batch, batch_handler, invocations, ctx, events)
        elif ftype == CANCEL:
            if ctx is not None and not ctx._started and protocol >= 2:
                # Its input will not end (the pool's caller broke off): drop
                # it, never run it.
                invocations.pop(fid, None)
                send(RESULT, fid, json.dumps({"error": {"type": "Skipped", "message": "cancelled before its input ended"}}).encode())
            elif ctx is not None:
                ctx.cancelled.set()
                if ctx._stream is not None:
                    ctx._stream._end(RuntimeError("butter: the call was cancelled (its deadline passed, or its caller went away)"))
        elif ftype == REPLY:
            reply = parse(payload, "REPLY")
            if ctx is not None:
                ctx._reply(reply.get("seq"), reply)
        else:
            die(2, f"unexpected frame type {ftype} (invocation {fid})")

    # fd 3 ended: input that never ended can no longer end, and calls can no
    # longer be answered; the started invocations finish, then we exit.
    for fid, ctx in list(invocations.items()):
        if not ctx._started:
            invocations.pop(fid, None)
        if ctx._stream is not None:
            ctx._stream._end(RuntimeError("butter: the pool closed the connection"))
        ctx._close("the pool closed the connection")
    pool.shutdown()
    sys.stdout.flush()
    sys.exit(0)


if __name__ == "__main__":
    main()
