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


def _chatter() -> None:
    """A job that does nothing but tell the daemon how far it is, as fast as it can, until it
    is killed: a kill is then likely to land in the middle of a message."""
    from montaged import executors

    while True:
        executors.report_progress(0.5)


def _outcomes(ex: LocalExecutor, ids: set[int], timeout: float = 60.0) -> dict:
    found: dict = {}
    deadline = time.monotonic() + timeout
    while not ids <= set(found) and time.monotonic() < deadline:
        found.update({o.job.id: o for o in ex.poll()})
        time.sleep(0.02)
    assert ids <= set(found), f"no outcome within {timeout}s for jobs {ids - set(found)}"
    return found


def test_workers_killed_mid_message_do_not_silence_the_next_ones():
    """Workers are killed while telling the daemon their progress: one by a timeout (SIGKILL),
    its neighbour by the pool it broke (SIGTERM). The next workers must still be heard. (With a
    multiprocessing queue, a lock held by a killed worker blocked every later worker on its
    first message, before its job's timeout even started: analysis stopped for good.)"""
    ex = LocalExecutor(2)
    try:
        for r in range(5):
            a, b = SimpleNamespace(id=10 * r + 1), SimpleNamespace(id=10 * r + 2)
            ex.submit(a, "analysis", _chatter)
            ex.submit(b, "analysis", _chatter)
            heard: set[int] = set()
            deadline = time.monotonic() + 60
            while heard != {a.id, b.id} and time.monotonic() < deadline:
                heard |= set(ex.drain_progress())
                time.sleep(0.01)
            assert heard == {a.id, b.id}, f"round {r}: only heard from {heard}"
            ex.kill(a.id, "timed out (test)")
            out = _outcomes(ex, {a.id, b.id})
            assert out[a.id].error == "timed out (test)" and out[a.id].charged
            assert not out[b.id].charged, out[b.id]  # b only shared the pool
        ex.submit(SimpleNamespace(id=99), "analysis", os.getpid)
        assert _outcomes(ex, {99})[99].ok
    finally:
        ex.shutdown(wait=False)


def _loaded_within(module: str, seconds: float) -> bool:
    import sys

    deadline = time.monotonic() + seconds
    while module not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.01)
    return module in sys.modules


def test_analysis_workers_load_the_music_analysis_before_any_music_job():
    """The first music file after a start must not pay for scipy's import (~0.45 s) on its
    way to a preview: analysis workers load the analysis modules as they start. The proxy
    worker, which never analyses, does not."""
    ex = LocalExecutor(1)
    try:
        ex.submit(SimpleNamespace(id=1), "analysis", _loaded_within, "montaged.analysis.audio", 30.0)
        ex.submit(SimpleNamespace(id=2), "proxy", _loaded_within, "montaged.analysis.audio", 1.0)
        found = _outcomes(ex, {1, 2})
        assert found[1].ok and found[1].result is True
        assert found[2].ok and found[2].result is False
    finally:
        ex.shutdown(wait=False)
