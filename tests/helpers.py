"""Shared helpers for tests that run the real daemon as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from montaged.status import job_list, status_document

# .ci/run sets this: there, a test that would be skipped for a missing system tool fails
# instead, so CI runs every test while a fresh machine with only Python can still `make test`.
REQUIRE_TOOLS_ENV = "MONTAGED_REQUIRE_TOOLS"


def tools_required() -> bool:
    return os.environ.get(REQUIRE_TOOLS_ENV, "") not in ("", "0")


def missing_tool(reason: str) -> None:
    """Skip the test for ``reason`` (which names the tool), or fail under MONTAGED_REQUIRE_TOOLS=1."""
    if tools_required():
        pytest.fail(f"{reason}; {REQUIRE_TOOLS_ENV}=1 (set by .ci/run) makes this a failure", pytrace=False)
    pytest.skip(reason)


def need_tool(tool: str, package: str | None = None) -> str:
    """The path of the system tool ``tool`` (a name on $PATH or an absolute path).

    Missing: the test is skipped with a reason naming the tool and its Debian package, or fails
    when :func:`tools_required` (CI installs every tool the tests use).
    """
    path = shutil.which(tool)
    if path is None:
        missing_tool(f"{tool} is not installed (apt-get install {package or tool})")
    return path


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def write_config(path: Path, *, watch: list[Path], output: Path, state: Path, extra: str = "") -> Path:
    text = f"""
[paths]
watch = {json.dumps([str(w) for w in watch])}
output = {json.dumps(str(output))}
state = {json.dumps(str(state))}

[watch]
settle_seconds = 0.5
poll_interval = 0.5

[workers]
processes = 2
retry_backoff = 0.2
job_timeout = 120

[preview]
debounce_seconds = 0.5

[daemon]
allow_root = true
stop_timeout = 20
forget_after = 2
{extra}
"""
    path.write_text(text)
    return path


def merge_toml(base: str, extra: str) -> str:
    return base + "\n" + extra


class DaemonProcess:
    """``montaged run`` in a real subprocess, with the test-only fault hooks enabled."""

    def __init__(self, config: Path, state: Path, env: dict | None = None):
        self.config = config
        self.state = state
        # PYTHONFAULTHANDLER: a daemon that does not stop in time is sent SIGABRT first, so its
        # threads' stacks land in the log for the failing test to show.
        self.env = {**os.environ, "MONTAGED_TEST_HOOKS": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.env.pop("NOTIFY_SOCKET", None) if "NOTIFY_SOCKET" not in (env or {}) else None
        self.proc: subprocess.Popen | None = None
        self.log_path = state.parent / f"daemon-{state.name}.stderr"

    def start(self, wait: bool = True) -> "DaemonProcess":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "montaged", "run", "--config", str(self.config)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            doc = self.status()
            roots = doc["daemon"]["roots"]
            return doc["daemon"]["running"] and roots and all(r["observer"] or not r["online"] for r in roots)

        wait_until(ready, timeout, what="daemon ready")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def status(self) -> dict:
        return status_document(self.state)

    def jobs(self, state: str | None = None) -> list[dict]:
        if not (self.state / "montaged.db").exists():
            return []
        return job_list(self.state, state)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            time.sleep(1.0)
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.output()}") from None
        finally:
            self._kill_group()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the daemon to exit on its own; on timeout dump its stacks (SIGABRT) and fail."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            time.sleep(1.0)
            raise AssertionError(f"daemon did not exit within {timeout}s:\n{self.output()}") from None

    def kill9(self) -> None:
        """kill -9 the daemon *and* its workers, as a power cut or the OOM killer would."""
        self._kill_group()
        self.proc.wait(10)

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if hasattr(self, "log"):
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def cli(*args: str, config: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "montaged", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
