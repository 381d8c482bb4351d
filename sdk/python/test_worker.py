"""Tests of butter_worker.py: each test spawns a real worker process whose fds 3
and 4 are pipes to this process, and speaks the frames of the protocol to it.

Run with `python3 -m unittest discover -s sdk/python -p 'test_*.py'` from
the repository root.
"""

import base64
import json
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "butter_worker.py")
TESTDATA = os.path.join(HERE, "testdata")
HELLO, INVOKE, DATA, END, RESULT, CANCEL, CALL, REPLY, BATCH, RESULTS, HEAD = range(1, 12)
WAIT = 5.0  # the deadline of every single wait, in seconds

# Runs in the child: moves the two pipe ends it inherited to fds 3 and 4
# (through fds >= 10, so that neither clobbers the other), then execs the
# worker in the same process.
WRAPPER = """
import fcntl, os, sys
src = [int(a) for a in sys.argv[1:3]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in src]
for fd in src:
    os.close(fd)
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)
    os.close(fd)
os.execv(sys.executable, [sys.executable] + sys.argv[3:])
"""


def frame(ftype, fid, payload=b""):
    return struct.pack(">IBI", 5 + len(payload), ftype, fid) + payload


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Worker:
    """The pool's side of one worker process."""

    def __init__(self, handler, concurrency=1, env=None):
        to_worker_r, self.to_worker = os.pipe()  # pool -> worker: the worker's fd 3
        self.from_worker, from_worker_w = os.pipe()  # worker -> pool: the worker's fd 4
        self.pipe_inodes = (os.fstat(to_worker_r).st_ino, os.fstat(from_worker_w).st_ino)
        full_env = dict(os.environ, BUTTER_PROTOCOL="1", BUTTER_FUNCTION="fn", BUTTER_HANDLER=handler,
                        BUTTER_CONCURRENCY=str(concurrency), PYTHONDONTWRITEBYTECODE="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(to_worker_r), str(from_worker_w), WORKER],
            cwd=TESTDATA, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(to_worker_r, from_worker_w))
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.frames = queue.Queue()
        self.out = {"stdout": b"", "stderr": b""}
        self.threads = [
            threading.Thread(target=self._read_frames, daemon=True),
            threading.Thread(target=self._drain, args=("stdout", self.proc.stdout), daemon=True),
            threading.Thread(target=self._drain, args=("stderr", self.proc.stderr), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read_frames(self):
        while True:
            header = read_exact(self.from_worker, 4)
            if header is None:
                self.frames.put(None)
                return
            body = read_exact(self.from_worker, struct.unpack(">I", header)[0])
            self.frames.put((body[0], struct.unpack_from(">I", body, 1)[0], body[5:]))

    def _drain(self, name, f):
        for chunk in iter(lambda: f.read1(65536), b""):
            self.out[name] += chunk

    @property
    def stderr(self):
        return self.out["stderr"].decode(errors="replace")

    def send(self, ftype, fid, payload=b""):
        os.write(self.to_worker, frame(ftype, fid, payload))  # small frames: one write

    def send_big(self, ftype, fid, payload):
        view = memoryview(frame(ftype, fid, payload))
        while view:
            view = view[os.write(self.to_worker, view):]

    def send_json(self, ftype, fid, value):
        self.send(ftype, fid, json.dumps(value).encode())

    def invoke_start(self, fid, **meta):
        msg = {"function": "fn", "deadline": int(time.time() * 1000) + 30000, "options": {}, "meta": {}}
        msg.update(meta)
        self.send_json(INVOKE, fid, msg)

    def invoke(self, fid, data, **meta):
        self.invoke_start(fid, **meta)
        if data:
            self.send(DATA, fid, data)
        self.send(END, fid)

    def next(self, timeout=WAIT):
        """The next frame from the worker, None at EOF; fails after timeout."""
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame within {timeout} s; stderr: {self.stderr}") from None

    def expect(self, ftype, fid):
        f = self.next()
        if f is None or f[:2] != (ftype, fid):
            raise AssertionError(f"expected frame {ftype}/{fid}, got {f}; stderr: {self.stderr}")
        return f[2]

    def hello(self):
        return json.loads(self.expect(HELLO, 0))

    def result(self, fid):
        """The output DATA frames of one invocation up to its RESULT."""
        chunks = []
        while True:
            f = self.next()
            if f is None or f[1] != fid or f[0] not in (DATA, RESULT):
                raise AssertionError(f"unexpected {f} in the output of {fid}; stderr: {self.stderr}")
            if f[0] == RESULT:
                return b"".join(chunks), json.loads(f[2]), chunks
            chunks.append(f[2])

    def close_input(self):
        if self.to_worker is not None:
            os.close(self.to_worker)
            self.to_worker = None

    def wait(self, timeout=WAIT):
        """The worker's exit code, once it and its output streams have ended."""
        code = self.proc.wait(timeout)
        for t in self.threads[1:]:
            t.join(timeout)
            assert not t.is_alive(), "stdout/stderr still open"
        return code

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self.close_input()
        for t in self.threads:
            t.join(WAIT)
        os.close(self.from_worker)
        self.proc.stdout.close()
        self.proc.stderr.close()


class WorkerTest(unittest.TestCase):
    def start(self, handler, concurrency=1):
        w = Worker(handler, concurrency)
        self.addCleanup(w.close)
        return w

    def started(self, handler, concurrency=1):
        w = self.start(handler, concurrency)
        # executable: the interpreter that runs it (the pool starts the
        # next instances with it when python3 on PATH is a shim).
        self.assertEqual(w.hello(), {"protocol": 1, "sdk": "python/0.2", "executable": sys.executable})
        return w

    def test_hello_and_fds_are_the_pipes(self):
        w = self.started("echo.handle")
        for fd, inode in zip((3, 4), w.pipe_inodes):
            self.assertEqual(os.readlink(f"/proc/{w.proc.pid}/fd/{fd}"), f"pipe:[{inode}]")
        w.close_input()
        self.assertEqual(w.wait(), 0)
        self.assertIsNone(w.next())

    def test_echo_3mib_in_several_data_frames(self):
        w = self.started("echo.handle")
        data = os.urandom(3 * 1024 * 1024 + 17)
        w.invoke_start(1)
        step = 700 * 1024
        for off in range(0, len(data), step):
            w.send_big(DATA, 1, data[off:off + step])
        w.send(END, 1)
        out, result, chunks = w.result(1)
        self.assertEqual(result, {})
        self.assertTrue(out == data, "output differs from input")
        self.assertGreaterEqual(len(chunks), 4)
        self.assertTrue(all(len(c) <= 1 << 20 for c in chunks))

    def test_default_handler_module(self):
        for handler in ("", "handle", "main.handle"):
            with self.subTest(handler=handler):
                w = self.started(handler)
                w.invoke(1, b"x")
                self.assertEqual(w.result(1)[:2], (b"main:x", {}))

    def test_return_values(self):
        w = self.started("values.handle")
        want = {"dict": b'{"a": 1, "b": [true, null]}', "none": b"", "number": b"42",
                "str": "héllo".encode(), "bytearray": b"raw"}
        for fid, (name, output) in enumerate(want.items(), 1):
            w.invoke(fid, name.encode())
            out, result, chunks = w.result(fid)
            self.assertEqual((out, result, len(chunks)), (output, {}, 1 if output else 0), name)

    def test_async_handler(self):
        w = self.started("aio.handle")
        w.invoke(1, b"hi")
        self.assertEqual(w.result(1)[:2], (b"async:hi", {}))

    def test_plain_handler_imports_no_asyncio(self):
        # asyncio and concurrent.futures cost about 30 ms of a cold start:
        # a plain handler must not pay for them, even after an async call.
        w = self.started("modules.handle", concurrency=2)
        w.invoke(1, b"")
        self.assertEqual(w.result(1)[:2], (b"", {}))

    def test_async_handler_with_threads(self):
        w = self.started("aio.handle", concurrency=3)
        for fid in range(1, 7):
            w.invoke(fid, str(fid).encode())
        outputs, results = {}, {}
        while len(results) < 6:  # the calls overlap: their frames interleave
            ftype, fid, payload = w.next()
            if ftype == DATA:
                outputs[fid] = outputs.get(fid, b"") + payload
            else:
                self.assertEqual(ftype, RESULT)
                results[fid] = json.loads(payload)
        self.assertEqual(outputs, {fid: f"async:{fid}".encode() for fid in range(1, 7)})
        self.assertEqual(results, {fid: {} for fid in range(1, 7)})

    def test_two_concurrent_invocations_interleaved(self):
        w = self.started("slow.handle", concurrency=2)
        w.invoke_start(1)
        w.invoke_start(2)
        w.send(DATA, 1, b"6")
        w.send(DATA, 2, b"5")
        w.send(DATA, 1, b"00")
        w.send(END, 1)
        w.send(END, 2)
        self.assertEqual(w.result(2)[:2], (b"slept 5", {}))
        self.assertEqual(w.result(1)[:2], (b"slept 600", {}))

    def test_errors(self):
        cases = [
            ("throw.handle", {"type": "Exception", "message": "boom"}),
            ("throw.precondition", {"type": "PreconditionFailed", "message": "bad input: xyz"}),
            ("throw.postcondition", {"type": "PostconditionFailed", "message": "bad output"}),
            ("throw.custom", {"type": "PreconditionFailed", "message": "custom typed"}),
        ]
        for handler, error in cases:
            with self.subTest(handler=handler):
                w = self.started(handler)
                w.invoke(9, b"xyz")
                output, result = w.result(9)[:2]
                detail = result.get("error", {}).pop("detail", None)
                self.assertEqual((output, result), (b"", {"error": error}))
                # An Exception's traceback is the detail, for the pool's
                # log only; the typed errors have none.
                if error["type"] == "Exception":
                    self.assertRegex(detail, r"^Traceback \(most recent call last\):\n(.|\n)*ValueError: boom\n$")
                else:
                    self.assertIsNone(detail)

    def test_emit_answered(self):
        w = self.started("emit.handle")
        w.invoke(3, b'{"t": 21.5}')
        msg = json.loads(w.expect(CALL, 3))
        self.assertEqual(msg, {"seq": msg["seq"], "op": "emit", "stream": "alerts", "number": 1, "key": "d1",
                               "value": base64.b64encode(b'{"t": 21.5}').decode()})
        self.assertIsInstance(msg["seq"], int)
        with self.assertRaises(AssertionError):  # nothing until the pool has answered
            w.next(timeout=0.2)
        w.send_json(REPLY, 3, {"seq": msg["seq"], "ok": True})
        self.assertEqual(w.result(3)[:2], (b"emitted", {}))

    def test_outputs_envelope(self):
        w = self.started("exact.many")
        w.invoke(1, b"x")
        self.assertEqual(json.loads(w.result(1)[0]), {"butter.outputs": [
            {"base64": "AAE="}, {"text": "text"}, {"value": {"x": 1}}, {"value": None}, {"key": "k2", "text": "b"}]})
        w = self.started("exact.many_ctx")
        w.invoke(1, b"x")
        self.assertEqual(w.result(1)[0], b'{"butter.outputs":[{"text":"a"}]}')

    def test_event_metadata(self):
        w = self.started("exact.event")
        meta = {"ce_id": "e1", "ce_source": "src", "ce_type": "t", "ce_subject": "k", "ce_time": "2026-12-03T08:00:00Z",
                "butter.position": "in/2/41",
                "ce_traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "ce_ttl": "30s",
                "ce_httpmethod": "PUT", "ce_httppath": "/p", "ce_httpquery": "a=1", "ce_httpheaders": '{"x-a":"1"}'}
        w.invoke(1, b"x", meta=meta)
        self.assertEqual(json.loads(w.result(1)[0]), {
            "id": "e1", "source": "src", "type": "t", "subject": "k", "time": "2026-12-03T08:00:00Z", "stream": "in",
            "partition": 2, "offset": 41, "traceparent": meta["ce_traceparent"], "ttl": "30s",
            "http": {"method": "PUT", "path": "/p", "query": "a=1", "headers": {"x-a": "1"}}})
        w.invoke(2, b"x", meta={})
        e = json.loads(w.result(2)[0])
        self.assertEqual((e["id"], e["partition"], e["http"]), (None, None, None))

    def test_emits_numbered(self):
        w = self.started("exact.emits")
        w.invoke(1, b"x")
        for n, v in ((1, b"a"), (2, b"b")):
            msg = json.loads(w.expect(CALL, 1))
            self.assertEqual((msg["number"], base64.b64decode(msg["value"])), (n, v))
            w.send_json(REPLY, 1, {"seq": msg["seq"], "ok": True})
        self.assertEqual(w.result(1)[0], b"done")

    def test_emit_refused(self):
        w = self.started("emit.refused")
        w.invoke(1, b"v")
        msg = json.loads(w.expect(CALL, 1))
        self.assertEqual((msg["stream"], "key" in msg, msg["value"]), ("nowhere", False, "dg=="))
        w.send_json(REPLY, 1, {"seq": msg["seq"], "ok": False, "error": 'unknown stream "nowhere"'})
        self.assertEqual(w.result(1)[:2], (b'refused: unknown stream "nowhere"', {}))

    def test_emit_refused_uncaught_is_an_exception(self):
        w = self.started("emit.handle")
        w.invoke(2, b"1")
        msg = json.loads(w.expect(CALL, 2))
        w.send_json(REPLY, 2, {"seq": msg["seq"], "ok": False, "error": 'unknown stream "alerts"'})
        output, result = w.result(2)[:2]
        self.assertIn("Traceback", result["error"].pop("detail"))
        self.assertEqual((output, result), (b"", {"error": {"type": "Exception", "message": 'unknown stream "alerts"'}}))

    def test_log_and_increasing_seq(self):
        w = self.started("log.handle")
        seqs = []
        for fid in (1, 2):
            w.invoke(fid, b"abcd")
            msg = json.loads(w.expect(CALL, fid))
            self.assertEqual(msg, {"seq": msg["seq"], "op": "log", "level": "warn", "message": "got 4 bytes"})
            seqs.append(msg["seq"])
            w.send_json(REPLY, fid, {"seq": msg["seq"], "ok": True})
            self.assertEqual(w.result(fid)[:2], (b"logged", {}))
        self.assertTrue(all(isinstance(s, int) and s > 0 for s in seqs), seqs)

    def test_print_does_not_corrupt_the_protocol(self):
        w = self.started("noisy.handle")
        w.invoke(1, b"payload")
        self.assertEqual(w.result(1)[:2], (b"payload", {}))
        w.close_input()
        self.assertEqual(w.wait(), 0)
        self.assertIn(b"noise from the handler\n", w.out["stdout"])
        self.assertIn(b"\x00\x00\x00\x05\x05\x00\x00\x00\x01", w.out["stdout"])
        self.assertIn("more noise on stderr", w.stderr)

    def test_context(self):
        w = self.started("ctxinfo.handle")
        deadline = int(time.time() * 1000) + 20000
        meta = {"content-type": "application/json", "param.device": "d1", "param.room": "r2", "ce-type": "t"}
        w.invoke(1, b"", function="ingest", deadline=deadline, options={"e": "s/a/b/"}, meta=meta)
        info = json.loads(w.result(1)[0])
        self.assertEqual(info["params"], {"device": "d1", "room": "r2"})
        self.assertEqual(info["meta"], meta)
        self.assertEqual(info["options"], {"e": "s/a/b/"})
        self.assertEqual(info["function"], "ingest")
        self.assertAlmostEqual(info["deadline"], deadline / 1000, places=3)
        self.assertTrue(15000 < info["remaining_ms"] <= 20000, info["remaining_ms"])
        self.assertFalse(info["cancelled"])

    def test_cancel(self):
        w = self.started("cancel.handle", concurrency=2)
        w.invoke(5, b"")
        w.invoke(6, b"")
        w.send(CANCEL, 6)
        self.assertEqual(w.result(6)[:2], (b"cancelled with time left", {}))
        w.send(CANCEL, 99)  # an id not in flight is ignored
        w.send(CANCEL, 5)
        self.assertEqual(w.result(5)[:2], (b"cancelled with time left", {}))

    def test_missing_module_exits_1_before_hello(self):
        w = self.start("missing.handle")
        self.assertEqual(w.wait(), 1)
        self.assertIn('cannot load handler "missing.handle"', w.stderr)
        self.assertIn("No module named 'missing'", w.stderr)
        self.assertIsNone(w.next())

    def test_failing_import_and_missing_attribute_exit_1(self):
        for handler, reason in (("broken.handle", "this module fails to import"),
                                ("echo.nothere", "has no attribute 'nothere'")):
            with self.subTest(handler=handler):
                w = self.start(handler)
                self.assertEqual(w.wait(), 1)
                self.assertIn(reason, w.stderr)
                self.assertIsNone(w.next())

    def test_eof_finishes_in_flight_work_then_exits_0(self):
        w = self.started("slow.handle", concurrency=2)
        w.invoke(1, b"300")
        w.invoke(2, b"100")
        w.close_input()
        frames = [w.next() for _ in range(4)]
        self.assertEqual([f[:2] for f in frames], [(DATA, 2), (RESULT, 2), (DATA, 1), (RESULT, 1)])
        self.assertEqual(frames[2][2], b"slept 300")
        self.assertEqual(w.wait(), 0)
        self.assertIsNone(w.next())

    def test_unknown_frame_type_exits_2(self):
        w = self.started("echo.handle")
        w.send(42, 1, b"?")
        self.assertEqual(w.wait(), 2)
        self.assertIn("unexpected frame type 42", w.stderr)

    def test_protocol_errors_exit_2(self):
        invoke = frame(INVOKE, 5, b'{"function": "fn"}')
        for what, data, message in [
            ("an INVOKE for an id in flight", invoke + invoke, "INVOKE for invocation 5, which is in flight"),
            ("malformed JSON", frame(INVOKE, 5, b'{"function":'), "malformed INVOKE payload"),
            ("a frame cut by EOF", invoke[:8], "fd 3 closed inside a frame"),
        ]:
            with self.subTest(what):
                w = self.started("echo.handle")
                os.write(w.to_worker, data)
                w.close_input()
                self.assertEqual(w.wait(), 2)
                self.assertIn(message, w.stderr)

    HTTP_META = {"ce_httpmethod": "POST", "ce_httppath": "/items", "ce_httpquery": "q=1&q=2"}

    def head_worker(self, protocol):
        w = Worker("head.handle", env={"BUTTER_PROTOCOL": protocol})
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], int(protocol))
        return w

    def test_protocol_3_request_and_head_before_the_output(self):
        w = self.head_worker("3")
        w.invoke(1, b"x", meta=self.HTTP_META)
        self.assertEqual(json.loads(w.expect(HEAD, 1)),
                         {"status": 201, "headers": {"Location": ["/items/1"], "X-Multi": ["a", "b"]}})
        self.assertEqual(w.result(1)[0], b"POST /items 1,2")
        w.invoke(2, b"fail", meta=self.HTTP_META)  # a failed call: RESULT only
        self.assertEqual(w.result(2)[1]["error"]["type"], "Exception")
        w.invoke(3, b"x")
        w.expect(HEAD, 3)
        self.assertEqual(w.result(3)[0], b"no request")

    def test_protocol_2_no_head(self):
        w = self.head_worker("2")
        w.invoke(1, b"x", meta=self.HTTP_META)
        self.assertEqual(w.result(1)[0], b"POST /items 1,2")

    def test_state_get_and_set_travel_in_invoke_and_result(self):
        w = self.started("state.count")
        meta = {"param.device": "d1"}
        w.invoke(1, b"", meta=meta, state={"key": "d1", "value": {"n": 41}})
        out, result, _ = w.result(1)
        self.assertEqual(json.loads(out), {"key": "d1", "n": 42, "device": "d1"})
        self.assertEqual(result, {"state": {"value": {"n": 42}}})
        w.invoke(2, b"", meta=meta, state={"key": "d2", "field": "device"})  # no state yet
        out, result, _ = w.result(2)
        self.assertEqual(json.loads(out), {"key": "d2", "n": 1, "device": "d1"})
        self.assertEqual(result, {"state": {"value": {"n": 1}}})

    def test_state_delete_and_untouched(self):
        w = self.started("state.remove")
        w.invoke(1, b"", state={"key": "d1", "value": {"n": 3}})
        out, result, _ = w.result(1)
        self.assertEqual((json.loads(out), result), ({"after": None}, {"state": {"deleted": True}}))
        w = self.started("state.read")
        w.invoke(1, b"", state={"key": "d1", "value": {"n": 3}})
        out, result, _ = w.result(1)
        self.assertEqual((json.loads(out), result), ({"state": {"n": 3}, "key": "d1"}, {}))

    def test_state_failed_call_reports_no_change(self):
        w = self.started("state.fail")
        w.invoke(1, b"", state={"key": "d1"})
        _, result, _ = w.result(1)
        self.assertIn("Traceback", result["error"].pop("detail"))
        self.assertEqual(result, {"error": {"type": "Exception", "message": "failed after a set"}})

    def test_state_set_refused(self):
        w = self.started("state.try_set")
        cases = [
            ({"state": {"key": "", "field": "device"}}, b"",
             'refused: butter: state: this call has no state key (the event has no "device" field, '
             "no record key and no Butter-State-Key header)"),
            ({}, b"", "refused: butter: state: function fn has no state block"),
            ({"state": {"key": "k"}}, b"nan", "refused: butter: state: Out of range float values are not JSON compliant"),
        ]
        for fid, (meta, data, want) in enumerate(cases, 1):
            w.invoke(fid, data, **meta)
            out, result, _ = w.result(fid)
            self.assertEqual(result, {})
            self.assertTrue(out.decode().startswith(want), out)  # the NaN message varies by version
        w.invoke(9, b"", state={"key": "k"})
        self.assertEqual(w.result(9)[1], {"state": {"value": {"n": 1}}})


def batch_payload(deadline, events):
    """Encodes a BATCH payload (docs/worker-protocol.md, "Batches")."""
    out = struct.pack(">qI", deadline, len(events))
    for data, meta in events:
        out += struct.pack(">H", len(meta))
        for k, v in meta.items():
            kb, vb = k.encode(), v.encode()
            out += struct.pack(">H", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
        out += struct.pack(">I", len(data)) + data
    return out


def read_results(p):
    """Decodes a RESULTS payload: (first, [results])."""
    first, n = struct.unpack_from(">II", p, 0)
    off, out = 8, []
    for _ in range(n):
        if p[off] == 0:
            (ln,) = struct.unpack_from(">I", p, off + 1)
            out.append({"output": p[off + 5:off + 5 + ln].decode()})
            off += 5 + ln
        else:
            (tl,) = struct.unpack_from(">H", p, off + 1)
            kind = p[off + 3:off + 3 + tl].decode()
            (ml,) = struct.unpack_from(">I", p, off + 3 + tl)
            out.append({"error": {"type": kind, "message": p[off + 7 + tl:off + 7 + tl + ml].decode()}})
            off += 7 + tl + ml
    assert off == len(p), "bytes after the last result"
    return first, out


class BatchTest(unittest.TestCase):
    def test_batch_in_order_calls_carry_index_first_failure_ends_it(self):
        w = Worker("batch.handle", env={"BUTTER_PROTOCOL": "2"})
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], 2)
        events = [(b"a", {"ce_id": "i0", "param.n": "0"}), (b"log", {"ce_id": "i1"}), (b"b", {"ce_id": "i2"}),
                  (b"fail", {"ce_id": "i3"}), (b"c", {"ce_id": "i4"})]
        w.send(BATCH, 9, batch_payload(int(time.time() * 1000) + 30000, events))
        results, call = [], None
        while not results or "error" not in results[-1]:
            f = w.next()
            self.assertIsNotNone(f, w.stderr)
            ftype, fid, payload = f
            self.assertEqual(fid, 9)
            if ftype == CALL:
                call = json.loads(payload)
                w.send_json(REPLY, 9, {"seq": call["seq"], "ok": True})
                continue
            self.assertEqual(ftype, RESULTS)
            first, got = read_results(payload)
            self.assertEqual(first, len(results), "results out of order")
            results += got
        self.assertEqual(results, [
            {"output": "A i0 0"},
            {"output": "LOG i1 -"},
            {"output": "B i2 -"},
            {"error": {"type": "PreconditionFailed", "message": "refused"}},
        ])
        self.assertEqual((call["op"], call["index"]), ("log", 1))

    def test_results_frames_stay_within_the_frame_limit(self):
        w = Worker("big.handle", env={"BUTTER_PROTOCOL": "2"})
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], 2)
        # Eight 3 MiB outputs held together would make a 24 MiB frame;
        # 1000 KiB then 15.5 MiB would make 16.5 MiB.
        sizes = [3072] * 8 + [1000, 15872]
        events = [(b"%d:%c" % (kib, 97 + k), {}) for k, kib in enumerate(sizes)]
        w.send_big(BATCH, 4, batch_payload(int(time.time() * 1000) + 30000, events))
        outputs = []
        while len(outputs) < len(sizes):
            f = w.next(timeout=60)  # 40 MiB through pipes: slow on a loaded 2-core machine
            self.assertIsNotNone(f, f"EOF after {len(outputs)} results; {w.stderr}")
            ftype, fid, payload = f
            self.assertEqual((ftype, fid), (RESULTS, 4))
            self.assertLessEqual(5 + len(payload), 16 << 20, "a RESULTS frame over the limit")
            first, got = read_results(payload)
            self.assertEqual(first, len(outputs), "results out of order")
            outputs += got
        for k, r in enumerate(outputs):
            self.assertIn("output", r, f"event {k}: {r}")
            self.assertEqual(len(r["output"]), sizes[k] * 1024, f"event {k}'s output")
            self.assertEqual(r["output"][0], chr(97 + k))

    def test_batch_event_outputs_and_event(self):
        w = Worker("exact.many_ctx", env={"BUTTER_PROTOCOL": "2"})
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], 2)
        w.send(BATCH, 3, batch_payload(0, [(b"x", {"butter.position": "in/1/7"})]))
        ftype, fid, payload = w.next()
        self.assertEqual((ftype, fid, read_results(payload)), (RESULTS, 3, (0, [{"output": '{"butter.outputs":[{"text":"a"}]}'}])))

    def test_protocol_1_takes_no_batch(self):
        w = Worker("batch.handle", env={"BUTTER_PROTOCOL": "1"})
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], 1)
        w.send(BATCH, 1, batch_payload(0, [(b"a", {})]))
        self.assertEqual(w.wait(), 2)
        self.assertIn("BATCH", w.stderr)


if __name__ == "__main__":
    unittest.main()
