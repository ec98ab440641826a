"""A one-line progress bar for the one-shot commands, drawn on stderr only when it is a terminal.

``analyze`` and ``preview`` run for seconds; on a terminal they redraw one line in place
(``analysing clip.mp4 (1/3)  [#######.............]  35%``) and clear it when done. When stderr
is a pipe or a file nothing is drawn: scripts and logs see exactly what they saw before.
"""

from __future__ import annotations

import os
import shutil
import threading
from typing import TextIO

BAR = 24


class ProgressLine:
    """``update(label, fraction)`` redraws the line when what it shows changes; ``close()``
    clears it. Thread-safe (render progress may come from another thread); never raises."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.shown: tuple[str, int] | None = None
        self.lock = threading.Lock()

    def update(self, label: str, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        key = (label, int(fraction * 100))
        with self.lock:
            if key == self.shown:
                return
            self.shown = key
            filled = int(round(fraction * BAR))
            width = shutil.get_terminal_size((80, 24)).columns
            tail = f"  [{'#' * filled}{'.' * (BAR - filled)}] {key[1]:3d}%"
            room = max(0, width - 1 - len(tail))
            text = label if len(label) <= room else "…" + label[-(room - 1):] if room > 1 else ""
            self._write(f"\r\x1b[K{text}{tail}")

    def close(self) -> None:
        with self.lock:
            if self.shown is not None:
                self._write("\r\x1b[K")
            self.shown = None

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the terminal went away: progress is not worth failing the work for


def terminal_progress(stream: TextIO) -> ProgressLine | None:
    """A :class:`ProgressLine` on ``stream`` if it is a terminal (and TERM is not "dumb")."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return None
    if not tty or os.environ.get("TERM") == "dumb":
        return None
    return ProgressLine(stream)
