"""Helpers for Butter functions written in Python.

A function imports this module as `butter` when it runs in Butter's worker
(butter_worker.py puts this directory on sys.path). An exception with a
string attribute `butter_type` is reported with that type; any other
exception is reported as "Exception".
"""


class ButterError(Exception):
    """An error reported to the caller with the type butter_type."""

    butter_type = "Exception"


class PreconditionFailed(ButterError):
    """The input was refused (for example, it fails validation)."""

    butter_type = "PreconditionFailed"


class PostconditionFailed(ButterError):
    """The output was refused (the function could not produce a valid answer)."""

    butter_type = "PostconditionFailed"
