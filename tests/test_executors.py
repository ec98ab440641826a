"""The local executor's contract with the main loop (real spawned worker processes)."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

from montaged.executors import LocalExecutor


def test_a_finished_job_wakes_the_caller_at_once():
    """on_done is called from the pool's own thread when a job ends, so the daemon's main loop
    can hand a free worker its next job without waiting for its next tick."""
    ex = LocalExecutor(1)
    woken = threading.Event()
    ex.on_done = woken.set
    try:
        ex.submit(SimpleNamespace(id=7), "analysis", os.getpid)
        assert woken.wait(60), "on_done was not called when the job ended"
        [outcome] = ex.poll()  # the outcome itself is still collected by poll() (main thread)
        assert outcome.ok and outcome.job.id == 7 and outcome.result != os.getpid()
    finally:
        ex.shutdown(wait=False)
