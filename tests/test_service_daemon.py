"""The daemon under a (fake) systemd: the notify protocol through a socket the test opens, and
`status` / `logs` against a live daemon subprocess."""

import json
import os
import shutil
import signal
import socket
import time

import pytest

from tests.helpers import DaemonProcess, cli, wait_until

pytestmark = pytest.mark.slow


class NotifySocket:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def wait_for(self, prefix: str, timeout: float = 30) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, msg in self.messages:
                if msg.startswith(prefix):
                    return at
            self.pump(0.2)
        raise AssertionError(f"no {prefix} in {self.messages[-10:]}")

    def count(self, prefix: str, since: float = 0.0) -> int:
        return sum(1 for at, m in self.messages if m.startswith(prefix) and at >= since)


def test_notify_protocol_through_a_live_daemon(layout, tracks, tmp_path):
    for i in range(3):
        shutil.copy(tracks[i], layout["root"] / f"before{i}.wav")
    notify = NotifySocket(tmp_path / "notify.sock")
    d = DaemonProcess(layout["config"], layout["state"], env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"})
    d.start(wait=False)
    try:
        notify.wait_for("READY=1", 60)
        # READY only after the reconcile scan: the scan's log line is already written.
        assert "scanned" in d.output() and "3 media files" in d.output()
        notify.pump(3.0)
        start = time.monotonic() - 3.0
        pings = notify.count("WATCHDOG=1", since=start)
        assert 3 <= pings <= 10, pings  # every 0.5 s (half of WATCHDOG_USEC); loose for loaded CI
        wait_until(lambda: (notify.pump(0.3), any("3 analysed" in m for _, m in notify.messages if m.startswith("STATUS=")))[1], 60, what="STATUS with 3 analysed")
        # A hung main loop stops the pings (so systemd restarts the service).
        marker = layout["state"] / "hang-main-loop"
        marker.touch()
        notify.pump(0.6)
        hung = time.monotonic()
        notify.pump(2.0)
        assert notify.count("WATCHDOG=1", since=hung) == 0
        marker.unlink()
        notify.pump(1.5)
        assert notify.count("WATCHDOG=1", since=hung + 2.0) >= 1
        # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
        before = time.monotonic()
        d.signal(signal.SIGHUP)
        notify.pump(2.0)
        reload_msgs = [m for at, m in notify.messages if at >= before]
        assert "RELOADING=1" in reload_msgs and any(m.startswith("MONOTONIC_USEC=") for m in reload_msgs)
        assert reload_msgs.index("RELOADING=1") < len(reload_msgs) - 1 and "READY=1" in reload_msgs[reload_msgs.index("RELOADING=1"):]
        # SIGTERM: STOPPING=1 and exit 0.
        d.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", 20)
        assert d.wait_exit(30) == 0
    finally:
        d.stop()


def test_status_and_logs_against_a_live_daemon(daemon, layout, tracks):
    (layout["root"] / "hike").mkdir()
    shutil.copy(tracks[0], layout["root"] / "hike" / "song.wav")
    shutil.copy(tracks[1], layout["root"] / "other.wav")
    wait_until(lambda: daemon.status()["files"]["analyzed"] == 2, 60, what="2 analysed")

    r = cli("status", config=layout["config"])
    assert r.returncode == 0, r.stderr
    assert "running" in r.stdout and str(os.getpid()) not in r.stdout.split("pid")[0]
    r = cli("status", "--json", config=layout["config"])
    doc = json.loads(r.stdout)
    assert doc["daemon"]["running"] and doc["daemon"]["pid"] == daemon.proc.pid
    assert doc["files"]["analyzed"] == 2 and doc["daemon"]["roots"][0]["observer"] == "inotify"
    assert set(doc) >= {"daemon", "files", "folders", "running", "problems"}

    r = cli("jobs", "--json", config=layout["config"])
    jobs = json.loads(r.stdout)
    assert [j["state"] for j in jobs] == ["done", "done"]
    assert set(jobs[0]) >= {"id", "kind", "state", "path", "digest", "attempts", "error", "created", "started", "finished"}

    r = cli("logs", "--path", str(layout["root"] / "hike"), "-n", "all", config=layout["config"])
    assert r.returncode == 0, r.stderr
    assert "song.wav" in r.stdout and "other.wav" not in r.stdout
    r = cli("logs", "--level", "error", config=layout["config"])
    assert r.returncode == 0 and "song.wav" not in r.stdout
    r = cli("logs", "--since", "not a time", config=layout["config"])
    assert r.returncode == 2

    r = cli("inspect", str(layout["root"] / "hike" / "song.wav"), "--json", config=layout["config"])
    info = json.loads(r.stdout)
    assert info["state"] == "analyzed" and info["features"]["kind"] == "audio" and info["jobs"][0]["state"] == "done"

    daemon.stop()
    r = cli("status", config=layout["config"])
    assert r.returncode == 3
    assert "not running" in r.stdout
    r = cli("status", "--json", config=layout["config"])
    assert r.returncode == 3 and json.loads(r.stdout)["files"]["analyzed"] == 2


def test_status_before_the_first_start(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[paths]\nwatch = ["{tmp_path}/in"]\noutput = "{tmp_path}/out"\nstate = "{tmp_path}/state"\n')
    r = cli("status", "--json", config=cfg)
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["daemon"]["running"] is False
    # No database yet: the configured root is named, not watched.
    assert doc["daemon"]["roots"] == [{"path": f"{tmp_path}/in", "observer": None, "online": False, "error": None}]
    r = cli("status", config=cfg, env={"COLUMNS": "500"})  # wide enough not to shorten the path
    assert r.returncode == 3
    assert "no watch roots configured" not in r.stdout
    (line,) = [ln for ln in r.stdout.splitlines() if "watching" in ln]
    assert f"{tmp_path}/in" in line and "not watched" in line


def test_refuses_to_run_as_root_without_allow_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[paths]\nwatch = ["{tmp_path}"]\noutput = "/tmp/x-out"\nstate = "{tmp_path}/state"\n'.replace(f'watch = ["{tmp_path}"]', f'watch = ["{tmp_path}/in"]'))
    r = cli("run", config=cfg, timeout=60)
    assert r.returncode == 2
    assert "refusing to run as root" in r.stderr
