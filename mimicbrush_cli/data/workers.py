"""Worker processes for `prepare` that never outlive it.

`ProcessPoolExecutor` alone lets workers run on when their parent is killed (they keep taking
queued chunks and writing shards), and on an exception its exit waits for running chunks to finish.
Here a worker gets SIGTERM as soon as its parent dies, however it died (`kill -9` too), and the parent
stops its workers itself when it is interrupted, terminated or fails. SIGTERM unwinds a worker like
an exception, so it deletes the temporary file it was writing before it exits. The signal's handler
runs only between two Python instructions, so a worker busy in native code (decoding, SSIM) could
still reach its commit after its parent died: `stop_if_orphaned`, called just before a commit, ends
the worker there instead.

The death signal is set first thing in the worker, before it imports anything: a spawned process
re-imports the parent's main module (for the CLI, the whole command line app) and then this package
with NumPy and OpenCV before the pool's initializer runs, a second or more (far more on a loaded
machine) during which a worker whose parent was killed would live on. The first thing a spawned
process reads from its parent is its own name; a worker's name (`_WorkerName`) unpickles by running
worker_start.py, which sets the signal, by path.

Within a worker, `read_ahead` decodes the next input in a thread while the current one is scored
and written: FFmpeg, OpenCV and Pillow release the GIL while they work.
"""

from __future__ import annotations

import multiprocessing
import operator
import os
import runpy
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

WORKER_START = Path(__file__).with_name("worker_start.py")


def run_in_workers(function: Callable[..., Any], calls: list[tuple], workers: int) -> Iterator[Any]:
    """`function(*call)` for every call in `workers` processes; yields the results as they complete."""
    others = set(multiprocessing.active_children())
    # spawn: PyAV and OpenCV start threads, and forking a threaded process is unsafe.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_WorkerContext(), initializer=_start_worker,
                               initargs=(os.getpid(),))
    try:
        futures = [pool.submit(_call_in_worker, function, *call) for call in calls]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in set(multiprocessing.active_children()) - others:
            process.terminate()
        raise
    finally:
        pool.shutdown()


def read_ahead(function: Callable[[Any], Any], items: Iterable[Any], ahead: int = 1) -> Iterator[Future]:
    """Futures of `function(item)` for the items in order, computed in one background thread that runs
    `ahead` items ahead of the caller. Stopping early cancels what has not started and does not wait for
    what has."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _WorkerName(str):
    """A worker process's name, which sets the worker's parent-death signal as it is unpickled there: spawn sends a
    new process its name before anything else, ahead of re-importing the main module and of the process object."""

    parent_pid: int

    def __new__(cls, name: str, parent_pid: int) -> _WorkerName:
        self = super().__new__(cls, name)
        self.parent_pid = parent_pid
        return self

    def __reduce__(self):
        # Unpickled: run_path(WORKER_START, {"name": ..., "parent_pid": ...})["name"], a plain str.
        return operator.getitem, (_RunWorkerStart(str(self), self.parent_pid), "name")


class _RunWorkerStart:
    def __init__(self, name: str, parent_pid: int) -> None:
        self.init_globals = {"name": name, "parent_pid": parent_pid}

    def __reduce__(self):
        return runpy.run_path, (str(WORKER_START), self.init_globals)


class _WorkerProcess(SpawnProcess):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = _WorkerName(self.name, os.getpid())


class _WorkerContext(SpawnContext):
    Process = _WorkerProcess


_parent_pid: int | None = None  # in a worker process: the pid of the process that started it


def _raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def stop_if_orphaned() -> None:
    """In a worker whose parent has died: unwind now (as SIGTERM would), before anything is committed.
    Elsewhere, and in a worker whose parent lives, nothing."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        _raise_system_exit(signal.SIGTERM, None)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within: SIGTERM unwinds like Ctrl-C (temporary files removed, workers stopped) instead of ending
    the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_worker(parent_pid: int) -> None:
    """The pool's initializer. SIGTERM when the parent dies: at once on Linux (PR_SET_PDEATHSIG, which
    worker_start.py set), else within half a second from a thread that watches the parent's pid (which also covers
    a parent that died before this ran). Ctrl-C, which reaches every process of the terminal, is left to the
    parent, which stops the workers."""
    global _parent_pid
    _parent_pid = parent_pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch_parent() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="watch-parent", daemon=True).start()
    # Last: until here SIGTERM ends the worker at once, which is right while it has written nothing.
    signal.signal(signal.SIGTERM, _raise_system_exit)


def _call_in_worker(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except SystemExit as stop:
        # The executor would send the exit back as a result and go on with the next call.
        os._exit(stop.code if isinstance(stop.code, int) else 1)
