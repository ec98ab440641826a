"""``montaged logs``: real log files written by setup_logging in another process, then read back."""

from __future__ import annotations

import io
import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from montaged.logs import (
    LogFilter,
    LogQueryError,
    journal_command,
    journal_items,
    log_files,
    parse_line,
    parse_min_level,
    parse_since,
    show_logs,
    split_extras,
    under_systemd,
)

REPO = Path(__file__).resolve().parents[1]

# Writes records through the real handlers that setup_logging installs. Each spec is
# [seconds before now, level, message, extras]; created times are set so --since has something
# to select.
WRITER = """
    import json, logging, os, sys, time
    from pathlib import Path
    from montaged.service import setup_logging
    state, max_bytes, backups, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    setup_logging(Path(state), "debug", max_bytes=max_bytes, backup_count=backups, stream=open(os.devnull, "w"))
    log = logging.getLogger("montaged.test")
    now = time.time()
    for age, level, msg, extras in json.loads(sys.stdin.read()):
        # "RAW:" values stand for bytes that are not UTF-8 (latin-1 in the JSON).
        extras = {k: os.fsdecode(v[4:].encode("latin-1")) if str(v).startswith("RAW:") else v
                  for k, v in extras.items()}
        exc = None
        if msg.startswith("EXC "):
            try:
                raise ValueError("broken moov atom")
            except ValueError:
                exc = sys.exc_info()
        rec = log.makeRecord(log.name, getattr(logging, level), "writer.py", 1, msg, (), exc, extra=extras)
        rec.created = now - age
        rec.msecs = (rec.created % 1) * 1000
        log.handle(rec)
        if pause:
            time.sleep(pause)
"""


def write_log(state: Path, specs, *, max_bytes=10_000_000, backups=5, pause=0.0) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JOURNAL_STREAM", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), str(state), str(max_bytes),
                           str(backups), str(pause)], input=json.dumps(specs), text=True,
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


def run_logs(state: Path, **kwargs) -> list[str]:
    out = io.StringIO()
    assert show_logs(state, out=out, journal=False, **kwargs) == 0
    return out.getvalue().splitlines()


def messages(lines: list[str]) -> list[str]:
    return [rec.message for rec in map(parse_line, lines) if rec is not None]


@pytest.fixture(scope="module")
def mixed_log(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    specs = [
        [3 * 3600, "INFO", "daemon started", {}],
        [2 * 3600, "INFO", "settled /srv/in/hike/a.mp4", {"path": "/srv/in/hike/a.mp4", "job": 1}],
        [90 * 60, "WARNING", "slow disk", {}],
        [60 * 60 + 30, "INFO", "settled /srv/in/hiker/b.mp4", {"path": "/srv/in/hiker/b.mp4", "job": 2}],
        [30 * 60, "ERROR", "EXC analysis failed", {"path": "/srv/in/hike/c.mov", "job": 3}],
        [20 * 60, "INFO", "preview written for /srv/in/hike", {"folder": "/srv/in/hike"}],
        [10 * 60, "DEBUG", "tick", {}],
        [5 * 60, "ERROR", "not a media file: /srv/in/hike/notes.txt", {}],
        [60, "INFO", "odd name", {"path": "RAW:/srv/in/caf\xe9.mp4"}],
    ]
    write_log(state, specs)
    return state


def test_all_lines_in_order_with_tracebacks(mixed_log):
    lines = run_logs(mixed_log)
    assert messages(lines) == ["daemon started", "settled /srv/in/hike/a.mp4", "slow disk",
                               "settled /srv/in/hiker/b.mp4", "EXC analysis failed",
                               "preview written for /srv/in/hike", "tick",
                               "not a media file: /srv/in/hike/notes.txt", "odd name"]
    i = next(i for i, ln in enumerate(lines) if "EXC analysis failed" in ln)
    j = next(j for j, ln in enumerate(lines) if "preview written" in ln)
    assert lines[i + 1] == "    Traceback (most recent call last):"
    assert lines[j - 1] == "    ValueError: broken moov atom"
    assert all(ln.startswith("    ") for ln in lines[i + 1:j])


def test_level_filter(mixed_log):
    lines = run_logs(mixed_log, level="warning")
    assert messages(lines) == ["slow disk", "EXC analysis failed", "not a media file: /srv/in/hike/notes.txt"]
    # The traceback stays with its record.
    assert any("ValueError: broken moov atom" in ln for ln in lines)
    assert messages(run_logs(mixed_log, level="ERROR", lines=1)) == ["not a media file: /srv/in/hike/notes.txt"]
    assert len(messages(run_logs(mixed_log, level="debug"))) == 9


def test_since_filter(mixed_log):
    assert messages(run_logs(mixed_log, since="25m")) == [
        "preview written for /srv/in/hike", "tick", "not a media file: /srv/in/hike/notes.txt", "odd name"]
    assert messages(run_logs(mixed_log, since="1 hour ago", level="error")) == [
        "EXC analysis failed", "not a media file: /srv/in/hike/notes.txt"]
    iso = (datetime.now(timezone.utc) - timedelta(minutes=95)).isoformat()
    assert messages(run_logs(mixed_log, since=iso))[:2] == ["slow disk", "settled /srv/in/hiker/b.mp4"]
    assert len(messages(run_logs(mixed_log, since="yesterday"))) == 9
    assert run_logs(mixed_log, since="now") == []


def test_path_filter_keeps_the_folder_and_what_is_under_it(mixed_log):
    assert messages(run_logs(mixed_log, path="/srv/in/hike")) == [
        "settled /srv/in/hike/a.mp4", "EXC analysis failed", "preview written for /srv/in/hike",
        "not a media file: /srv/in/hike/notes.txt"]
    # A file, by its path extra; and a trailing slash changes nothing.
    assert messages(run_logs(mixed_log, path="/srv/in/hike/c.mov")) == ["EXC analysis failed"]
    assert messages(run_logs(mixed_log, path="/srv/in/hiker/")) == ["settled /srv/in/hiker/b.mp4"]
    # Combined with -n and --level.
    assert messages(run_logs(mixed_log, path="/srv/in/hike", level="error", lines=1)) == [
        "not a media file: /srv/in/hike/notes.txt"]


def test_path_filter_with_a_non_utf8_name(mixed_log):
    raw = os.fsdecode(b"/srv/in/caf\xe9.mp4")
    lines = run_logs(mixed_log, path=raw)
    assert messages(lines) == ["odd name"]
    assert '[path="/srv/in/caf\\\\xe9.mp4"]' in lines[0]


def test_relative_path_is_made_absolute(mixed_log, monkeypatch):
    monkeypatch.chdir("/srv") if os.path.isdir("/srv") else monkeypatch.chdir("/")
    rel = os.path.relpath("/srv/in/hiker", os.getcwd())
    assert messages(run_logs(mixed_log, path=rel)) == ["settled /srv/in/hiker/b.mp4"]


def test_last_n_across_rotation(tmp_path):
    specs = [[600 - i, "ERROR" if i % 10 == 0 else "INFO", f"event {i:03d}", {"job": i}] for i in range(120)]
    write_log(tmp_path, specs, max_bytes=2000, backups=20)
    files = log_files(tmp_path)
    assert len(files) >= 4 and files[-1].name == "montaged.log"
    lines = run_logs(tmp_path, lines=45)
    assert messages(lines) == [f"event {i:03d}" for i in range(75, 120)]
    # Matches spread over many files: the tail still finds exactly the last ones, in order.
    assert messages(run_logs(tmp_path, lines=7, level="error")) == [f"event {i:03d}" for i in range(50, 120, 10)]
    assert len(messages(run_logs(tmp_path))) == 120
    assert run_logs(tmp_path, lines=0) == []


def test_records_keep_their_traceback_with_n(tmp_path):
    write_log(tmp_path, [[5, "INFO", "before", {}], [4, "ERROR", "EXC boom", {"job": 9}], [3, "INFO", "after", {}]])
    lines = run_logs(tmp_path, lines=2)
    assert lines[0].endswith("ERROR montaged.test: EXC boom [job=9]")
    assert lines[-2] == "    ValueError: broken moov atom"
    assert lines[-1].endswith("INFO montaged.test: after")


class Follower:
    """``show_logs(follow=True)`` in a thread, every line it prints put on ``lines``; stopped
    when the ``with`` block ends."""

    def __init__(self, state: Path, **kwargs):
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stop = threading.Event()
        lines = self.lines

        class QueueWriter(io.TextIOBase):
            def write(self, text):
                for line in text.splitlines():
                    lines.put(line)
                return len(text)

        self.thread = threading.Thread(target=show_logs, args=(state,), daemon=True, kwargs=dict(
            follow=True, out=QueueWriter(), journal=False, poll=0.02, stop=self.stop.is_set, **kwargs))

    def get(self, timeout: float = 30) -> str:
        return self.lines.get(timeout=timeout)

    def __enter__(self) -> "Follower":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_follow_sees_appended_lines_across_rotation(tmp_path):
    write_log(tmp_path, [[10, "INFO", "old 1", {}], [9, "INFO", "old 2", {}], [8, "INFO", "old 3", {}]],
              max_bytes=3000, backups=50)
    seen = []
    with Follower(tmp_path, lines=2) as follower:
        seen.append(follower.get())
        seen.append(follower.get())
        assert messages(seen) == ["old 2", "old 3"]
        # 300 records, ~100 bytes each, rotate every ~30: about ten rotations while following.
        n = 300
        writer = threading.Thread(target=write_log, args=(tmp_path, [[0, "INFO", f"new {i:03d}", {"job": i}] for i in range(n)]),
                                  kwargs=dict(max_bytes=3000, backups=50, pause=0.002))
        writer.start()
        while len(seen) < 2 + n:
            seen.append(follower.get(timeout=60))
        writer.join()
    assert len(log_files(tmp_path)) > 5
    assert messages(seen[2:]) == [f"new {i:03d}" for i in range(n)]
    assert follower.lines.empty()


def test_follow_filters_new_lines(tmp_path):
    write_log(tmp_path, [[10, "INFO", "start", {}]])
    with Follower(tmp_path, lines=0, level="error", path="/srv/in/x") as follower:
        write_log(tmp_path, [[0, "ERROR", "EXC failed", {"path": "/srv/in/x/a.mp4"}],
                             [0, "ERROR", "unrelated", {"path": "/srv/in/y/a.mp4"}],
                             [0, "INFO", "fine", {"path": "/srv/in/x/b.mp4"}],
                             [0, "ERROR", "last /srv/in/x", {}]])
        lines = [follower.get()]
        while "last /srv/in/x" not in lines[-1]:
            lines.append(follower.get())
    assert messages(lines) == ["EXC failed", "last /srv/in/x"]
    assert lines[1] == "    Traceback (most recent call last):"
    assert lines[-2] == "    ValueError: broken moov atom"
    assert follower.lines.empty()


def test_follow_json_prints_each_record_whole_and_without_waiting_for_the_next(tmp_path):
    write_log(tmp_path, [[10, "INFO", "start", {}]])
    with Follower(tmp_path, lines=1, as_json=True) as follower:
        assert json.loads(follower.get())["message"] == "start"
        # The last record written is printed although no record follows it, traceback and all.
        write_log(tmp_path, [[0, "ERROR", "EXC failed", {"path": "/srv/in/x/a.mp4", "job": 3}]])
        doc = json.loads(follower.get())
    assert (doc["level"], doc["message"], doc["path"], doc["job"]) == ("ERROR", "EXC failed", "/srv/in/x/a.mp4", 3)
    assert doc["detail"].splitlines()[0] == "Traceback (most recent call last):"
    assert doc["detail"].splitlines()[-1] == "ValueError: broken moov atom"
    assert follower.lines.empty()


def test_json_lines_of_lines_whose_header_is_in_an_older_file(tmp_path):
    (tmp_path / "montaged.log").write_text("    at the end of a traceback\n"
                                           "2026-11-26T21:00:00.123Z INFO montaged.x: next [job=x1]\n")
    out = io.StringIO()
    assert show_logs(tmp_path, out=out, journal=False, as_json=True) == 0
    orphan, rec = map(json.loads, out.getvalue().splitlines())
    assert orphan == {"time": None, "level": None, "logger": None, "message": "", "path": None, "job": None,
                      "folder": None, "detail": "at the end of a traceback"}
    assert (rec["time"], rec["logger"], rec["message"], rec["job"]) == ("2026-11-26T21:00:00.123Z", "montaged.x", "next", "x1")


def test_missing_log_is_an_error_that_says_where(tmp_path):
    from montaged.errors import MontagedError

    with pytest.raises(MontagedError, match="no log at"):
        show_logs(tmp_path, journal=False, out=io.StringIO())


# --------------------------------------------------------------------------------------------
# option parsing


NOW = datetime(2026, 11, 26, 21, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, delta", [
    ("10m", timedelta(minutes=10)), ("-10m", timedelta(minutes=10)), ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)), ("30s", timedelta(seconds=30)), ("3 days ago", timedelta(days=3)),
    ("1.5h", timedelta(minutes=90)), ("2 weeks", timedelta(days=14)), ("now", timedelta(0)),
])
def test_relative_since(text, delta):
    assert parse_since(text, NOW) == NOW - delta


def test_absolute_since():
    assert parse_since("2026-11-26T20:00:00Z", NOW) == datetime(2026, 11, 26, 20, tzinfo=timezone.utc)
    assert parse_since("2026-11-26T20:00+01:00", NOW) == datetime(2026, 11, 26, 19, tzinfo=timezone.utc)
    local = parse_since("2026-11-26 20:00", NOW)
    assert local.utcoffset() is not None and local.replace(tzinfo=None) == datetime(2026, 11, 26, 20)
    today = parse_since("today", NOW)
    assert parse_since("yesterday", NOW) == today - timedelta(days=1)
    assert (today.hour, today.minute) == (0, 0) and today <= NOW
    assert parse_since("09:30", NOW) == today.replace(hour=9, minute=30)


@pytest.mark.parametrize("bad", ["soon", "10 parsecs", "25:00", "2026-13-01"])
def test_bad_since_is_a_usage_error(bad):
    with pytest.raises(LogQueryError, match="--since"):
        parse_since(bad, NOW)


def test_levels():
    assert parse_min_level("warning") == parse_min_level("WARN") == parse_min_level("4") == 30
    assert parse_min_level("err") == 40
    with pytest.raises(LogQueryError, match="--level"):
        parse_min_level("loud")


def test_extras_round_trip_through_the_line_format():
    from montaged.service import extras_suffix

    extras = {"path": '/a b/"q" ]x=y.mp4', "job": "7", "folder": "/a b"}
    msg, parsed = split_extras("settled [draft] clip" + extras_suffix(extras))
    assert (msg, parsed) == ("settled [draft] clip", extras)
    assert split_extras("no extras [here]") == ("no extras [here]", {})


# --------------------------------------------------------------------------------------------
# where the log is


def test_under_systemd_follows_what_the_daemon_recorded(tmp_path):
    assert under_systemd(tmp_path) is False or os.path.isdir("/run/systemd/system")
    (tmp_path / "daemon.json").write_text(json.dumps({"journal": True}))
    assert under_systemd(tmp_path) is True
    (tmp_path / "daemon.json").write_text(json.dumps({"journal": False}))
    (tmp_path / "montaged.log").write_text("")
    assert under_systemd(tmp_path) is False


def test_under_systemd_reads_the_store_meta(tmp_path):
    from montaged.store import Store

    with Store(tmp_path) as store:
        store.set_meta("daemon", {"pid": 1, "journal": True})
    (tmp_path / "montaged.log").write_text("")  # an old log file does not override the record
    assert under_systemd(tmp_path) is True


# --------------------------------------------------------------------------------------------
# journald


def test_journal_command_maps_the_filters():
    since = datetime(2026, 11, 26, 20, 0, tzinfo=timezone.utc)
    argv = journal_command(lines=20, filt=LogFilter(since=since, min_level=30))
    assert argv == ["journalctl", "-u", "montaged.service", "-o", "json", "--no-pager",
                    "--since", f"@{int(since.timestamp())}", "-p", "warning", "-n", "20"]
    argv = journal_command(follow=True, lines=10, filt=LogFilter(path="/srv/in/a+b"))
    assert argv[argv.index("--grep") + 1] == r"/srv/in/a\+b"
    assert argv[-3:] == ["-n", "10", "-f"]
    # With --path, -n is applied after our own under-this-folder test, not by journalctl.
    assert "-n" not in journal_command(lines=5, filt=LogFilter(path="/srv/in"))


def test_journal_entries_print_like_the_file():
    entry = {"__REALTIME_TIMESTAMP": "1795726800123000", "PRIORITY": "3",
             "MESSAGE": "montaged.jobs: analysis failed [path=/srv/in/a.mp4 job=7]\n    Traceback (most recent call last):",
             "LOGGER": "montaged.jobs", "MONTAGED_PATH": "/srv/in/a.mp4", "MONTAGED_JOB": "7"}
    rec, cont = journal_items(entry)
    assert rec.lines == ["2026-11-26T21:00:00.123Z ERROR montaged.jobs: analysis failed [path=/srv/in/a.mp4 job=7]"]
    assert rec.extras == {"path": "/srv/in/a.mp4", "job": "7"}
    assert cont == "    Traceback (most recent call last):"
    # The stderr sink: one entry per line, no LOGGER field; binary MESSAGE as a byte list.
    stderr_cont = {"__REALTIME_TIMESTAMP": "1795726800200000", "PRIORITY": "3", "MESSAGE": "    ValueError: x"}
    assert journal_items(stderr_cont) == ["    ValueError: x"]
    binary = {"__REALTIME_TIMESTAMP": "1795726800200000", "PRIORITY": "6",
              "MESSAGE": list(b"montaged.watch: settled /in/\xff.mp4")}
    (rec,) = journal_items(binary)
    assert rec.logger == "montaged.watch" and rec.message == r"settled /in/\xff.mp4"
    assert LogFilter(path="/in").compile()(rec)


def test_real_journalctl_runs_with_every_filter(tmp_path):
    """The argv we build is accepted by the installed journalctl (an empty result is fine)."""
    from tests.helpers import need_tool

    need_tool("journalctl", "systemd")
    for kwargs in ({}, {"lines": 5, "level": "error", "since": "1h"}, {"path": "/srv/in", "lines": 3}):
        out = io.StringIO()
        assert show_logs(tmp_path, journal=True, out=out, **kwargs) == 0, kwargs
        for line in out.getvalue().splitlines():
            assert parse_line(line) is not None or line.startswith(" "), line


def test_journalctl_failures_are_reported(tmp_path):
    from montaged.errors import MontagedError

    assert show_logs(tmp_path, journal=True, journalctl="/bin/false", out=io.StringIO()) == 1
    with pytest.raises(MontagedError, match="journalctl not found"):
        show_logs(tmp_path, journal=True, journalctl=str(tmp_path / "no-journalctl"), out=io.StringIO())
