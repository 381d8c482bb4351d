"""A streaming echo (butter.stream): copies its input to its output as it
comes, and logs the worker's peak RSS when done. "fail" in the first
chunk fails after some output."""
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
    # VmHWM, the peak RSS of this process image: getrusage's maxrss would
    # count the pool's RSS at the fork, which an exec does not reset.
    with open("/proc/self/status") as f:
        hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    ctx.log("info", f"python stream maxrss_kib={hwm}")
