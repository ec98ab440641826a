"""Pool workers end when their parent is killed (montaged/lifeline.py), with real processes and
a real SIGKILL: a middle process (standing in for the daemon or a render worker) starts a pool,
is killed alone, and its pool worker must not live on."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from montaged.lifeline import end_with_parent
from montaged.lock import process_exists as _running  # a zombie counts as ended


def _middle(conn, with_lifeline: bool) -> None:
    init = end_with_parent if with_lifeline else None
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=init) as pool:
        conn.send(pool.submit(os.getpid).result())
        time.sleep(120)  # killed long before


def _pool_worker_of_killed_parent(with_lifeline: bool) -> int:
    """Start the middle process, learn its pool worker's pid, kill the middle one alone."""
    ctx = get_context("spawn")
    ours, theirs = ctx.Pipe()
    middle = ctx.Process(target=_middle, args=(theirs, with_lifeline))
    middle.start()
    try:
        assert ours.poll(60), "the pool worker did not start"
        worker = ours.recv()
        assert _running(worker)
    finally:
        os.kill(middle.pid, signal.SIGKILL)
        middle.join(10)
    return worker


def _wait_ended(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _running(pid)


def test_a_pool_worker_ends_when_its_parent_is_killed():
    worker = _pool_worker_of_killed_parent(with_lifeline=True)
    try:
        assert _wait_ended(worker, 10), "the orphaned worker still runs 10 s after its parent was killed"
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_without_the_lifeline_the_orphan_lives_on():
    """The control: what the lifeline prevents does happen without it (so the test above can fail)."""
    worker = _pool_worker_of_killed_parent(with_lifeline=False)
    try:
        assert not _wait_ended(worker, 1.0)
    finally:
        os.kill(worker, signal.SIGKILL)


def test_outside_multiprocessing_it_does_nothing():
    end_with_parent()  # pytest has no multiprocessing parent: no watcher thread, no exit
    assert not [t for t in threading.enumerate() if t.name == "montaged-lifeline"]
