"""A streaming echo (butter.stream): copies its input to its output as it
comes, and logs the worker's peak RSS when done. "fail" in the first
chunk fails after some output."""
import resource
import time

import butter


@butter.stream
def handle(input, output, ctx):
    ctx.response.set_header("X-Streamed", "python")
    # A context call while the input backs up past the worker's limit: its
    # REPLY must get through the held-back reader.
    time.sleep(0.3)
    ctx.log("info", "python stream start")
    first = True
    for chunk in input:
        if first and chunk[:4] == b"fail":
            output.write(b"partial")
            raise butter.PreconditionFailed("python stream refuses fail")
        first = False
        output.write(chunk)
    ctx.log("info", f"python stream maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
