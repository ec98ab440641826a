"""The human view of ``montaged status``: what a person needs to see at a glance.

:func:`render_status` turns the ``status --json`` document into text (pure: same document, same
text). :func:`watch_status` redraws it in place on a terminal for ``status --watch``.

The document is the contract's status JSON plus these extensions, all optional here so that an
older or partial document still renders::

    daemon.roots:    [{"path", "observer": "inotify"|"polling", "online": bool, "error": str|None}]
    daemon.executor: {"kind": "process"|"dask", "workers": int, "scheduler": str|None,
                      "error": str|None}
    daemon.state_dir: str
    folders[].warnings: [str]
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TextIO

from montaged.errors import MontagedError
from montaged.service import clean_text

# ANSI SGR codes; only used when color=True.
_STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36",
           "red-bold": "1;31", "green-bold": "1;32"}

_FOLDER_STYLE = {"ready": "green", "waiting": "yellow", "rendering": "cyan", "failed": "red"}

_UNICODE = {"on": "●", "off": "○", "sep": " · ", "bad": "✗", "warn": "⚠", "full": "█",
            "empty": "░", "arrow": "→", "ellipsis": "…"}
_ASCII = {"on": "*", "off": "o", "sep": " | ", "bad": "x", "warn": "!", "full": "#",
          "empty": "-", "arrow": "->", "ellipsis": "~"}

Segment = tuple[str, str | None]


class _Writer:
    """Collects lines of styled segments and cuts each line to the width *before* adding
    colour codes, so a redraw on a terminal never wraps."""

    def __init__(self, width: int, color: bool, glyphs: dict[str, str]):
        self.width = max(20, width)
        self.color = color
        self.g = glyphs
        self.lines: list[str] = []

    def line(self, *segments: Segment | str) -> None:
        room = self.width
        out = []
        for seg in segments:
            text, style = (seg, None) if isinstance(seg, str) else seg
            if room <= 0:
                break
            if len(text) > room:
                text = text[: max(0, room - 1)] + self.g["ellipsis"]
            room -= len(text)
            out.append(self._paint(text, style))
        self.lines.append("".join(out).rstrip())

    def row(self, head: Sequence[Segment | str], tail: Sequence[Segment | str], indent: int) -> None:
        """``head`` then ``tail`` on one line when they fit; else ``tail`` goes on the next line,
        indented, so the facts at the end of a long row are not cut off."""
        length = sum(len(s if isinstance(s, str) else s[0]) for s in [*head, *tail])
        if length <= self.width or not tail:
            self.line(*head, *tail)
            return
        self.line(*head)
        first = tail[0]
        if isinstance(first, str):
            first = first.lstrip()
        else:
            first = (first[0].lstrip(), first[1])
        self.line(" " * indent, first, *tail[1:])

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def _paint(self, text: str, style: str | None) -> str:
        if not self.color or not style or not text:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


def _s(value: object) -> str:
    """Any value as one safe line: file names can hold newlines or terminal escape codes."""
    return clean_text("" if value is None else str(value))


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return _s(lines[-1] if lines and lines[0].startswith("Traceback") else (lines[0] if lines else ""))


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``, ``2d 3h``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def _ago(stamp: object, now: datetime | None) -> str:
    if not stamp or now is None:
        return ""
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (now - when).total_seconds()
    if delta < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def _shorten(path: str, width: int, ellipsis: str) -> str:
    """Cut the middle of a long path: the folder start and the file name both stay readable."""
    if len(path) <= width or width < 8:
        return path
    keep = width - len(ellipsis)
    head = keep // 3
    return path[:head] + ellipsis + path[len(path) - (keep - head):]


def _bar(fraction: float | None, width: int, g: dict[str, str]) -> str:
    if fraction is None:
        return "[" + " " * width + "]"
    fraction = min(1.0, max(0.0, float(fraction)))
    full = int(round(fraction * width))
    return "[" + g["full"] * full + g["empty"] * (width - full) + "]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render_status(doc: dict, *, width: int = 100, color: bool = False, ascii: bool = False,
                  now: datetime | None = None) -> str:
    """The ``status --json`` document as text for people.

    ``now`` (aware) turns folder update times into "5m ago"; None shows them as given.
    ``ascii`` replaces the Unicode symbols for terminals that cannot show them.
    """
    g = _ASCII if ascii else _UNICODE
    w = _Writer(width, color, g)
    doc = doc or {}
    daemon = doc.get("daemon") or {}
    running = bool(daemon.get("running"))

    _daemon_section(w, daemon, running)
    _files_line(w, doc.get("files") or {})
    w.blank()
    _folders_section(w, doc.get("folders") or [], now)
    jobs = doc.get("running") or []
    if jobs:
        w.blank()
        _running_section(w, jobs)
    problems = doc.get("problems") or []
    if problems:
        w.blank()
        _problems_section(w, problems)
    if not running:
        w.blank()
        w.line(("Hint: ", "bold"), "start it with `sudo systemctl start montaged` (or `montaged run` "
               "in a terminal);")
        w.line("      see why it stopped with `montaged logs -n 50 --level warning`.")
    return w.text()


def _daemon_section(w: _Writer, daemon: dict, running: bool) -> None:
    g = w.g
    if running:
        parts = []
        if daemon.get("pid") is not None:
            parts.append(f"pid {_s(daemon['pid'])}")
        if daemon.get("uptime_s") is not None:
            parts.append(f"up {format_duration(daemon['uptime_s'])}")
        if daemon.get("version"):
            parts.append(f"version {_s(daemon['version'])}")
        w.line((g["on"] + " ", "green-bold"), ("montaged is running", "green-bold"),
               (g["sep"] if parts else "") + g["sep"].join(parts))
    else:
        w.line((g["off"] + " ", "red-bold"), ("montaged is not running", "red-bold"),
               ("  (what follows is the last recorded state)", "dim"))
    label = 10
    if daemon.get("state_dir"):
        w.line("  " + "state".ljust(label), _s(daemon["state_dir"]))
    executor = daemon.get("executor")
    if isinstance(executor, dict):
        segs = _executor_segments(executor)
        w.row(["  " + "workers".ljust(label), segs[0]], segs[1:], 2 + label)
    roots = daemon.get("roots")
    if isinstance(roots, list):
        if not roots:
            w.line("  " + "watching".ljust(label), ("no watch roots configured", "yellow"))
        path_width = min(max((len(_s(r.get("path"))) for r in roots), default=0),
                         max(20, w.width // 2))
        for i, root in enumerate(roots):
            name = "watching" if i == 0 else ""
            path = _shorten(_s(root.get("path")), path_width, g["ellipsis"]).ljust(path_width)
            observer = _s(root.get("observer") or "-").ljust(8)  # None: never started (offline)
            head: list[Segment | str] = ["  " + name.ljust(label), path + "  ", observer + "  "]
            if not running:
                # Nobody watches while the daemon is down: "offline" would blame the disk.
                w.line(*head, ("not watched", "dim"))
            elif root.get("online", True):
                w.line(*head, ("online", "green"))
            else:
                reason = _first_line(root.get("error")) or "missing or not mounted"
                w.row([*head, ("offline", "yellow")],
                      [(f" ({reason}; picked up when it appears)", "yellow")], 2 + label + 2)


def _executor_segments(executor: dict) -> list[Segment]:
    kind = _s(executor.get("kind") or "process")
    workers = executor.get("workers")
    if kind == "dask":
        where = _s(executor.get("scheduler") or "local cluster")
        text = f"dask at {where}"
    else:
        text = "process pool"
    if workers is not None:
        text += f", {_plural(int(workers), 'worker')}"
    segs: list[Segment] = [(text, None)]
    if executor.get("error"):
        segs.append((f"  error: {_first_line(executor['error'])}", "red"))  # e.g. scheduler down
    return segs


def _files_line(w: _Writer, files: dict) -> None:
    order = [("analyzed", "analysed", "green"), ("running", "running", "cyan"),
             ("queued", "queued", None), ("pending", "pending", None),
             ("failed", "failed", "red"), ("quarantined", "quarantined", "red")]
    segs: list[Segment] = []
    for key, word, style in order:
        count = int(files.get(key) or 0)
        if segs:
            segs.append((w.g["sep"], None))
        segs.append((f"{count} {word}", style if count else None))
    w.line("  " + "files".ljust(10), *segs)


def _folders_section(w: _Writer, folders: Sequence[dict], now: datetime | None) -> None:
    if not folders:
        w.row([("Folders: ", "bold"), "none yet."],
              [" Put clips, music and a montage.toml in a folder under a watch root to get a preview."],
              2)
        return
    w.line((f"Folders ({len(folders)})", "bold"))
    path_width = min(max(len(_s(f.get("path"))) for f in folders), max(24, w.width // 3))
    for folder in folders:
        state = _s(folder.get("state") or "?")
        path = _shorten(_s(folder.get("path")), path_width, w.g["ellipsis"]).ljust(path_width)
        total, done = folder.get("files"), folder.get("analyzed")
        count = f"{done}/{total} analysed" if total is not None and done is not None else ""
        head: list[Segment | str] = [("  ", None), (state.ljust(10), _FOLDER_STYLE.get(state)),
                                     (path + "  ", None), (count.ljust(16), None)]
        segs: list[Segment | str] = []
        if state == "failed" or folder.get("error"):
            segs.append((_first_line(folder.get("error")) or "failed (no reason recorded)", "red"))
        elif state == "ready" and folder.get("preview"):
            ago = _ago(folder.get("updated"), now)
            segs.append((f"{w.g['arrow']} {_s(folder['preview'])}", "green"))
            if ago:
                segs.append((f"  ({ago})", "dim"))
        elif state == "waiting" and total is not None and done is not None and total > done:
            segs.append((f"waiting for {_plural(int(total) - int(done), 'file')}", None))
        elif state == "rendering":
            segs.append(("rendering the preview", "cyan"))
        w.row(head, segs, 12)
        for warning in folder.get("warnings") or []:
            w.line(" " * 12, (f"{w.g['warn']} {_first_line(warning)}", "yellow"))


def _running_section(w: _Writer, jobs: Sequence[dict]) -> None:
    w.line((f"Running ({len(jobs)})", "bold"))
    bar_width = 20
    path_width = max(16, w.width - (2 + 6 + 9 + 2 + bar_width + 2 + 5 + 12))
    for job in jobs:
        progress = job.get("progress")
        eta = job.get("eta_s")
        path = _shorten(_s(job.get("path")), path_width, w.g["ellipsis"])
        head: list[Segment | str] = ["  ", (f"#{_s(job.get('id'))}".ljust(6), "dim"),
                                     _s(job.get("kind") or "").ljust(9), path + "  "]
        if progress is None:
            tail: list[Segment | str] = [("working", "cyan")]
        else:
            tail = [(_bar(progress, bar_width, w.g), "cyan"),
                    f" {int(round(float(progress) * 100)):3d}%"]
        if eta is not None:
            tail.append(f"  ETA {format_duration(eta)}")
        w.row(head, tail, 8)


def _problems_section(w: _Writer, problems: Sequence[dict]) -> None:
    w.line((f"Problems ({len(problems)})", "bold"))
    for problem in problems:
        path = _s(problem.get("path") or "?")
        error = _first_line(problem.get("error")) or "failed without a recorded reason"
        attempts = problem.get("attempts")
        state = problem.get("state")
        if state == "quarantined":
            outcome = (f"gave up after {_plural(int(attempts), 'attempt')}" if attempts
                       else "gave up")
        elif attempts:
            outcome = f"failed after {_plural(int(attempts), 'attempt')}"
        else:
            outcome = "failed"
        w.line("  ", (w.g["bad"] + " ", "red"), path)
        w.row(["    ", (error, "red")], [("  (" + outcome + ")", "dim")], 4)
    w.line("  Details: `montaged logs --path PATH`", w.g["sep"], "retry: `montaged retry --failed`")


# --------------------------------------------------------------------------------------------
# status --watch


def watch_status(fetch: Callable[[], dict], interval: float = 1.0, *, out: TextIO | None = None,
                 color: bool | None = None, ascii: bool | None = None,
                 max_updates: int | None = None) -> int:
    """Redraw the status every ``interval`` seconds until Ctrl-C (or ``max_updates`` draws).

    On a terminal the screen is redrawn in place (cursor home, each line cleared to its end, the
    rest of the screen cleared) so it does not flicker; elsewhere each update is appended.
    ``fetch`` returns the status document; a :class:`MontagedError` from it is shown and the
    loop goes on, so a daemon restart does not end the watch. Returns the exit code (0).
    """
    out = sys.stdout if out is None else out
    tty = bool(getattr(out, "isatty", lambda: False)())
    color = tty if color is None else color
    if ascii is None:
        encoding = (getattr(out, "encoding", None) or "ascii").lower().replace("-", "")
        ascii = encoding not in ("utf8", "utf16", "utf32")
    draws = 0
    try:
        if tty:
            out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once
        while True:
            size = shutil.get_terminal_size((100, 40))
            stamp = time.strftime("%H:%M:%S")
            try:
                doc = fetch()
                body = render_status(doc, width=size.columns, color=color, ascii=ascii,
                                     now=datetime.now(timezone.utc))
            except MontagedError as exc:
                body = f"cannot read the status: {exc}\n"
            header = f"montaged status, every {interval:g}s ({stamp}); Ctrl-C to quit"
            text = header[: size.columns] + "\n\n" + body
            if tty:
                lines = text.rstrip("\n").split("\n")[: max(1, size.lines - 1)]
                out.write("\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J")
            else:
                out.write(text + "\n")
            out.flush()
            draws += 1
            if max_updates is not None and draws >= max_updates:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a person leaves the live view: a normal exit, nothing to report
    finally:
        if tty:
            out.write("\x1b[?25h")
            out.flush()
    return 0
