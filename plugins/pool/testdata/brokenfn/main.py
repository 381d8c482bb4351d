"""Cannot load: it imports a module that is not installed."""

import butter_no_such_module  # noqa: F401


def handle(data, ctx):
    return data
