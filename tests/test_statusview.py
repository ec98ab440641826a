"""The human status view: the facts a person needs must be there, and lines must fit."""

from __future__ import annotations

import copy
import io
import re
from datetime import datetime, timezone

import pytest

from montaged.errors import MontagedError
from montaged.statusview import format_duration, render_status, watch_status

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NOW = datetime(2026, 11, 26, 20, 5, tzinfo=timezone.utc)

RICH = {
    "daemon": {
        "running": True, "pid": 1234, "version": "0.1.0", "uptime_s": 3725.2,
        "state_dir": "/var/lib/montaged",
        "roots": [
            {"path": "/srv/ingest", "observer": "inotify", "online": True, "error": None},
            {"path": "/mnt/nas/ingest", "observer": "polling", "online": False,
             "error": "No such file or directory: '/mnt/nas/ingest'"},
        ],
        "executor": {"kind": "process", "workers": 2, "scheduler": None, "error": None},
    },
    "files": {"pending": 1, "queued": 3, "running": 2, "analyzed": 12, "failed": 1, "quarantined": 1},
    "folders": [
        {"path": "/srv/ingest/hike", "state": "ready", "files": 12, "analyzed": 12,
         "preview": "/srv/previews/hike/preview.mp4", "error": None, "updated": "2026-11-26T20:00:00Z",
         "warnings": []},
        {"path": "/srv/ingest/beach", "state": "waiting", "files": 5, "analyzed": 3, "preview": None,
         "error": None, "updated": None,
         "warnings": ["music track.m4a is 40 s long; the preview will be 40 s, not 60 s"]},
        {"path": "/srv/ingest/party", "state": "failed", "files": 4, "analyzed": 0, "preview": None,
         "error": 'montage.toml: unknown key "titel" (did you mean "title"?)', "updated": None},
        {"path": "/srv/ingest/city", "state": "rendering", "files": 2, "analyzed": 2, "preview": None,
         "error": None, "updated": None},
    ],
    "running": [
        {"id": 7, "kind": "analyze", "path": "/srv/ingest/beach/clip01.mp4", "progress": 0.42, "eta_s": 3.1},
        {"id": 9, "kind": "render", "path": "/srv/ingest/city", "progress": None, "eta_s": None},
    ],
    "problems": [
        {"path": "/srv/ingest/beach/notes.mp4", "error": "not a media file: notes.mp4", "attempts": 3,
         "state": "quarantined"},
        {"path": "/srv/ingest/beach/broken.mov",
         "error": "Traceback (most recent call last):\n  File \"x.py\", line 1\nMediaError: truncated file: broken.mov",
         "attempts": 1, "state": "failed"},
    ],
}


def test_rich_document_shows_every_fact():
    text = render_status(RICH, width=120, now=NOW)
    lines = text.splitlines()
    assert lines[0] == "● montaged is running · pid 1234 · up 1h 02m · version 0.1.0"
    assert "/var/lib/montaged" in text
    assert "process pool, 2 workers" in text
    root_lines = [ln for ln in lines if "/srv/ingest " in ln or "/mnt/nas/ingest" in ln]
    assert "inotify" in root_lines[0] and "online" in root_lines[0]
    assert "polling" in root_lines[1] and "offline" in root_lines[1]
    assert "No such file or directory: '/mnt/nas/ingest'" in text
    assert "12 analysed · 2 running · 3 queued · 1 pending · 1 failed · 1 quarantined" in text
    folder = {ln.split()[1]: ln for ln in lines if ln.startswith("  ") and ln.split()[0] in
              ("ready", "waiting", "failed", "rendering")}
    assert "12/12 analysed" in folder["/srv/ingest/hike"]
    assert "/srv/previews/hike/preview.mp4" in folder["/srv/ingest/hike"] and "(5m ago)" in folder["/srv/ingest/hike"]
    assert "waiting for 2 files" in folder["/srv/ingest/beach"]
    assert 'unknown key "titel"' in folder["/srv/ingest/party"]
    assert "rendering the preview" in folder["/srv/ingest/city"]
    assert "⚠ music track.m4a is 40 s long" in text
    job = next(ln for ln in lines if "#7" in ln)
    assert "analyze" in job and "/srv/ingest/beach/clip01.mp4" in job
    assert "█" * 8 + "░" * 12 in job and "42%" in job and "ETA 3s" in job
    assert "working" in next(ln for ln in lines if "#9" in ln)
    # Problems, worded for people: the useful last line of a traceback, and what happened.
    assert "not a media file: notes.mp4  (gave up after 3 attempts)" in text
    assert "MediaError: truncated file: broken.mov  (failed after 1 attempt)" in text
    assert "Traceback" not in text
    assert "montaged retry --failed" in text
    assert "Hint" not in text


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
@pytest.mark.parametrize("color", [False, True])
def test_every_line_fits_the_width(width, color):
    text = render_status(RICH, width=width, color=color, now=NOW)
    for line in text.splitlines():
        assert len(ANSI.sub("", line)) <= width, line
    assert ("\x1b[" in text) == color


def test_long_rows_wrap_instead_of_losing_the_end():
    text = render_status(RICH, width=70, now=NOW)
    # The preview path does not fit after the folder columns: it moves to the next line whole.
    assert "→ /srv/previews/hike/preview.mp4" in text
    assert 'montage.toml: unknown key "titel" (did you mean "title"?)' in text


def test_ascii_mode():
    text = render_status(RICH, ascii=True, now=NOW)
    assert text.isascii()
    assert "[########------------]" in text


def test_names_cannot_smuggle_terminal_codes():
    doc = copy.deepcopy(RICH)
    doc["folders"][0]["path"] = "/srv/ingest/\x1b[2Jevil\nname"
    doc["problems"][0]["error"] = "bad\x1b]0;title\x07"
    text = render_status(doc, now=NOW)
    assert "\x1b" not in text and "\x07" not in text
    assert r"/srv/ingest/\x1b[2Jevil\nname" in text


def test_empty_document():
    text = render_status({})
    assert "montaged is not running" in text
    assert "Folders: none yet" in text
    assert "systemctl start montaged" in text


def test_not_running_document_keeps_the_recorded_state_and_hints():
    doc = copy.deepcopy(RICH)
    doc["daemon"] = {"running": False, "pid": None, "version": "0.1.0", "uptime_s": None,
                     "state_dir": "/var/lib/montaged", "executor": None,
                     "roots": [{"path": "/srv/ingest", "observer": "inotify", "online": False, "error": None}]}
    doc["running"] = []
    text = render_status(doc, now=NOW)
    assert text.startswith("○ montaged is not running")
    assert "/srv/previews/hike/preview.mp4" in text
    assert "sudo systemctl start montaged" in text and "montaged run" in text
    assert "montaged logs -n 50 --level warning" in text
    assert "Running (" not in text
    # Nobody watches while the daemon is down; that is not the disk's fault.
    assert "not watched" in text and "offline" not in text


def test_renders_the_real_status_document_of_an_empty_state_dir(tmp_path):
    from montaged.status import status_document

    text = render_status(status_document(tmp_path))
    assert "montaged is not running" in text and str(tmp_path) in text


def test_format_duration():
    assert [format_duration(s) for s in (0, 42.4, 185, 3725, 2 * 86400 + 3 * 3600)] == [
        "0s", "42s", "3m 05s", "1h 02m", "2d 3h"]
    assert format_duration(None) == "?" and format_duration(float("nan")) == "?"


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_watch_redraws_in_place_on_a_terminal():
    out = FakeTTY()
    docs = iter([RICH, {"daemon": {"running": False}}])
    assert watch_status(lambda: next(docs), interval=0.01, out=out, max_updates=2) == 0
    text = out.getvalue()
    assert text.count("\x1b[H") == 2  # cursor home before each draw, no scrolling
    assert "montaged is running" in text and "montaged is not running" in text
    assert text.endswith("\x1b[?25h")  # the cursor is shown again


def test_watch_appends_when_not_a_terminal_and_survives_errors():
    out = io.StringIO()
    calls = []

    def fetch():
        calls.append(1)
        if len(calls) == 1:
            raise MontagedError("database is locked")
        return RICH

    watch_status(fetch, interval=0.01, out=out, max_updates=2)
    text = out.getvalue()
    assert "\x1b" not in text
    assert "cannot read the status: database is locked" in text and "montaged is running" in text


def test_watch_ends_quietly_on_ctrl_c():
    out = FakeTTY()

    def fetch():
        raise KeyboardInterrupt

    assert watch_status(fetch, out=out) == 0
    assert out.getvalue().endswith("\x1b[?25h")
