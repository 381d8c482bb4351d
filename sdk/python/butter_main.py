"""The Butter Python worker's entry point: the pool runs `python3 -u
butter_main.py`. It imports butter_worker rather than running it as a
script, so that Python loads the worker's compiled bytecode from
__pycache__ (written at the first import) instead of compiling its source
at every start, as it does for a script: about 15 ms of each instance's
start."""

import butter_worker

butter_worker.main()
