"""Log records reach a real journal, fields and all.

systemd is not PID 1 where the tests run, so each test starts its own systemd-journald for a
private journal namespace (``systemd-journald NAME``, what ``systemd-journald@NAME.service``
runs): it listens on ``/run/systemd/journal.NAME/`` and writes
``/var/log/journal/<machine-id>.NAME/``, which ``journalctl --namespace=NAME`` reads. A process
logs there as montaged does under systemd: its stderr is connected to the namespace's stdout
stream (``$JOURNAL_STREAM`` names it) and its records go to the namespace's native socket.
Needs root (journald writes under /run and /var/log); CI runs as root.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from montaged.logs import journal_items, under_systemd
from tests.helpers import DaemonProcess, missing_tool, need_tool, wait_until

REPO = Path(__file__).resolve().parents[1]
JOURNALD = "/lib/systemd/systemd-journald"


@pytest.fixture
def private_journal():
    """(namespace, its native socket, journalctl) with a systemd-journald of our own."""
    journald = need_tool(JOURNALD, "systemd")
    journalctl = need_tool("journalctl", "systemd")
    if os.geteuid() != 0:
        missing_tool("a private systemd-journald needs root (it writes /run/systemd and /var/log/journal)")
    namespace = f"mtdtest{uuid.uuid4().hex[:8]}"
    machine_id = Path("/etc/machine-id").read_text().strip()
    run_dir = Path(f"/run/systemd/journal.{namespace}")
    had_var_log_journal = Path("/var/log/journal").exists()
    log_dir = Path(f"/var/log/journal/{machine_id}.{namespace}")
    proc = subprocess.Popen([journald, namespace], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (proc.poll() is None or pytest.fail(f"journald exited: {proc.stdout.read()!r}"))
                   and (run_dir / "socket").exists() and (run_dir / "stdout").exists(), 20, what="journald's sockets")
        yield namespace, str(run_dir / "socket"), journalctl
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        subprocess.run(["rm", "-rf", str(run_dir), str(log_dir)], check=True)
        if not had_var_log_journal:
            try:
                os.rmdir("/var/log/journal")
            except OSError:
                pass


def journal_stream(namespace: str, identifier: str) -> socket.socket:
    """A connection to journald's stdout stream, set up as systemd sets up a service's stderr."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(f"/run/systemd/journal.{namespace}/stdout")
    # identifier, unit, priority, level prefix, forward to syslog, kmsg, console (sd-journal's order)
    sock.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
    sock.shutdown(socket.SHUT_RD)
    return sock


def entries(journalctl: str, namespace: str, *matches: str) -> list[dict]:
    r = subprocess.run([journalctl, f"--namespace={namespace}", "-o", "json", "--no-pager", *matches],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr  # 1: no entries yet on some versions
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


SCRIPT = """
    import logging, os, sys
    from montaged.service import setup_logging
    setup = setup_logging(None, "info", journal_socket=sys.argv[1])
    print(setup.sink, flush=True)
    log = logging.getLogger("montaged.watch")
    odd = os.fsdecode(b"/srv/in/caf\\xe9 1.mp4")
    log.info("settled %s", "/srv/in/a b.mp4", extra={"path": "/srv/in/a b.mp4", "job": 7, "folder": "/srv/in"})
    log.warning("cannot read %s", odd, extra={"path": odd, "job": 8})
    try:
        raise ValueError("bad header")
    except ValueError:
        log.exception("analysis failed", extra={"job": 9, "path": "/srv/in/a b.mp4"})
"""


def run_logged(namespace: str, socket_path: str) -> subprocess.CompletedProcess:
    stream = journal_stream(namespace, "montaged")
    st = os.fstat(stream.fileno())
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    env.update(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}", PYTHONPATH=str(REPO))
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), socket_path], env=env,
                              stdout=subprocess.PIPE, stderr=stream.fileno(), text=True, timeout=60)
    finally:
        stream.close()


def test_journal_fields_reach_a_real_journal(private_journal):
    namespace, socket_path, journalctl = private_journal
    proc = run_logged(namespace, socket_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "journal"
    got = wait_until(lambda: (lambda e: e if len(e) == 3 else None)(entries(journalctl, namespace, "SYSLOG_IDENTIFIER=montaged")),
                     20, what="3 entries in the journal")
    settled, unreadable, failed = got
    assert settled["MESSAGE"] == "montaged.watch: settled /srv/in/a b.mp4 [path=\"/srv/in/a b.mp4\" job=7 folder=/srv/in]"
    assert (settled["MONTAGED_PATH"], settled["MONTAGED_JOB"], settled["MONTAGED_FOLDER"]) == ("/srv/in/a b.mp4", "7", "/srv/in")
    assert settled["PRIORITY"] == "6" and settled["LOGGER"] == "montaged.watch"
    assert settled["_TRANSPORT"] == "journal" and int(settled["_PID"]) > 1
    # journalctl shows a field that is not UTF-8 as a list of bytes: the exact name survives.
    assert unreadable["MONTAGED_PATH"] == list(b"/srv/in/caf\xe9 1.mp4") and unreadable["PRIORITY"] == "4"
    assert failed["PRIORITY"] == "3" and failed["MONTAGED_JOB"] == "9"
    message = failed["MESSAGE"].splitlines()
    assert message[0] == 'montaged.watch: analysis failed [path="/srv/in/a b.mp4" job=9]'
    assert message[-1] == "    ValueError: bad header"
    # journalctl's field matches find them, which is what `journalctl -u montaged MONTAGED_JOB=7` does.
    assert [e["MONTAGED_JOB"] for e in entries(journalctl, namespace, "MONTAGED_PATH=/srv/in/a b.mp4")] == ["7", "9"]
    # And `montaged logs` reads them back with their extras (its journal reader).
    (rec,) = [r for r in journal_items(settled) if not isinstance(r, str)]
    assert rec.extras == {"path": "/srv/in/a b.mp4", "job": "7", "folder": "/srv/in"}
    trace = journal_items(failed)
    assert trace[0].lines[0].endswith("montaged.watch: analysis failed [path=\"/srv/in/a b.mp4\" job=9]")


def test_without_the_native_socket_lines_reach_the_journal_with_their_priority(private_journal):
    namespace, _, journalctl = private_journal
    proc = run_logged(namespace, "/nonexistent/journal/socket")
    assert proc.returncode == 0 and proc.stdout.strip() == "journal-stderr"
    got = wait_until(lambda: (lambda e: e if len(e) >= 3 else None)(entries(journalctl, namespace, "SYSLOG_IDENTIFIER=montaged")),
                     20, what="the stderr lines in the journal")
    assert got[0]["_TRANSPORT"] == "stdout" and got[0]["PRIORITY"] == "6"
    assert got[0]["MESSAGE"].startswith("montaged.watch: settled /srv/in/a b.mp4")
    assert "MONTAGED_PATH" not in got[0]
    assert [e["PRIORITY"] for e in got[:3]] == ["6", "4", "3"]


class DaemonUnderJournald(DaemonProcess):
    """``montaged run`` as systemd would start it with ``LogNamespace=``: stderr is a stream
    connection to the namespace's journald, ``$JOURNAL_STREAM`` names it, and in the daemon's
    own mount namespace ``/run/systemd/journal`` is the namespace's socket folder, so the
    daemon's records go to the default socket path there."""

    def __init__(self, config, state, namespace, tmp):
        super().__init__(config, state, env={"JOURNAL_STREAM": ""})
        self.namespace = namespace
        self.tmp = tmp

    def start(self, wait: bool = True):
        unshare = need_tool("unshare", "util-linux")
        need_tool("mount", "mount")
        (self.tmp / "run-systemd" / "journal").mkdir(parents=True)
        stream = journal_stream(self.namespace, "montaged")
        st = os.fstat(stream.fileno())
        self.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        script = ('mount --bind "$1" "$2/journal" && mount --rbind "$2" /run/systemd && '
                  'exec "$3" -m montaged run --config "$4"')
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             f"/run/systemd/journal.{self.namespace}", str(self.tmp / "run-systemd"), sys.executable, str(self.config)],
            env=self.env, stdout=self.log, stderr=stream.fileno(), start_new_session=True,
        )
        stream.close()
        if wait:
            self.wait_ready()
        return self


@pytest.mark.slow
def test_the_daemons_events_reach_the_journal_with_their_fields(private_journal, layout, tracks, tmp_path):
    import shutil

    namespace, _, journalctl = private_journal
    song = layout["root"] / "hike" / "song.wav"
    song.parent.mkdir()
    with DaemonUnderJournald(layout["config"], layout["state"], namespace, tmp_path) as d:
        shutil.copy(tracks[0], song)
        wait_until(lambda: d.status()["files"]["analyzed"] == 1, 60, what="song.wav analysed")
        # What `montaged logs` goes by: the daemon recorded that its log is the journal.
        assert under_systemd(layout["state"]) is True
    got = wait_until(lambda: entries(journalctl, namespace, f"MONTAGED_PATH={song}") or None, 20,
                     what="the daemon's entries about song.wav")
    analysing = [e for e in got if e["MESSAGE"].startswith("montaged.daemon: analysing")]
    assert len(analysing) == 1, [e["MESSAGE"] for e in got]
    (job,) = d.jobs()
    assert analysing[0]["MONTAGED_JOB"] == str(job["id"])
    assert analysing[0]["_TRANSPORT"] == "journal" and analysing[0]["SYSLOG_IDENTIFIER"] == "montaged"
    assert int(analysing[0]["_PID"]) == d.proc.pid
    # journalctl finds the same entry by its job, as `journalctl -u montaged MONTAGED_JOB=N` would.
    by_job = entries(journalctl, namespace, f"MONTAGED_JOB={job['id']}")
    assert analysing[0]["__CURSOR"] in {e["__CURSOR"] for e in by_job}
    # Nothing fell back to the stream (that would be a send failure).
    assert entries(journalctl, namespace, "_TRANSPORT=stdout") == []
