"""One daemon per state directory: a POSIX lock on ``state/montaged.lock``.

Kept apart from the daemon so that ``montaged status`` can test the lock without importing the
daemon's machinery (watchdog, the executors): its start-up time is the command's latency.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from montaged.errors import StoreError

LOCK_NAME = "montaged.lock"


class StateLock:
    """A POSIX lock on ``state/montaged.lock``: one daemon per state directory. ``status`` tests
    the lock (without taking it) to know whether the daemon runs; a stale pid file can't lie."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        deadline = time.monotonic() + 2.0  # `status` may hold a shared test lock for an instant
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    other = _read_pid(self.path)
                    os.close(fd)
                    raise StoreError(
                        f"another montaged{f' (pid {other})' if other else ''} is already running with the state directory {self.path.parent}"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None



def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def process_exists(pid: int) -> bool:
    """Is a process with this pid running? (It may be another user's: that counts as running,
    and so does a reused pid: callers only use this to leave the files of live writers alone.)

    A zombie does not count: a killed daemon's workers are re-parented to init, and until init
    reaps them (not at once everywhere: containers often run a lazy PID 1) their pids answer
    ``kill(pid, 0)`` although they write nothing any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # the name may contain ")"
    except (OSError, IndexError):
        return True  # no /proc: trust kill()


def daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding the state lock, or None when no daemon runs."""
    path = Path(state_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return _read_pid(path) or -1
            raise
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
