"""The first code a `prepare` worker process runs: it is given the parent-death signal.

Run by path (`runpy.run_path`), not imported, while the new process unpickles its name (see
workers.py): importing it would import the `mimicbrush_cli.data` package, NumPy and OpenCV first,
a second or more during which a worker whose parent is killed would live on. Globals given:
`name` (the process name) and `parent_pid`.
"""

import os
import signal
import sys

# Ctrl-C, which reaches every process of the terminal, is for the parent: it stops its workers itself.
signal.signal(signal.SIGINT, signal.SIG_IGN)
if sys.platform == "linux":
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG: SIGTERM the moment the parent dies
if os.getppid() != parent_pid:  # noqa: F821 - the parent died before that: no signal will come
    os.kill(os.getpid(), signal.SIGTERM)
