"""JSON for Butter's Python worker, without the json package's import cost.

json's pure-Python modules import re, which imports enum: about 10 ms of
every instance's start, more than the rest of the worker's imports
together. This module drives the same C accelerator (_json) that json
itself runs on, so what it encodes and decodes is what json.dumps and
json.loads give for the options it takes. It checks the accelerator once,
when imported, on a probe; where _json is missing or does not answer as
expected (another interpreter, another version of it), it uses json.

A handler that imports json or re pays for them itself; the worker no
longer does on its behalf.
"""

try:
    import _json
except ImportError:  # pragma: no cover - CPython has it
    _json = None

_WHITESPACE = " \t\n\r"  # json's WHITESPACE: [ \t\n\r]*


def _constant(name):
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


class _Context:
    """The attributes _json's scanner reads: json.JSONDecoder's defaults."""

    def __init__(self):
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = _constant


def _not_serializable(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder(item_separator, key_separator, allow_nan, default):
    """_json's encoder with json.dumps's settings but those given."""
    return _json.make_encoder(
        {},  # markers: circular references are checked, as json's default
        default or _not_serializable,
        _json.encode_basestring_ascii,
        None,  # indent
        key_separator,
        item_separator,
        False,  # sort_keys
        False,  # skipkeys
        allow_nan,
    )


def _accelerated():
    """The scanner of _json, and whether _json answers a probe as json
    does with the options this module takes."""
    if _json is None:
        return None, False
    try:
        scan = _json.make_scanner(_Context())
        probe = {"a": [1, 2.5, "x\u00e9\n", None, True, False], "b": {}}
        enc = _encoder(", ", ": ", True, None)
        text = "".join(enc(probe, 0))
        ok = text == '{"a": [1, 2.5, "x\\u00e9\\n", null, true, false], "b": {}}' and scan(text, 0) == (probe, len(text))
        return scan, ok
    except Exception:  # noqa: BLE001 - any surprise means: use json
        return None, False


_scan, _fast = _accelerated()


def _error(msg, s, pos):
    from json import JSONDecodeError  # on the failure path only

    return JSONDecodeError(msg, s, pos)


def loads(s):
    """json.loads(s) for a str, or bytes in UTF-8 (the worker protocol's)."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    if not _fast:
        import json

        return json.loads(s)
    if s.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    idx = len(s) - len(s.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(s, idx)
    except StopIteration as err:
        raise _error("Expecting value", s, err.value) from None
    if end != len(s):
        end = len(s) - len(s[end:].lstrip(_WHITESPACE))
        if end != len(s):
            raise _error("Extra data", s, end)
    return obj


def dumps(obj, *, separators=None, allow_nan=True, default=None):
    """json.dumps(obj) with these options, and ensure_ascii as json's."""
    if not _fast:
        import json

        return json.dumps(obj, separators=separators, allow_nan=allow_nan, default=default)
    if isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    item_separator, key_separator = separators or (", ", ": ")
    return "".join(_encoder(item_separator, key_separator, allow_nan, default)(obj, 0))
