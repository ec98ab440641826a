"""The local executor's contract with the main loop (real spawned worker processes)."""

from __future__ import annotations

import os
import threading
import time
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


def test_proxy_workers_only_get_idle_cpu():
    """Proxies are made with CPU nobody else wants: SCHED_IDLE (niced is not enough: the
    decoder's and encoder's threads add up and slowed a render beside them by ~25%)."""
    ex = LocalExecutor(1)
    try:
        ex.submit(SimpleNamespace(id=1), "proxy", os.sched_getscheduler, 0)
        ex.submit(SimpleNamespace(id=2), "analysis", os.sched_getscheduler, 0)
        outcomes = {}
        for _ in range(600):
            outcomes.update({o.job.id: o.result for o in ex.poll()})
            if len(outcomes) == 2:
                break
            time.sleep(0.1)
        assert outcomes == {1: os.SCHED_IDLE, 2: os.SCHED_OTHER}
    finally:
        ex.shutdown(wait=False)
