"""Process liveness, as the removal of crashed writers' leftovers relies on it."""

from __future__ import annotations

import os
import subprocess
import sys

from montaged.lock import process_exists


def test_process_exists_tells_live_from_gone():
    assert process_exists(os.getpid())
    assert process_exists(1)  # another user's process (init) counts as running
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is free
    assert not process_exists(child.pid)


def test_a_zombie_is_not_running():
    """A killed worker nobody has reaped yet (a lazy init in a container) writes nothing more:
    its leftovers may go. kill(pid, 0) alone would call it running."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, deliberately not reaped
        os.kill(child.pid, 0)  # the pid still answers
        assert not process_exists(child.pid)
    finally:
        child.wait()
