"""``montaged logs``: read the daemon's log from journald or from its rotating log file.

The CLI is a thin layer over :func:`show_logs`. Where the log lives is decided by
:func:`under_systemd` from the ``"journal"`` key the daemon writes in ``state_dir/daemon.json``.

File records are the lines :class:`montaged.service.LineFormatter` writes::

    2026-11-26T21:00:00.123Z INFO montaged.watch: settled /srv/a.mp4 [path=/srv/a.mp4 job=7]
        Traceback (most recent call last):      <- continuation lines are indented

Journal entries carry the same ``logger: message [extras]`` text in ``MESSAGE`` and are printed
in the same format, so a script reading ``montaged logs`` sees one format either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, TextIO

from montaged.errors import MontagedError
from montaged.service import LOG_FILE_NAME, clean_text, extras_suffix, format_time

log = logging.getLogger("montaged.logs")

DAEMON_JSON = "daemon.json"
UNIT = "montaged.service"
# Where a packaged or hand-installed unit can live; used only when daemon.json cannot be read.
_UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system",
              "/lib/systemd/system")

_BLOCK = 64 * 1024

_HEADER = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (?P<level>[A-Z]+) (?P<body>.*)\Z", re.S
)
_BODY = re.compile(r"(?P<logger>[^\s:]+): ?(?P<message>.*)\Z", re.S)
_EXTRA_TOKEN = re.compile(r'([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"\[\]\\=]*)')
_UNESCAPE = re.compile(r"\\(.)", re.S)

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}

_LEVEL_WORDS = {
    "debug": logging.DEBUG, "7": logging.DEBUG,
    "info": logging.INFO, "notice": logging.INFO, "6": logging.INFO, "5": logging.INFO,
    "warning": logging.WARNING, "warn": logging.WARNING, "4": logging.WARNING,
    "error": logging.ERROR, "err": logging.ERROR, "3": logging.ERROR,
    "critical": logging.CRITICAL, "crit": logging.CRITICAL, "alert": logging.CRITICAL,
    "emerg": logging.CRITICAL, "2": logging.CRITICAL, "1": logging.CRITICAL, "0": logging.CRITICAL,
}
_JOURNAL_PRIORITY = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                     logging.ERROR: "err", logging.CRITICAL: "crit"}

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_RELATIVE = re.compile(r"-?\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?\Z")
_CLOCK = re.compile(r"\d{1,2}:\d\d(?::\d\d)?\Z")


class LogQueryError(MontagedError):
    """A ``montaged logs`` option cannot be understood (the CLI exits 2)."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# records


@dataclass
class LogRecord:
    """One event: its header fields and every text line it printed (header + continuations)."""

    time: str  # "2026-11-26T21:00:00.123Z"; "" for lines whose header is in an older file
    level: str
    logger: str
    message: str
    extras: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def levelno(self) -> int:
        return LEVELS.get(self.level, logging.INFO)

    @property
    def when(self) -> datetime | None:
        return datetime.fromisoformat(self.time) if self.time else None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def split_extras(body: str) -> tuple[str, dict[str, str]]:
    """``"settled a.mp4 [path=/x/a.mp4 job=7]"`` -> ``("settled a.mp4", {"path": ..., "job": "7"})``.

    Tries each `` [`` from the right, so a message that itself contains brackets still parses.
    """
    if not body.endswith("]"):
        return body, {}
    end = len(body)
    while True:
        start = body.rfind(" [", 0, end)
        if start < 0:
            return body, {}
        extras = _parse_extras(body[start + 2:-1])
        if extras is not None:
            return body[:start], extras
        end = start


def _parse_extras(text: str) -> dict[str, str] | None:
    extras: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _EXTRA_TOKEN.match(text, pos)
        if m is None:
            return None
        key, value = m.groups()
        if value.startswith('"'):
            value = _UNESCAPE.sub(r"\1", value[1:-1])
        extras[key] = value
        pos = m.end()
        if pos < len(text):
            if text[pos] != " ":
                return None
            pos += 1
    return extras or None


def parse_line(line: str) -> LogRecord | None:
    """A header line -> a record (with ``lines=[line]``); None for a continuation line."""
    m = _HEADER.match(line)
    if m is None:
        return None
    body = m.group("body")
    bm = _BODY.match(body)
    logger, rest = (bm.group("logger"), bm.group("message")) if bm else ("", body)
    message, extras = split_extras(rest)
    return LogRecord(m.group("time"), m.group("level"), logger, message, extras, [line])


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").rstrip("\r")


# --------------------------------------------------------------------------------------------
# filters


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: ISO times (local when no zone is given), ``10m``/``2h``/``1d``/``3 days ago``,
    ``HH:MM``, ``now``, ``today``, ``yesterday``. Returns an aware datetime."""
    now = datetime.now(timezone.utc) if now is None else now
    word = text.strip().lower()
    local_now = now.astimezone()
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "now":
        return now
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - timedelta(days=1)
    m = _RELATIVE.match(word)
    if m and m.group(2) in _UNITS:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    if _CLOCK.match(word):
        parts = [int(p) for p in word.split(":")] + [0]
        if parts[0] < 24 and parts[1] < 60 and parts[2] < 60:
            return midnight.replace(hour=parts[0], minute=parts[1], second=parts[2])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LogQueryError(
            f"cannot understand --since {text!r}: use an ISO time (2026-11-26T21:00), "
            "a relative time (30s, 10m, 2h, 1d) or today/yesterday") from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive = local time, as journalctl reads it
    return when


def parse_min_level(text: str) -> int:
    """``--level``: the least severe level shown (debug, info, warning, error, critical or 0-7)."""
    value = _LEVEL_WORDS.get(text.strip().lower())
    if value is None:
        raise LogQueryError(f"unknown --level {text!r}: use debug, info, warning, error or critical")
    return value


def _path_forms(path: str) -> tuple[str, ...]:
    """The spellings of ``path`` the daemon may have logged: as given (absolute) and resolved."""
    forms = []
    for form in (os.path.abspath(path), os.path.realpath(path)):
        form = clean_text(form)
        if len(form) > 1:
            form = form.rstrip("/")
        if form not in forms:
            forms.append(form)
    return tuple(forms)


@dataclass(frozen=True)
class LogFilter:
    """Which records to keep; every condition given must hold."""

    since: datetime | None = None
    min_level: int | None = None
    path: str | None = None

    @property
    def active(self) -> bool:
        return self.since is not None or self.min_level is not None or self.path is not None

    @property
    def since_text(self) -> str | None:
        return None if self.since is None else format_time(self.since.timestamp())

    @property
    def path_forms(self) -> tuple[str, ...]:
        return _path_forms(self.path) if self.path is not None else ()

    def compile(self) -> Callable[[LogRecord], bool]:
        """A fast predicate (the path regexes are built once, not per record)."""
        since = self.since_text
        min_level = self.min_level
        forms = self.path_forms
        mention = None
        if forms:
            # A mention must end at the end of the name: /srv/a must not match /srv/ab.
            alternatives = "|".join(re.escape(f) for f in forms)
            mention = re.compile(rf"(?:{alternatives})(?=$|[/\s'\",;:)\]])")

        def matches(rec: LogRecord) -> bool:
            if since is not None and (not rec.time or rec.time < since):
                return False
            if min_level is not None and rec.levelno < min_level:
                return False
            if mention is not None:
                for key in ("path", "folder"):
                    value = rec.extras.get(key)
                    if value and any(value == f or value.startswith(f.rstrip("/") + "/") for f in forms):
                        return True
                return bool(mention.search(rec.message))
            return True

        matches.reject_line = self._line_rejecter()  # type: ignore[attr-defined]
        return matches

    def _line_rejecter(self) -> Callable[[str], bool] | None:
        """A cheap test on a raw header line that is True only for lines ``matches`` would
        refuse, so a full scan of 60 MB of logs parses only the lines that can match."""
        since = self.since_text
        min_level = self.min_level
        forms = self.path_forms
        # A name with '"' or '\\' is escaped differently in the extras: no substring shortcut.
        literal = bool(forms) and not any('"' in f or "\\" in f for f in forms)
        if since is None and min_level is None and not literal:
            return None

        def reject(line: str) -> bool:
            if since is not None and line[:24] < since:
                return True
            if min_level is not None:
                end = line.find(" ", 25)
                if LEVELS.get(line[25:end], logging.INFO) < min_level:
                    return True
            return literal and not any(f in line for f in forms)

        return reject


def make_filter(since: str | None = None, level: str | None = None, path: str | None = None,
                now: datetime | None = None) -> LogFilter:
    """Build a :class:`LogFilter` from the CLI's option strings (raises LogQueryError)."""
    return LogFilter(
        since=parse_since(since, now) if since else None,
        min_level=parse_min_level(level) if level else None,
        path=path or None,
    )


# --------------------------------------------------------------------------------------------
# where the log is


def _recorded_journal_flag(state_dir: Path) -> bool | None:
    """The ``"journal"`` flag the daemon recorded at start, or None if it cannot be read.

    Looked up in ``daemon.json`` in the state directory, else in the store's ``daemon`` meta
    record (where ``montaged.daemon`` keeps its pid, version, roots and this flag).
    """
    try:
        doc = json.loads((state_dir / DAEMON_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("journal"), bool):
        return doc["journal"]
    if not (state_dir / "montaged.db").exists():
        return None
    from montaged.store import Store

    try:
        with Store(state_dir, readonly=True) as store:
            meta = store.get_meta("daemon", {}) or {}
    except (MontagedError, OSError, sqlite3.Error):
        return None  # e.g. the state directory is private to the montaged user
    value = meta.get("journal") if isinstance(meta, dict) else None
    return value if isinstance(value, bool) else None


def under_systemd(state_dir: Path | str) -> bool:
    """Whether the daemon's log is in the journal rather than ``state_dir/montaged.log``.

    The daemon records ``"journal": LoggingSetup.journal`` at start (see
    :func:`_recorded_journal_flag`). If that cannot be read (never started, or the state
    directory is private to the ``montaged`` user), a log file in the state directory means
    "no"; else an installed ``montaged.service`` on a machine booted with systemd means "yes".
    """
    state_dir = Path(state_dir)
    recorded = _recorded_journal_flag(state_dir)
    if recorded is not None:
        return recorded
    # os.path.exists is False also when the directory cannot be read: then the unit decides.
    if os.path.exists(state_dir / LOG_FILE_NAME):
        return False
    if not os.path.isdir("/run/systemd/system"):
        return False
    return any(os.path.exists(os.path.join(d, UNIT)) for d in _UNIT_DIRS)


def log_files(state_dir: Path | str) -> list[Path]:
    """``montaged.log`` and its rotated siblings that exist, oldest first."""
    base = Path(state_dir) / LOG_FILE_NAME
    rotated = []
    try:
        for entry in base.parent.iterdir():
            suffix = entry.name[len(LOG_FILE_NAME) + 1:]
            if entry.name.startswith(LOG_FILE_NAME + ".") and suffix.isdigit():
                rotated.append((int(suffix), entry))
    except FileNotFoundError:
        return []
    files = [p for _, p in sorted(rotated, reverse=True)]
    if base.exists():
        files.append(base)
    return files


# --------------------------------------------------------------------------------------------
# reading files


def _header_shaped(line: str) -> bool:
    # "2026-11-26T21:00:00.123Z LEVEL ...": cheaper than the regex, used before quick rejects.
    return len(line) > 25 and line[23] == "Z" and line[10] == "T" and line[4] == "-" and line[24] == " "


# Stands for a header line that a quick test already refused (its continuations go with it).
_REJECTED = LogRecord("", "", "", "", {}, [])


def _items(lines: Iterable[str], reject: Callable[[str], bool] | None = None) -> Iterator[LogRecord | str]:
    """Each line as a record (header) or a plain string (continuation line)."""
    for line in lines:
        if reject is not None and _header_shaped(line) and reject(line):
            yield _REJECTED
            continue
        rec = parse_line(line)
        yield line if rec is None else rec


def _group(items: Iterable[LogRecord | str]) -> Iterator[LogRecord]:
    """Attach continuation lines to their record; leading orphans form a record of their own."""
    current: LogRecord | None = None
    for item in items:
        if isinstance(item, str):
            if current is None:
                current = LogRecord("", "INFO", "", item, {}, [])
            current.lines.append(item)
            continue
        if current is not None:
            yield current
        current = item
    if current is not None:
        yield current


def _stream(items: Iterable[LogRecord | str], keep: Callable[[LogRecord], bool]) -> Iterator[str]:
    """Lines of the kept records as they come (continuations follow their header's fate)."""
    # Lines before the first header belong to a record in an older file: keep them only when
    # nothing is being filtered.
    keeping = keep(LogRecord("", "INFO", "", "", {}, []))
    for item in items:
        if isinstance(item, str):
            if keeping:
                yield item
        elif item is _REJECTED:
            keeping = False
        else:
            keeping = keep(item)
            if keeping:
                yield from item.lines


def _forward_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, "rb") as f:
            yield from _read_lines(f)
    except FileNotFoundError:
        return


def _read_lines(f: BinaryIO) -> Iterator[str]:
    for raw in f:
        yield _decode(raw.rstrip(b"\n"))


def _reverse_lines(f: BinaryIO, end: int) -> Iterator[str]:
    """Lines of ``f[:end]`` from the last to the first, reading blocks from the end."""
    pos = end
    buf = b""
    if pos > 0:
        f.seek(pos - 1)
        if f.read(1) == b"\n":
            pos -= 1  # the final newline ends the last line; it does not start an empty one
    while pos > 0:
        size = min(_BLOCK, pos)
        pos -= size
        f.seek(pos)
        buf = f.read(size) + buf
        parts = buf.split(b"\n")
        buf = parts[0]
        for raw in reversed(parts[1:]):
            yield _decode(raw)
    if buf or end > 0:
        yield _decode(buf)


def _reverse_records(f: BinaryIO, end: int,
                     reject: Callable[[str], bool] | None = None) -> Iterator[LogRecord]:
    """Records of one file, newest first (those ``reject`` refuses on sight are skipped)."""
    tail: list[str] = []
    for line in _reverse_lines(f, end):
        if reject is not None and _header_shaped(line) and reject(line):
            tail = []
            continue
        rec = parse_line(line)
        if rec is None:
            tail.append(line)
            continue
        rec.lines.extend(reversed(tail))
        tail = []
        yield rec
    if tail:
        # Continuations whose header is in the previous file: a record of their own.
        yield LogRecord("", "INFO", "", tail[-1], {}, list(reversed(tail)))


def _complete_end(f: BinaryIO, size: int) -> int:
    """Offset just after the last newline before ``size`` (a line still being written is left
    for the follower)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        chunk = f.read(pos - start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


def _mtime_before(path: Path, since: datetime | None) -> bool:
    """A rotated file last written before ``since`` holds nothing newer: skip it unread."""
    if since is None:
        return False
    try:
        return path.stat().st_mtime < since.timestamp()
    except OSError:
        return True


def tail_records(files: list[Path], keep: Callable[[LogRecord], bool], n: int,
                 since: datetime | None = None,
                 current: tuple[BinaryIO, int] | None = None) -> list[LogRecord]:
    """The last ``n`` kept records across ``files`` (oldest first), reading backwards.

    ``current``: the already open newest file and the offset to stop at (used by ``-f`` so
    that following starts exactly where the tail ended).
    """
    found: list[LogRecord] = []
    if n <= 0:
        return found
    reject = getattr(keep, "reject_line", None)
    for index in range(len(files) - 1, -1, -1):
        path = files[index]
        is_current = current is not None and index == len(files) - 1
        if not is_current and _mtime_before(path, since):
            break  # older files are older still
        try:
            if is_current:
                f, end = current  # type: ignore[misc]
                records = _reverse_records(f, end, reject)
                found.extend(_take(records, keep, n - len(found)))
            else:
                with open(path, "rb") as f:
                    end = os.fstat(f.fileno()).st_size
                    found.extend(_take(_reverse_records(f, end, reject), keep, n - len(found)))
        except FileNotFoundError:
            continue  # rotated away while we read: its records are in the next name
        if len(found) >= n:
            break
    found.reverse()
    return found


def _take(records: Iterator[LogRecord], keep: Callable[[LogRecord], bool], n: int) -> list[LogRecord]:
    out = []
    for rec in records:
        if keep(rec):
            out.append(rec)
            if len(out) >= n:
                break
    return out


def read_lines(state_dir: Path | str, filt: LogFilter = LogFilter()) -> Iterator[str]:
    """Every kept line of the log file and its rotated siblings, oldest first."""
    keep = filt.compile()
    for path in log_files(state_dir):
        if not filt.active:
            yield from _forward_lines(path)  # nothing to decide: no need to parse
            continue
        if path.name != LOG_FILE_NAME and _mtime_before(path, filt.since):
            continue
        yield from _stream(_items(_forward_lines(path), getattr(keep, "reject_line", None)), keep)


# --------------------------------------------------------------------------------------------
# following a file across rotation


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _snapshot(base: Path) -> list[tuple[Path, BinaryIO, os.stat_result]]:
    """Open the log and its rotated siblings at once, oldest first, checked against a fresh
    ``stat`` of every name so a rotation in between is noticed and the snapshot retried."""
    for _attempt in range(20):
        opened: list[tuple[Path, BinaryIO, os.stat_result]] = []
        consistent = True
        for path in log_files(base.parent):
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                consistent = False
                break
            st = os.fstat(f.fileno())
            opened.append((path, f, st))
            try:
                consistent = _same_file(os.stat(path), st)
            except FileNotFoundError:
                consistent = False
            if not consistent:
                break
        if consistent:
            return opened
        for _, f, _ in opened:
            f.close()
        time.sleep(0.01)
    return []


def _open_newer(base: Path, old: os.stat_result) -> tuple[list[BinaryIO], BinaryIO | None]:
    """After ``old`` was rotated away: the rotated files written after it (oldest first) and the
    new ``base``, all open.

    RotatingFileHandler may have rotated several times since we last looked: the file we were
    reading is now ``montaged.log.K``, and ``.K-1`` ... ``.1`` hold lines we have not seen.
    """
    opened = _snapshot(base)
    base_f = None
    if opened and opened[-1][0] == base:
        base_f = opened.pop()[1]
    index = next((i for i, (_, _, st) in enumerate(opened) if _same_file(st, old)), None)
    if index is not None:
        newer, older = opened[index + 1:], opened[:index + 1]
    else:
        # The old file was deleted (rotated past backupCount): every remaining file written
        # after it is newer. mtime keeps out older files when the log was deleted by hand.
        newer = [o for o in opened if o[2].st_mtime_ns >= old.st_mtime_ns]
        older = [o for o in opened if o[2].st_mtime_ns < old.st_mtime_ns]
    for _, f, _ in older:
        f.close()
    return [f for _, f, _ in newer], base_f


def follow_lines(base: Path, f: BinaryIO | None, pos: int, *, poll: float = 0.25,
                 stop: Callable[[], bool] = lambda: False,
                 idle: Callable[[], None] = lambda: None) -> Iterator[str]:
    """Lines appended to ``base`` from ``pos`` on, across rotation and truncation, until ``stop()``.

    ``f`` is ``base`` already open (or None to wait for it to appear). ``idle()`` is called
    each time every line written so far has been yielded (and consumed: generators are lazy),
    before waiting for more: the moment to flush what was printed.
    """
    buf = b""
    if f is not None:
        f.seek(pos)
    try:
        while not stop():
            if f is None:
                try:
                    f = open(base, "rb")
                    buf = b""
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
            chunk = f.read(_BLOCK)
            if chunk:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    yield _decode(raw)
                continue
            cur = os.fstat(f.fileno())
            try:
                now = os.stat(base)
            except FileNotFoundError:
                now = None
            if now is not None and _same_file(now, cur):
                if now.st_size < f.tell():  # truncated in place (copytruncate, or by hand)
                    f.seek(0)
                    buf = b""
                    continue
                idle()
                time.sleep(poll)
                continue
            # Rotated: the writer may have added lines between our EOF and its rename.
            buf += f.read()
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                yield _decode(raw)
            if buf:
                yield _decode(buf)
                buf = b""
            f.close()
            f = None
            if now is None:
                continue
            newer, f = _open_newer(base, cur)
            for g in newer:
                with g:
                    yield from _read_lines(g)
    finally:
        if f is not None:
            f.close()


# --------------------------------------------------------------------------------------------
# journald


def journal_command(*, unit: str = UNIT, follow: bool = False, lines: int | None = None,
                    filt: LogFilter = LogFilter()) -> list[str]:
    """The ``journalctl`` argv for the given filters (``-o json`` so fields can be parsed)."""
    argv = ["journalctl", "-u", unit, "-o", "json", "--no-pager"]
    if filt.since is not None:
        argv += ["--since", f"@{int(filt.since.timestamp())}"]
    if filt.min_level is not None:
        argv += ["-p", _JOURNAL_PRIORITY.get(filt.min_level, "info")]
    if filt.path is not None:
        # The MESSAGE holds "... [path=...]" (service.py puts the extras there for both journal
        # sinks), so --grep pre-selects; the exact "is it under this folder" test is ours.
        argv += ["--grep", "|".join(re.escape(f) for f in filt.path_forms), "--case-sensitive=yes"]
    if lines is not None and (filt.path is None or follow):
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return argv


def _field_text(value: object) -> str:
    if isinstance(value, list):
        if value and all(isinstance(x, int) for x in value):
            return bytes(value).decode("utf-8", "backslashreplace")  # binary field
        return _field_text(value[0]) if value else ""
    return "" if value is None else str(value)


_PRIORITY_LEVEL = {7: "DEBUG", 6: "INFO", 5: "INFO", 4: "WARNING", 3: "ERROR"}


def journal_items(entry: dict) -> list[LogRecord | str]:
    """One ``journalctl -o json`` entry -> a record, or a continuation line (stderr tracebacks
    arrive one journal entry per line, indented)."""
    message = _field_text(entry.get("MESSAGE"))
    try:
        usec = int(_field_text(entry.get("__REALTIME_TIMESTAMP")) or 0)
        priority = int(_field_text(entry.get("PRIORITY")) or 6)
    except ValueError:
        usec, priority = 0, 6
    first, *rest = message.split("\n")
    if first.startswith((" ", "\t")) and "LOGGER" not in entry:
        return [clean_text(line) for line in message.split("\n")]
    when = format_time(usec / 1e6)
    level = _PRIORITY_LEVEL.get(priority, "CRITICAL")
    bm = _BODY.match(first)
    logger, text = (bm.group("logger"), bm.group("message")) if bm else ("", first)
    text, extras = split_extras(clean_text(text))
    if not extras:
        for key in ("path", "job", "folder"):
            value = entry.get("MONTAGED_" + key.upper())
            if value is not None:
                extras[key] = clean_text(_field_text(value))
    header = f"{when} {level} {logger + ': ' if logger else ''}{text}{extras_suffix(extras)}"
    rec = LogRecord(when, level, logger, text, extras, [header])
    return [rec, *(clean_text(line) for line in rest)]


def _journal_lines(proc: subprocess.Popen, entry_done: Callable[[], None] = lambda: None) -> Iterator[LogRecord | str]:
    """The items of each ``journalctl -o json`` line; ``entry_done()`` after each entry's
    items were consumed (the moment to flush when following)."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            entry = json.loads(raw)
        except ValueError:
            # Not a journal entry (journalctl's own notice, a cut-off line): shown as it is,
            # like a line of a log file that is not a record.
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            yield clean_text(text.rstrip("\n"))
            continue
        if isinstance(entry, dict):
            yield from journal_items(entry)
        entry_done()


def _show_journal(out: TextIO, *, follow: bool, lines: int | None, filt: LogFilter, unit: str,
                  journalctl: str) -> int:
    argv = journal_command(unit=unit, follow=follow, lines=lines, filt=filt)
    argv[0] = journalctl
    keep = filt.compile()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise MontagedError(
            "journalctl not found: the daemon logs to the journal; install systemd's journalctl "
            "or read the log on the machine that runs it") from None
    # journalctl explains itself on stderr (not in the systemd-journal group, no journal files):
    # pass that through as it comes, and remember whether it said anything.
    complaints: list[bytes] = []
    pump = threading.Thread(target=_pump_stderr, args=(proc, complaints), daemon=True)
    pump.start()
    try:
        if lines is not None and filt.path is not None and not follow:
            for rec in deque((r for r in _group(_journal_lines(proc)) if keep(r)), maxlen=lines):
                out.write(rec.text + "\n")
        else:
            for line in _stream(_journal_lines(proc, out.flush if follow else lambda: None), keep):
                out.write(line + "\n")
    finally:
        if proc.poll() is None:
            proc.terminate()
        rc = proc.wait()
        pump.join(timeout=5)
    # With --grep, journalctl exits 1 without a word when nothing matched: that is an empty
    # result, not a failure.
    if rc in (0, -15) or (rc == 1 and filt.path is not None and not complaints):
        return 0
    return 1


def _pump_stderr(proc: subprocess.Popen, complaints: list[bytes]) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        complaints.append(raw)
        sys.stderr.write(_decode(raw.rstrip(b"\n")) + "\n")
        sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# JSON lines


def record_document(rec: LogRecord) -> dict:
    """One record as ``logs --json`` prints it: ``time``, ``level``, ``logger``, ``message``,
    the montaged fields ``path``, ``job`` (a number) and ``folder`` (null when the record has
    none), any other bracketed field, and ``detail``: its continuation lines (a traceback),
    unindented, or null. Lines whose header is in an older file have null time, level, logger."""
    header = bool(rec.time)
    doc: dict = {"time": rec.time or None, "level": rec.level if header else None,
                 "logger": (rec.logger or None) if header else None, "message": rec.message if header else ""}
    for key in ("path", "job", "folder"):
        value = rec.extras.get(key)
        doc[key] = int(value) if key == "job" and value and value.isdigit() else value
    for key, value in rec.extras.items():
        doc.setdefault(key, value)
    more = rec.lines[1:] if header else rec.lines
    doc["detail"] = "\n".join(ln[4:] if ln.startswith("    ") else ln for ln in more) or None
    return doc


class JsonLines:
    """Where the text readers write their lines, when ``--json`` asks for records: each header
    line starts a record, indented lines join it, and a record is printed as one JSON object when
    the next one starts or at ``flush()`` (the readers flush at the end, and when following, each
    time they have printed everything there is so far)."""

    def __init__(self, out: TextIO):
        self.out = out
        self.partial = ""
        self.pending: LogRecord | None = None

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            rec = parse_line(line)
            if rec is not None:
                self._emit()
                self.pending = rec
            elif self.pending is not None:
                self.pending.lines.append(line)
            else:
                self.pending = LogRecord("", "", "", "", {}, [line])
        return len(text)

    def flush(self) -> None:
        self._emit()
        self.out.flush()

    def _emit(self) -> None:
        if self.pending is not None:
            rec, self.pending = self.pending, None
            self.out.write(json.dumps(record_document(rec), ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# the command


def show_logs(state_dir: Path | str, *, follow: bool = False, lines: int | None = None,
              since: str | None = None, level: str | None = None, path: str | None = None,
              out: TextIO | None = None, journal: bool | None = None, unit: str = UNIT,
              journalctl: str = "journalctl", poll: float = 0.25,
              stop: Callable[[], bool] = lambda: False, now: datetime | None = None,
              as_json: bool = False) -> int:
    """``montaged logs``: print the kept records; with ``follow``, keep printing new ones.

    ``as_json``: JSON lines instead, one object per record (:func:`record_document`).

    ``lines`` (``-n``) keeps the last N kept records (default: all; 10 with ``follow``).
    ``journal`` None decides with :func:`under_systemd`. Returns the exit code. Raises
    :class:`LogQueryError` for options it cannot understand (exit 2) and
    :class:`~montaged.errors.MontagedError` when there is no log to read (exit 1).
    """
    out = sys.stdout if out is None else out
    filt = make_filter(since, level, path, now)
    if lines is not None and lines < 0:
        raise LogQueryError(f"-n must be 0 or more, not {lines}")
    if follow and lines is None:
        lines = 10
    state_dir = Path(state_dir)
    use_journal = under_systemd(state_dir) if journal is None else journal
    sink = JsonLines(out) if as_json else out
    try:
        if use_journal:
            code = _show_journal(sink, follow=follow, lines=lines, filt=filt, unit=unit,
                                 journalctl=journalctl)
        else:
            code = _show_file(sink, state_dir, follow=follow, lines=lines, filt=filt, poll=poll,
                              stop=stop)
        sink.flush()
        return code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # `montaged logs | head`: the reader is gone; that is not an error.
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit does not fail again on
    the closed pipe. If even that fails there is nobody left to tell: the reader is gone."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _show_file(out: TextIO, state_dir: Path, *, follow: bool, lines: int | None,
               filt: LogFilter, poll: float, stop: Callable[[], bool]) -> int:
    base = state_dir / LOG_FILE_NAME
    keep = filt.compile()
    files = log_files(state_dir)
    if not files and not follow:
        raise MontagedError(
            f"no log at {base}: the daemon has not run with state directory {state_dir} "
            "(under systemd its log is in the journal: journalctl -u montaged)")
    if not follow:
        if lines is None:
            for line in read_lines(state_dir, filt):
                out.write(line + "\n")
        else:
            for rec in tail_records(files, keep, lines, filt.since):
                out.write(rec.text + "\n")
        return 0

    f: BinaryIO | None = None
    pos = 0
    try:
        f = open(base, "rb")
    except FileNotFoundError:
        print(f"waiting for {base} to appear", file=sys.stderr)
    if f is not None:
        size = os.fstat(f.fileno()).st_size
        pos = _complete_end(f, size)
        files = log_files(state_dir)
        if not files or files[-1] != base:
            files.append(base)
        for rec in tail_records(files, keep, lines or 0, filt.since, current=(f, pos)):
            out.write(rec.text + "\n")
        out.flush()
    reject = getattr(keep, "reject_line", None)
    for line in _stream(_items(follow_lines(base, f, pos, poll=poll, stop=stop, idle=out.flush), reject), keep):
        out.write(line + "\n")
    return 0
