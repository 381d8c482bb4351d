"""Tests of _butter_json against json, and of what the worker imports."""

import json
import math
import os
import subprocess
import sys
import unittest

import _butter_json

HERE = os.path.dirname(os.path.abspath(__file__))

VALUES = [
    None,
    True,
    0,
    -17,
    2**70,
    2.5,
    1e-300,
    "",
    "plain",
    "quote \" backslash \\ slash / tab \t newline \n nul \x00",
    "é ü 中文 \U0001f600",
    [],
    {},
    [1, [2, [3, {"a": None}]]],
    {"b": 1, "a": [True, False, None], "nested": {"x": "y", "n": -0.0}},
    {"butter.outputs": [{"text": "t", "key": "k"}, {"base64": "AAE="}]},
]


class JSONTest(unittest.TestCase):
    def test_accelerated(self):
        # On CPython the probe passes: the fast path is what runs.
        self.assertTrue(_butter_json._fast)

    def test_dumps_as_json(self):
        for v in VALUES:
            for kw in ({}, {"separators": (",", ":")}, {"allow_nan": False}, {"default": str}):
                with self.subTest(v=v, kw=kw):
                    self.assertEqual(_butter_json.dumps(v, **kw), json.dumps(v, **kw))

    def test_loads_as_json(self):
        for v in VALUES:
            for text in (json.dumps(v), json.dumps(v, separators=(",", ":")), " \n\t" + json.dumps(v) + " \r\n"):
                with self.subTest(text=text):
                    self.assertEqual(_butter_json.loads(text), json.loads(text))
                    self.assertEqual(_butter_json.loads(text.encode("utf-8")), json.loads(text))

    def test_constants(self):
        got = _butter_json.loads("[NaN, Infinity, -Infinity]")
        self.assertTrue(math.isnan(got[0]))
        self.assertEqual(got[1:], [math.inf, -math.inf])
        self.assertEqual(_butter_json.dumps([math.inf]), "[Infinity]")
        with self.assertRaises(ValueError):
            _butter_json.dumps(math.nan, allow_nan=False)

    def test_errors_as_json(self):
        for text in ("", "   ", "{", '{"a": }', "[1, 2] x", '"unterminated', "\ufeff{}", '"ctl \x01"', "tru"):
            with self.subTest(text=text):
                with self.assertRaises(json.JSONDecodeError) as want:
                    json.loads(text)
                with self.assertRaises(json.JSONDecodeError) as got:
                    _butter_json.loads(text)
                self.assertEqual((got.exception.msg, got.exception.pos), (want.exception.msg, want.exception.pos))

    def test_not_serializable(self):
        with self.assertRaises(TypeError) as want:
            json.dumps({"x": object()})
        with self.assertRaises(TypeError) as got:
            _butter_json.dumps({"x": object()})
        self.assertEqual(str(got.exception), str(want.exception))

    def test_worker_imports(self):
        # What the worker's start imports: not json, base64 or re (and so
        # not enum), nor importlib.util; a handler that needs them imports
        # them itself.
        code = (
            "import sys; sys.path.insert(0, %r); import butter_worker; "
            "print(','.join(m for m in ('json', 'base64', 're', 'enum', 'importlib.util') if m in sys.modules))"
        ) % HERE
        out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), "", "the worker imported these at its start")


if __name__ == "__main__":
    unittest.main()
