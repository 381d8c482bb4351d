#!/bin/sh
# The nightly report: a summary line on stdout, which the execution log keeps.
echo "nightly report at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
