"""systemd integration: sd_notify messages and where the daemon's log records go.

Two small, independent pieces:

* :class:`Notifier` speaks the sd_notify protocol (``READY=1``, ``STATUS=``, ``WATCHDOG=1``,
  ``RELOADING=1``, ``STOPPING=1``): one datagram to ``$NOTIFY_SOCKET``. Outside systemd it does
  nothing.
* :func:`setup_logging` routes records to the journal when stderr is connected to it (systemd
  sets ``$JOURNAL_STREAM``): :class:`JournalHandler` sends journald's native protocol with
  ``MONTAGED_*`` fields; else to a rotating ``montaged.log`` in the state directory plus
  stderr. The file's line format is the one :mod:`montaged.logs` parses::

      2026-11-26T21:00:00.123Z INFO montaged.watch: settled /srv/a.mp4 [path=/srv/a.mp4 job=7]

Modules log with ``log.info("settled %s", p, extra={"path": p, "job": 7, "folder": f})``; the
extras become the bracketed suffix in the file and ``MONTAGED_PATH=`` style journal fields.

Both protocols are a few lines over an AF_UNIX datagram socket, so montaged speaks them itself:
systemd-python (a C extension that needs libsystemd-dev and a compiler to install) is not used.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import logging.handlers
import os
import re
import socket
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from montaged.errors import MontagedError

log = logging.getLogger("montaged.service")

LOG_FILE_NAME = "montaged.log"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUP_COUNT = 5

# Extras listed first, in this order, in the bracketed suffix; any other extra follows sorted.
EXTRA_ORDER = ("path", "job", "folder")

_NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


# --------------------------------------------------------------------------------------------
# sd_notify


def _notify_address(value: str) -> bytes | None:
    """The socket address in ``$NOTIFY_SOCKET`` as bytes for ``sendto``, or None if unusable.

    ``@name`` is an abstract socket: the kernel wants a leading NUL byte instead of the ``@``.
    Other forms (``vsock:`` from systemd 254 in VMs) are not supported and return None.
    """
    if not value:
        return None
    raw = os.fsencode(value)
    if raw.startswith(b"@"):
        return b"\0" + raw[1:]
    if raw.startswith(b"/"):
        return raw
    return None


def _monotonic_usec() -> int:
    # systemd compares MONOTONIC_USEC against its own CLOCK_MONOTONIC, so it must be that clock.
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Send sd_notify state changes to systemd; a silent no-op when not started by systemd.

    The socket address is read once, at construction. ``unset_environment=True`` then removes
    ``NOTIFY_SOCKET``/``WATCHDOG_*`` from ``os.environ``, so worker processes (which inherit the
    environment) never talk to systemd in the daemon's name.

    No method ever raises because of the socket: the first failure is logged as a warning, later
    ones at debug level, so a vanished notify socket cannot take the daemon down.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        unset_environment: bool = False,
    ) -> None:
        env = os.environ if environ is None else environ
        self._raw_address = env.get("NOTIFY_SOCKET", "")
        self._address = _notify_address(self._raw_address)
        if self._raw_address and self._address is None:
            log.warning("ignoring unsupported NOTIFY_SOCKET address %r", self._raw_address)
        self._watchdog_interval = self._read_watchdog(env)
        self._last_ping: float | None = None
        self._last_status: str | None = None
        self._sock: socket.socket | None = None
        self._error_logged = False

        if unset_environment and isinstance(env, MutableMapping):
            for name in _NOTIFY_ENV:
                env.pop(name, None)

    @staticmethod
    def _read_watchdog(env: Mapping[str, str]) -> float | None:
        """Seconds between pings (half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled advises)."""
        usec = env.get("WATCHDOG_USEC", "")
        if not usec:
            return None
        pid = env.get("WATCHDOG_PID", "")
        try:
            if pid and int(pid) != os.getpid():
                # The watchdog belongs to another process (we are a child that inherited it).
                return None
            value = int(usec)
        except ValueError:
            log.warning("ignoring malformed watchdog settings WATCHDOG_USEC=%r WATCHDOG_PID=%r", usec, pid)
            return None
        if value <= 0:
            return None
        return value / 2e6

    # -- state ---------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd watches no one here."""
        return self._watchdog_interval if self.enabled else None

    def watchdog_due(self, now: float | None = None) -> bool:
        """True when a ping is due: never pinged yet, or half of WATCHDOG_USEC has passed.

        ``now`` is ``time.monotonic()``; the main loop calls ``watchdog()`` when this is true.
        """
        interval = self.watchdog_interval
        if interval is None:
            return False
        if self._last_ping is None:
            return True
        now = time.monotonic() if now is None else now
        return now - self._last_ping >= interval

    # -- messages ------------------------------------------------------------------------------

    def ready(self, status: str | None = None) -> None:
        """Start-up (or a reload) is complete: systemd marks the unit active."""
        lines = ["READY=1"]
        if status is not None:
            status = _one_line(status)
            lines.append(f"STATUS={status}")
            self._last_status = status
        self.notify("\n".join(lines))

    def status(self, text: str) -> None:
        """Set the one-line status that ``systemctl status`` shows; sent only when it changed."""
        text = _one_line(text)
        if text == self._last_status:
            return
        self._last_status = text
        self.notify(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog (``WATCHDOG=1``) and remember when, for :meth:`watchdog_due`."""
        if self.watchdog_interval is None:
            return
        self._last_ping = time.monotonic() if now is None else now
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        """A configuration reload started; call :meth:`ready` when it is done.

        systemd 253+ (``Type=notify-reload``) requires ``MONOTONIC_USEC`` with ``RELOADING=1`` to
        order the reload against the ``ExecReload`` request; older versions ignore it.
        """
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self, status: str | None = None) -> None:
        """Graceful shutdown started."""
        msg = "STOPPING=1"
        if status is not None:
            status = _one_line(status)
            msg += f"\nSTATUS={status}"
            self._last_status = status
        self.notify(msg)

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on a start or stop in progress."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def notify(self, message: str) -> None:
        """Send one raw sd_notify message (newline-separated ``KEY=value`` assignments)."""
        if self._address is None:
            return
        try:
            self._send(message.encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self._report(exc)

    def _send(self, payload: bytes) -> None:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A wedged PID 1 must not wedge our main loop forever; sd_notify would block, we wait
            # a bounded time and log instead.
            sock.settimeout(2.0)
            self._sock = sock
        self._sock.sendto(payload, self._address)

    def _report(self, exc: OSError) -> None:
        if not self._error_logged:
            self._error_logged = True
            log.warning("cannot notify systemd at %s: %s (further errors logged at debug level)",
                        self._raw_address, exc)
        else:
            log.debug("cannot notify systemd at %s: %s", self._raw_address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    # A newline in STATUS= would start a new assignment: systemd would read it as a command.
    return " ".join(str(text).splitlines()).strip()


# --------------------------------------------------------------------------------------------
# logging

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_NEEDS_QUOTES = re.compile(r'[\s"\]\[\\=]')


def clean_text(text: str) -> str:
    """Make ``text`` safe for a one-line, valid UTF-8 log: never raises.

    Paths that are not valid UTF-8 arrive as surrogate escapes (``os.fsdecode``); they come out
    as ``\\xff`` so the line still says which bytes the name had. Newlines and other control
    characters are escaped so one event stays one line and cannot rewrite someone's terminal.
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        # Lone surrogates that did not come from surrogateescape.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    ch = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(ch, f"\\x{ord(ch):02x}")


def quote_value(value: object) -> str:
    """One extra's value as written in the bracketed suffix (quoted when it has to be)."""
    text = clean_text(str(value))
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def record_extras(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra=`` values of a record, known keys first (path, job, folder), then the rest."""
    found = {
        k: v for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and not k.startswith("_") and _KEY.match(k) and v is not None
    }
    ordered = {k: found.pop(k) for k in EXTRA_ORDER if k in found}
    ordered.update(sorted(found.items()))
    return ordered


def extras_suffix(extras: Mapping[str, object]) -> str:
    if not extras:
        return ""
    return " [" + " ".join(f"{k}={quote_value(v)}" for k, v in extras.items()) + "]"


def format_time(created: float) -> str:
    """``2026-11-26T21:00:00.123Z`` (UTC, milliseconds)."""
    # Round once, then split: (t % 1) * 1000 of 0.123 is 122.99999... in binary floating point.
    seconds, ms = divmod(int(round(created * 1000)), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


class _BaseFormatter(logging.Formatter):
    def body(self, record: logging.LogRecord) -> str:
        """``logger: message [extras]`` on one line."""
        try:
            msg = record.getMessage()
        except (TypeError, ValueError) as exc:
            # A wrong format string must not lose the event.
            msg = f"{record.msg!r} % {record.args!r} (bad log call: {exc})"
        return f"{record.name}: {clean_text(msg)}{extras_suffix(record_extras(record))}"

    def detail_lines(self, record: logging.LogRecord) -> list[str]:
        """Traceback and stack lines, written as indented continuation lines."""
        parts = []
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        lines: list[str] = []
        for part in parts:
            lines.extend("    " + clean_text(line) for line in part.splitlines())
        return lines


class LineFormatter(_BaseFormatter):
    """The log file (and interactive stderr) format that :mod:`montaged.logs` parses."""

    def format(self, record: logging.LogRecord) -> str:
        # RotatingFileHandler formats each record once to decide on rollover and again to
        # write it, and the stderr handler a third time: format once, reuse the text.
        cached = record.__dict__.get("_montaged_line")
        if cached is not None:
            return cached
        head = f"{format_time(record.created)} {record.levelname} {self.body(record)}"
        text = "\n".join([head, *self.detail_lines(record)])
        record._montaged_line = text
        return text


def syslog_priority(levelno: int) -> int:
    """Python level -> syslog priority (7 debug ... 2 critical), as journald stores them."""
    if levelno <= logging.DEBUG:
        return 7
    if levelno <= logging.INFO:
        return 6
    if levelno <= logging.WARNING:
        return 4
    if levelno <= logging.ERROR:
        return 3
    return 2


class PriorityPrefixFormatter(_BaseFormatter):
    """``<6>logger: message [extras]``: sd-daemon(3) prefixes that journald turns into PRIORITY.

    No timestamp: journald records its own. Continuation lines repeat the prefix because
    journald stores every line of a stream as its own entry.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in [self.body(record), *self.detail_lines(record)])


def journal_fields(record: logging.LogRecord) -> dict[str, object]:
    """Extra journal fields for a record: ``MONTAGED_PATH``, ``MONTAGED_JOB``, ``MONTAGED_FOLDER``...

    Path-like values are sent as their original bytes (journald stores any bytes), so a
    non-UTF-8 file name stays exact and ``journalctl MONTAGED_PATH=...`` can still match it.
    """
    fields: dict[str, object] = {}
    for key, value in record_extras(record).items():
        name = "MONTAGED_" + key.upper()
        if isinstance(value, str):
            fields[name] = value.encode("utf-8", "surrogateescape") if _has_surrogates(value) else value
        else:
            fields[name] = str(value)
    return fields


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


JOURNAL_SOCKET = "/run/systemd/journal/socket"
_JOURNAL_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,63}\Z")


def _field_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    text = str(value)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that did not come from surrogateescape
        return text.encode("utf-8", "backslashreplace")


def journal_payload(fields: Mapping[str, object]) -> bytes:
    """One journal entry in journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL).

    ``KEY=value\n`` for a value without a newline; ``KEY\n`` + its length as a little-endian
    64-bit integer + the value + ``\n`` for one with newlines or any other bytes (binary-safe).
    Keys are upper case letters, digits and ``_``, at most 64, starting with a letter (journald
    drops other fields; ``_`` starts the fields it adds itself): others raise ``ValueError``.
    """
    out = bytearray()
    for key, value in fields.items():
        if not _JOURNAL_KEY.match(key):
            raise ValueError(f"not a journal field name: {key!r}")
        data = _field_bytes(value)
        if b"\n" in data:
            out += key.encode("ascii") + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Log records as journal entries over journald's native socket, with our own fields.

    Every entry has ``MESSAGE`` (``logger: message [extras]`` and any traceback, so a plain
    ``journalctl -u montaged`` reads like the log file), ``PRIORITY``, ``SYSLOG_IDENTIFIER``,
    ``LOGGER``, ``THREAD_NAME``, ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC`` and the ``MONTAGED_*``
    fields of :func:`journal_fields`. journald adds ``_PID``, ``_SYSTEMD_UNIT`` and the other
    trusted fields itself from the socket's credentials.

    An entry too big for one datagram goes in a sealed memfd whose descriptor is sent instead,
    as sd_journal_send(3) does. If the socket cannot be reached (journald restarting), the
    record is written to ``fallback`` (stderr: the unit's journal stream) with its ``<N>``
    priority prefix, so nothing is lost; the first such failure says why on that stream.
    """

    def __init__(self, address: str = JOURNAL_SOCKET, fallback: TextIO | None = None) -> None:
        super().__init__()
        self.address = address
        self._fallback = fallback
        self._fallback_formatter = PriorityPrefixFormatter()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # A wedged journald must not wedge the main loop: wait a bounded time, then fall back.
        self._sock.settimeout(2.0)
        self._error_reported = False

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        return {
            "MESSAGE": self.format(record),
            "PRIORITY": str(syslog_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": "montaged",
            "LOGGER": record.name,
            "THREAD_NAME": record.threadName or "",
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            **journal_fields(record),
        }

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = journal_payload(self.fields(record))
        except (ValueError, TypeError):
            self.handleError(record)
            return
        try:
            self._send(payload)
        except OSError as exc:
            self._to_fallback(record, exc)

    def _send(self, payload: bytes) -> None:
        try:
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(payload)

    def _send_memfd(self, payload: bytes) -> None:
        fd = os.memfd_create("montaged-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            # journald only reads a memfd that can no longer change.
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self._sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))], 0, self.address)
        finally:
            os.close(fd)

    def _to_fallback(self, record: logging.LogRecord, exc: OSError) -> None:
        stream = self._fallback if self._fallback is not None else sys.stderr
        try:
            if not self._error_reported:
                self._error_reported = True
                stream.write(f"<4>montaged.service: cannot send to the journal socket {self.address}: {exc}; "
                             "writing to stderr instead\n")
            stream.write(self._fallback_formatter.format(record) + "\n")
            stream.flush()
        except (OSError, ValueError):
            self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()


class _JournalMessageFormatter(_BaseFormatter):
    """The journal MESSAGE keeps the ``logger: message [extras]`` text so that a plain
    ``journalctl -u montaged`` reads like the log file and ``--grep PATH`` finds the events."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join([self.body(record), *self.detail_lines(record)])


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the journal stream systemd connected (``$JOURNAL_STREAM=dev:ino``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def parse_level(level: str | int) -> int:
    """``"info"``/``"INFO"``/``20`` -> ``logging.INFO``; a plain-words error otherwise."""
    if isinstance(level, int):
        return level
    value = _LEVELS.get(str(level).strip().lower())
    if value is None:
        raise MontagedError(f"unknown log level: {level!r} (use debug, info, warning or error)")
    return value


@dataclass(frozen=True)
class LoggingSetup:
    """Where records go after :func:`setup_logging`.

    ``sink``: ``"journal"`` (:class:`JournalHandler`, native protocol), ``"journal-stderr"`` (``<N>``
    prefixed lines on stderr, read by journald), ``"file"`` (rotating ``log_file`` + stderr) or
    ``"stderr"`` (no state directory given).
    """

    sink: str
    log_file: Path | None
    level: int

    @property
    def journal(self) -> bool:
        """What the daemon writes as ``"journal"`` in ``daemon.json`` for ``montaged logs``."""
        return self.sink in ("journal", "journal-stderr")


_OWN_HANDLER = "_montaged_handler"


def setup_logging(
    state_dir: Path | None,
    level: str | int = "INFO",
    *,
    max_bytes: int = LOG_MAX_BYTES,
    backup_count: int = LOG_BACKUP_COUNT,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> LoggingSetup:
    """Route log records to the journal, or to ``state_dir/montaged.log`` plus stderr.

    Under systemd (stderr is the journal stream), records go to journald's native socket
    ``journal_socket`` with their fields; if that socket does not exist, they go to stderr as
    ``<N>``-prefixed lines, which journald stores with their priority but without fields.

    Safe to call again (on SIGHUP with a new level or state directory): the handlers installed
    by the previous call are closed and replaced. ``level`` applies to the ``montaged`` loggers;
    other libraries (watchdog, PyAV, scenedetect) only get through from WARNING up, because
    their INFO/DEBUG chatter would drown the daemon's own events.
    """
    levelno = parse_level(level)
    stream = sys.stderr if stream is None else stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWN_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()

    handlers: list[logging.Handler] = []
    log_file: Path | None = None
    if stderr_is_journal(environ):
        if os.path.exists(journal_socket):
            handler: logging.Handler = JournalHandler(journal_socket, fallback=stream)
            handler.setFormatter(_JournalMessageFormatter())
            sink = "journal"
        else:
            handler = _SafeStreamHandler(stream)
            handler.setFormatter(PriorityPrefixFormatter())
            sink = "journal-stderr"
        handlers.append(handler)
    else:
        if state_dir is not None:
            state_dir = Path(state_dir)
            state_dir.mkdir(parents=True, exist_ok=True)
            log_file = state_dir / LOG_FILE_NAME
            file_handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=backup_count,
                encoding="utf-8", errors="backslashreplace",
            )
            file_handler.setFormatter(LineFormatter())
            handlers.append(file_handler)
            sink = "file"
        else:
            sink = "stderr"
        stream_handler = _SafeStreamHandler(stream)
        stream_handler.setFormatter(LineFormatter())
        handlers.append(stream_handler)

    for handler in handlers:
        setattr(handler, _OWN_HANDLER, True)
        root.addHandler(handler)
    root.setLevel(max(levelno, logging.WARNING))
    logging.getLogger("montaged").setLevel(levelno)
    logging.captureWarnings(True)
    return LoggingSetup(sink=sink, log_file=log_file, level=levelno)


class _SafeStreamHandler(logging.StreamHandler):
    """A stream handler that survives a stderr which cannot encode the text (C locale, pipes)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            try:
                self.stream.write(msg + self.terminator)
            except UnicodeEncodeError:
                encoding = getattr(self.stream, "encoding", None) or "ascii"
                self.stream.write(msg.encode(encoding, "backslashreplace").decode(encoding) + self.terminator)
            self.flush()
        except (OSError, ValueError):
            # ValueError: the stream was closed (interpreter shutdown); OSError: EPIPE etc.
            self.handleError(record)
