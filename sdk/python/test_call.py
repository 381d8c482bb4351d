"""Tests of ctx.call in butter_worker.py, with a real worker process as
test_worker.py runs them. Run with `python3 -m unittest discover -s
sdk/python -p 'test_*.py'` from the repository root."""
import base64
import json
import unittest

from test_worker import CALL, REPLY, Worker


class CallTest(unittest.TestCase):
    def started(self, handler):
        w = Worker(handler, 1)
        self.addCleanup(w.close)
        self.assertEqual(w.hello()["protocol"], 1)
        return w

    def test_call_answered(self):
        w = self.started("call.handle")
        w.invoke(4, b"in")
        msg = json.loads(w.expect(CALL, 4))
        self.assertEqual(msg, {"seq": msg["seq"], "op": "call", "target": "scorer", "key": "k1",
                               "timeout_ms": 250, "value": base64.b64encode(b"in").decode()})
        w.send_json(REPLY, 4, {"seq": msg["seq"], "ok": True, "value": base64.b64encode(b"42").decode()})
        self.assertEqual(w.result(4)[:2], (b"reply 42", {}))

    def test_call_error_typed(self):
        w = self.started("call.handle")
        w.invoke(5, b"in")
        msg = json.loads(w.expect(CALL, 5))
        w.send_json(REPLY, 5, {"seq": msg["seq"], "ok": False, "error_type": "Timeout", "error": "no reply"})
        self.assertEqual(w.result(5)[:2], (b"CallError Timeout no reply butter_type=None", {}))
        w.invoke(6, b"in")
        msg = json.loads(w.expect(CALL, 6))
        w.send_json(REPLY, 6, {"seq": msg["seq"], "ok": False, "error": 'unknown call target "scorer"'})
        self.assertEqual(w.result(6)[:2], (b'CallError None unknown call target "scorer" butter_type=None', {}))

    def test_call_error_uncaught_is_an_exception(self):
        w = self.started("call.uncaught")
        w.invoke(7, b"in")
        msg = json.loads(w.expect(CALL, 7))
        self.assertNotIn("timeout_ms", msg)
        w.send_json(REPLY, 7, {"seq": msg["seq"], "ok": False, "error_type": "PreconditionFailed", "error": "no"})
        result = w.result(7)[1]
        self.assertEqual((result["error"]["type"], result["error"]["message"]),
                         ("Exception", "call scorer: PreconditionFailed: no"))


if __name__ == "__main__":
    unittest.main()
