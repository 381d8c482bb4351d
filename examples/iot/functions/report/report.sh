#!/bin/sh
# The nightly report: a summary line on stdout, the function's output, which
# the pool produces to the project's reports stream (output = stream.reports).
echo "nightly report at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
