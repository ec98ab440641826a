"""Worker processes end when the process that started them dies.

A daemon killed on its own (the OOM killer, ``kill -9`` of its pid) leaves its pool workers
re-parented to init. Without this they live on forever: idle on a job pipe nobody writes, or
stuck mid-job on a progress pipe nobody reads (its buffer full), holding a render's work folder
in the output, or finishing a render that could replace the newer preview of the daemon started
after it. systemd kills the whole control group in that case; this makes a daemon started in a
terminal, and ``montaged render``'s own segment processes, behave the same.

The end is SIGKILL, on purpose: a clean exit could block on the same dead pipes. What a killed
worker leaves is what kill -9 of the whole group leaves, and the next run cleans it (a render's
work folder of a dead pid; a half-written array's temporary file).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait


def end_with_parent() -> None:
    """Start a thread that kills this process as soon as the process that spawned it exits.

    For a ``multiprocessing`` child (a pool worker's initializer); elsewhere it does nothing.
    It costs nothing while the parent lives: the thread sleeps on the parent's sentinel, a pipe
    that becomes readable when the parent is gone, even if it died before this call.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    threading.Thread(target=_watch, args=(parent.sentinel,), name="montaged-lifeline", daemon=True).start()


def _watch(sentinel) -> None:
    wait([sentinel])
    os.kill(os.getpid(), signal.SIGKILL)
