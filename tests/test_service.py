"""sd_notify and journal-aware logging, against real sockets and real subprocesses."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from montaged.service import (
    LineFormatter,
    Notifier,
    PriorityPrefixFormatter,
    journal_fields,
    parse_level,
    stderr_is_journal,
    syslog_priority,
)
from montaged.errors import MontagedError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["filesystem", "abstract"])
def notify_socket(request):
    """A datagram socket like systemd's notify socket; yields (NOTIFY_SOCKET value, socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tmpdir = None
    if request.param == "filesystem":
        # sun_path holds 108 bytes: pytest's tmp_path can be longer than that.
        tmpdir = tempfile.mkdtemp(prefix="mtd-")
        address = os.path.join(tmpdir, "notify")
        sock.bind(address)
        value = address
    else:
        name = f"montaged-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        value = "@" + name
    sock.settimeout(10)
    yield value, sock
    sock.close()
    if tmpdir:
        shutil.rmtree(tmpdir)


def run_python(code: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=60, **kwargs)


def receive_all(sock: socket.socket, quiet: float = 0.3) -> list[bytes]:
    """Every datagram already queued (the sender has exited, so nothing more is coming)."""
    got = []
    sock.settimeout(quiet)
    try:
        while True:
            got.append(sock.recv(4096))
    except TimeoutError:
        pass
    return got


def test_lifecycle_messages_reach_the_socket(notify_socket):
    address, sock = notify_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    proc = run_python("""
        from montaged.service import Notifier
        n = Notifier()
        assert n.enabled
        n.ready("scan done")
        n.status("scan done")        # unchanged: not sent again
        n.status("3 queued")
        n.status("3 queued")         # unchanged
        n.reloading()
        n.ready()
        n.stopping()
    """, {"NOTIFY_SOCKET": address})
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert proc.returncode == 0, proc.stderr
    got = receive_all(sock)
    assert got[:2] == [b"READY=1\nSTATUS=scan done", b"STATUS=3 queued"]
    reloading = got[2].split(b"\n")
    assert reloading[0] == b"RELOADING=1"
    key, _, value = reloading[1].partition(b"=")
    assert key == b"MONOTONIC_USEC"
    # The same CLOCK_MONOTONIC that systemd reads, taken while the child ran.
    assert before <= int(value) <= after
    assert got[3:] == [b"READY=1", b"STOPPING=1"]


def test_watchdog_pings_at_half_the_watchdog_interval(notify_socket):
    address, sock = notify_socket
    # WATCHDOG_USEC=2 s -> ping every 1 s. A simulated clock in tenths of a second over 10 s
    # must produce exactly the pings at 0, 1, ..., 9 s.
    proc = run_python("""
        import os
        from montaged.service import Notifier
        n = Notifier()
        print(n.watchdog_interval)
        for tenth in range(100):
            now = tenth / 10
            if n.watchdog_due(now):
                print(now)
                n.watchdog(now)
    """, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert float(lines[0]) == 1.0
    assert [float(x) for x in lines[1:]] == [float(i) for i in range(10)]
    assert receive_all(sock) == [b"WATCHDOG=1"] * 10


def test_watchdog_belongs_to_the_pid_systemd_named(notify_socket):
    address, sock = notify_socket
    code = """
        import os
        from montaged.service import Notifier
        os.environ["WATCHDOG_PID"] = os.environ["WATCHDOG_PID"].replace("SELF", str(os.getpid()))
        n = Notifier()
        print(n.watchdog_interval, n.watchdog_due(0.0))
        n.watchdog()
        n.ready()
    """
    # Another pid (a worker that inherited the environment): no watchdog, but READY still goes.
    proc = run_python(code, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "False"]
    assert receive_all(sock) == [b"READY=1"]
    # Our own pid: pings.
    proc = run_python(code, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "SELF"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0.5", "True"]
    assert receive_all(sock) == [b"WATCHDOG=1", b"READY=1"]


def test_unset_environment_hides_the_socket_from_children(notify_socket):
    address, sock = notify_socket
    proc = run_python("""
        import os, subprocess, sys
        from montaged.service import Notifier
        n = Notifier(unset_environment=True)
        child = subprocess.run([sys.executable, "-c",
                                "import os; print(os.environ.get('NOTIFY_SOCKET'), os.environ.get('WATCHDOG_USEC'))"],
                               capture_output=True, text=True)
        print(child.stdout.strip())
        n.ready()
        n.watchdog()
    """, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["None None"]
    assert receive_all(sock) == [b"READY=1", b"WATCHDOG=1"]


def test_status_text_cannot_inject_assignments(notify_socket):
    address, sock = notify_socket
    proc = run_python("""
        from montaged.service import Notifier
        Notifier().status("clip\\nREADY=1.mp4 queued")
    """, {"NOTIFY_SOCKET": address})
    assert proc.returncode == 0, proc.stderr
    assert receive_all(sock) == [b"STATUS=clip READY=1.mp4 queued"]


def test_without_notify_socket_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval is None and not n.watchdog_due(0.0)
    n.ready("x")
    n.status("y")
    n.watchdog()
    n.reloading()
    n.stopping()
    n.extend_timeout(10)


def test_unreachable_socket_is_logged_once_and_never_raises():
    missing = tempfile.mktemp(prefix="mtd-gone-")
    proc = run_python("""
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s")
        from montaged.service import Notifier
        n = Notifier()
        n.ready(); n.status("a"); n.status("b"); n.stopping()
        print("survived")
    """, {"NOTIFY_SOCKET": missing})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "survived"
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1 and missing in warnings[0]
    assert sum(ln.startswith("DEBUG cannot notify") for ln in proc.stderr.splitlines()) == 3


def test_unsupported_socket_address_is_ignored():
    n = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled
    n.ready()


# --------------------------------------------------------------------------------------------
# logging set-up


LOG_SCRIPT = """
    import logging, os, sys
    from pathlib import Path
    from montaged.service import setup_logging
    setup = setup_logging(Path(sys.argv[1]) if sys.argv[1] != "-" else None, "info", journal_socket=sys.argv[2])
    print(setup.sink, setup.journal, setup.log_file)
    log = logging.getLogger("montaged.watch")
    log.debug("not shown")
    log.info("settled %s", "/srv/in/a.mp4", extra={"path": "/srv/in/a.mp4", "job": 7})
    log.error("cannot read %s", os.fsdecode(b"/srv/in/\\xff.mp4"),
              extra={"path": os.fsdecode(b"/srv/in/\\xff.mp4"), "folder": "/srv/in"})
    try:
        raise ValueError("bad header")
    except ValueError:
        log.exception("analysis failed", extra={"job": 8})
    logging.getLogger("watchdog.observers").info("third-party chatter")
    logging.getLogger("watchdog.observers").warning("third-party warning")
"""


def _run_log_script(arg: str, env: dict[str, str], stderr_file: Path,
                    journal_socket: str = "/nonexistent/journal/socket") -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO)
    with open(stderr_file, "wb") as err:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(LOG_SCRIPT), arg, journal_socket], env=full_env,
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=60)


def parse_native(data: bytes) -> dict[str, bytes]:
    """journald's native protocol, read the way journald reads it: ``KEY=value\n``, or ``KEY\n``,
    a little-endian 64-bit length, that many bytes and ``\n``."""
    fields: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = nl + 1
        else:
            key = line
            size = int.from_bytes(data[nl + 1:nl + 9], "little")
            value = data[nl + 9:nl + 9 + size]
            assert len(value) == size and data[nl + 9 + size:nl + 10 + size] == b"\n", data[i:i + 80]
            i = nl + 10 + size
        assert key.decode("ascii") not in fields, key
        fields[key.decode("ascii")] = value
    return fields


def test_under_journald_lines_carry_syslog_priorities(tmp_path):
    """No native journal socket (journald not reachable there): ``<N>`` lines on stderr."""
    err = tmp_path / "stderr"
    err.touch()
    st = os.stat(err)
    proc = _run_log_script(str(tmp_path / "state"), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, err)
    assert proc.returncode == 0
    sink, journal, log_file = proc.stdout.split()
    assert journal == "True" and log_file == "None"
    assert not (tmp_path / "state" / "montaged.log").exists()
    assert sink == "journal-stderr"
    lines = err.read_text().splitlines()
    assert lines[0] == "<6>montaged.watch: settled /srv/in/a.mp4 [path=/srv/in/a.mp4 job=7]"
    assert lines[1] == r'<3>montaged.watch: cannot read /srv/in/\xff.mp4 [path="/srv/in/\\xff.mp4" folder=/srv/in]'
    assert lines[2] == "<3>montaged.watch: analysis failed [job=8]"
    assert lines[3] == "<3>    Traceback (most recent call last):"
    assert lines[-2].endswith("ValueError: bad header") and lines[-2].startswith("<3>    ")
    assert lines[-1] == "<4>watchdog.observers: third-party warning"
    assert all(ln.startswith("<") for ln in lines)


@pytest.fixture
def journal_socket():
    """A datagram socket standing in for journald's ``/run/systemd/journal/socket``."""
    tmpdir = tempfile.mkdtemp(prefix="mtd-")  # sun_path holds 108 bytes; tmp_path may be longer
    address = os.path.join(tmpdir, "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    yield address, sock
    sock.close()
    shutil.rmtree(tmpdir)


def receive_entries(sock: socket.socket) -> list[dict[str, bytes]]:
    return [parse_native(d) for d in receive_all_big(sock)]


def receive_all_big(sock: socket.socket, quiet: float = 0.3) -> list[bytes]:
    got = []
    sock.settimeout(quiet)
    try:
        while True:
            got.append(sock.recv(1 << 20))
    except TimeoutError:
        pass
    return got


def test_under_journald_records_go_to_the_native_socket_with_fields(tmp_path, journal_socket):
    address, sock = journal_socket
    err = tmp_path / "stderr"
    err.touch()
    st = os.stat(err)
    proc = _run_log_script(str(tmp_path / "state"), {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, err,
                           journal_socket=address)
    assert proc.returncode == 0, err.read_text()
    assert proc.stdout.split() == ["journal", "True", "None"]
    assert err.read_text() == ""  # nothing fell back to stderr
    settled, unreadable, failed, third_party = receive_entries(sock)

    assert settled["MESSAGE"] == b"montaged.watch: settled /srv/in/a.mp4 [path=/srv/in/a.mp4 job=7]"
    assert settled["PRIORITY"] == b"6" and settled["SYSLOG_IDENTIFIER"] == b"montaged"
    assert settled["LOGGER"] == b"montaged.watch" and settled["CODE_FUNC"] == b"<module>"
    assert settled["MONTAGED_PATH"] == b"/srv/in/a.mp4" and settled["MONTAGED_JOB"] == b"7"
    assert "MONTAGED_FOLDER" not in settled
    # The exact bytes of a name that is not UTF-8; the message shows it escaped.
    assert unreadable["MONTAGED_PATH"] == b"/srv/in/\xff.mp4"
    assert unreadable["MONTAGED_FOLDER"] == b"/srv/in" and unreadable["PRIORITY"] == b"3"
    assert unreadable["MESSAGE"].startswith(b"montaged.watch: cannot read /srv/in/\\xff.mp4")
    # A traceback stays in its entry (the length-prefixed form carries the newlines).
    lines = failed["MESSAGE"].decode().splitlines()
    assert lines[0] == "montaged.watch: analysis failed [job=8]"
    assert lines[1] == "    Traceback (most recent call last):" and lines[-1] == "    ValueError: bad header"
    assert failed["MONTAGED_JOB"] == b"8"
    assert third_party["LOGGER"] == b"watchdog.observers" and third_party["PRIORITY"] == b"4"


def test_journal_payload_forms():
    from montaged.service import journal_payload

    payload = journal_payload({"MESSAGE": "two\nlines", "MONTAGED_PATH": b"/a/\xff", "PRIORITY": 6, "EMPTY": ""})
    assert payload == (b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n"
                       b"MONTAGED_PATH=/a/\xff\nPRIORITY=6\nEMPTY=\n")
    assert parse_native(payload) == {"MESSAGE": b"two\nlines", "MONTAGED_PATH": b"/a/\xff", "PRIORITY": b"6", "EMPTY": b""}
    for bad in ("_PID", "1ST", "lower", "A=B", "", "X" * 65):
        with pytest.raises(ValueError):
            journal_payload({bad: "x"})


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(journal_socket):
    import array
    import fcntl
    from montaged.service import JournalHandler

    address, sock = journal_socket
    handler = JournalHandler(address)
    handler.setFormatter(logging.Formatter("%(message)s"))
    big = "x" * (4 << 20)  # larger than any socket send buffer allows for one datagram
    handler.emit(_record("%s", big, extra={"job": 9}))
    handler.emit(_record("small", extra={"job": 10}))
    handler.close()
    fds = array.array("i")
    data, ancdata, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(fds.itemsize))
    assert data == b""
    (level, kind, raw), = ancdata
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fds.frombytes(raw[:fds.itemsize])
    fd = fds[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        for seal in (fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_WRITE, fcntl.F_SEAL_SEAL):
            assert seals & seal
        size = os.fstat(fd).st_size
        entry = parse_native(os.pread(fd, size, 0))
    finally:
        os.close(fd)
    assert entry["MESSAGE"] == big.encode() and entry["MONTAGED_JOB"] == b"9"
    # The next entry is an ordinary datagram again.
    assert parse_native(sock.recv(1 << 16))["MONTAGED_JOB"] == b"10"


def test_unreachable_journal_socket_falls_back_to_stderr(tmp_path):
    import io
    from montaged.service import JournalHandler

    tmpdir = tempfile.mkdtemp(prefix="mtd-")
    try:
        address = os.path.join(tmpdir, "socket")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(address)
        dead.close()  # the socket file is there, nobody reads it: ECONNREFUSED
        out = io.StringIO()
        handler = JournalHandler(address, fallback=out)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler.emit(_record("first", level=logging.WARNING))
        handler.emit(_record("second", extra={"job": 3}))
        handler.close()
    finally:
        shutil.rmtree(tmpdir)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"<4>montaged.service: cannot send to the journal socket {address}")
    assert lines[1:] == ["<4>montaged.test: first", "<6>montaged.test: second [job=3]"]


def test_outside_systemd_a_rotating_file_and_stderr(tmp_path):
    err = tmp_path / "stderr"
    # A JOURNAL_STREAM that is not our stderr (inherited from a shell started by a service).
    proc = _run_log_script(str(tmp_path / "state"), {"JOURNAL_STREAM": "1:2"}, err)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["file", "False", str(tmp_path / "state" / "montaged.log")]
    text = (tmp_path / "state" / "montaged.log").read_text(encoding="utf-8")
    assert err.read_text(encoding="utf-8") == text
    lines = text.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    import re
    assert re.fullmatch(stamp + r" INFO montaged\.watch: settled /srv/in/a\.mp4 \[path=/srv/in/a\.mp4 job=7\]", lines[0])
    assert lines[1].endswith(r'ERROR montaged.watch: cannot read /srv/in/\xff.mp4 [path="/srv/in/\\xff.mp4" folder=/srv/in]')
    assert lines[2].endswith("ERROR montaged.watch: analysis failed [job=8]")
    assert lines[3] == "    Traceback (most recent call last):"
    assert "not shown" not in text and "third-party chatter" not in text
    assert lines[-1].endswith("WARNING watchdog.observers: third-party warning")


def test_stderr_only_without_state_dir(tmp_path):
    err = tmp_path / "stderr"
    proc = _run_log_script("-", {}, err)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["stderr", "False", "None"]
    assert "settled /srv/in/a.mp4" in err.read_text()


def test_stderr_is_journal_compares_device_and_inode(tmp_path):
    f = tmp_path / "x"
    f.touch()
    with open(f, "w") as fh:
        st = os.fstat(fh.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fh.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, fh.fileno())
        assert not stderr_is_journal({}, fh.fileno())


def _record(msg, *args, level=logging.INFO, extra=None, exc_info=None):
    logger = logging.getLogger("montaged.test")
    return logger.makeRecord(logger.name, level, __file__, 1, msg, args, exc_info, extra=extra)


def test_journal_fields_from_extras():
    odd = os.fsdecode(b"/srv/in/\xff.mp4")
    rec = _record("x", extra={"path": "/srv/in/a b.mp4", "job": 7, "folder": "/srv/in", "digest": "ab12"})
    assert journal_fields(rec) == {"MONTAGED_PATH": "/srv/in/a b.mp4", "MONTAGED_JOB": "7",
                                   "MONTAGED_FOLDER": "/srv/in", "MONTAGED_DIGEST": "ab12"}
    # Non-UTF-8 names go to the journal as their exact bytes.
    assert journal_fields(_record("x", extra={"path": odd})) == {"MONTAGED_PATH": b"/srv/in/\xff.mp4"}
    assert journal_fields(_record("x")) == {}


def test_line_format_escapes_and_quotes():
    rec = _record("two\nlines %s", "\x1b[31mred", extra={"path": '/a/b "c" ]d.mp4', "job": 3})
    rec.created = 1795726800.123456  # 2026-11-26T21:00:00.123Z
    line = LineFormatter().format(rec)
    assert line == (r'2026-11-26T21:00:00.123Z INFO montaged.test: two\nlines \x1b[31mred '
                    r'[path="/a/b \"c\" ]d.mp4" job=3]')
    assert "\n" not in line
    assert PriorityPrefixFormatter().format(_record("m", level=logging.WARNING)) == "<4>montaged.test: m"


def test_bad_format_arguments_do_not_lose_the_event():
    line = LineFormatter().format(_record("%d files", "many"))
    assert "bad log call" in line and "files" in line


def test_levels():
    assert [syslog_priority(x) for x in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
    assert parse_level("info") == logging.INFO and parse_level("WARNING") == logging.WARNING
    with pytest.raises(MontagedError, match="unknown log level"):
        parse_level("loud")
