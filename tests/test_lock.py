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
