"""Shared pieces of the reliability suite: tiny generated media, a fast daemon configuration,
checks that an output file is whole, mount helpers for disk faults, and the figures the suite
reports at the end of the run (kills survived, bad inputs tried, files lost, peak RSS).

`make soak` sets MONTAGED_SOAK=1: the long variants (more kills, 10,000 files, more fuzzing)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOAK = bool(os.environ.get("MONTAGED_SOAK"))

# The figures of the run, printed in the terminal summary and kept in pytest's cache
# (`.pytest_cache/v/montaged/reliability`) for the README.
FIGURES: dict[str, object] = {}


def record(key: str, value) -> None:
    FIGURES[key] = value


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("montaged reliability figures")
    for key, value in FIGURES.items():
        terminalreporter.write_line(f"{key}: {value}")
    if getattr(config, "cache", None) is not None:
        config.cache.set("montaged/reliability", FIGURES)


# ------------------------------------------------------------------------------------------------
# Configuration

DEFAULTS = {
    "watch.settle_seconds": 0.2,
    "watch.poll_interval": 0.5,
    "workers.processes": 2,
    "workers.retry_backoff": 0.2,
    "workers.job_timeout": 60,
    "workers.max_attempts": 3,
    "preview.width": 160,
    "preview.height": 90,
    "preview.render_processes": 1,
    "preview.debounce_seconds": 0.1,
    "daemon.allow_root": True,
    "daemon.stop_timeout": 10,
    "daemon.forget_after": 600,
}


def rel_config(path: Path, *, watch, output: Path, state: Path, **overrides) -> Path:
    """A daemon configuration tuned for tests (small previews, short settle). ``overrides`` use
    ``section__key=value`` (e.g. ``workers__max_attempts=2``); ``None`` drops a default."""
    values = dict(DEFAULTS)
    for name, value in overrides.items():
        key = name.replace("__", ".", 1)
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    sections: dict[str, dict] = {"paths": {"watch": [str(w) for w in watch], "output": str(output), "state": str(state)}}
    for key, value in values.items():
        section, name = key.split(".", 1)
        sections.setdefault(section, {})[name] = value
    lines = []
    for section, items in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in items.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def rlayout(tmp_path):
    """Watch root, output root, state directory and a fast config (rewrite it with rel_config)."""
    root, out, state = tmp_path / "ingest", tmp_path / "previews", tmp_path / "state"
    root.mkdir()
    cfg = rel_config(tmp_path / "montaged.toml", watch=[root], output=out, state=state)
    return {"root": root, "out": out, "state": state, "config": cfg, "tmp": tmp_path}


# ------------------------------------------------------------------------------------------------
# Media


@pytest.fixture(scope="session")
def small_media(tmp_path_factory):
    """Tiny valid inputs: six distinct clips (2 s, 160x90, two cuts) and a 6 s music track."""
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    folder = tmp_path_factory.mktemp("relmedia")
    clips = []
    for i in range(6):
        path = folder / f"clip{i}.mp4"
        make_clip(str(path), duration=2.0, fps=15, size=(160, 90), cuts=[10, 20], gop=15, seed=100 + i)
        clips.append(path)
    music = folder / "music.wav"
    make_track(str(music), bpm=120, duration=6.0, seed=7, channels=1, sample_rate=22050)
    return {"clips": clips, "music": music, "dir": folder}


def unique_clip(path: Path, seed: int) -> Path:
    from montaged.synth.video import make_clip

    make_clip(str(path), duration=2.0, fps=15, size=(160, 90), cuts=[10, 20], gop=15, seed=seed)
    return path


# ------------------------------------------------------------------------------------------------
# Output checks


def mp4_duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        if v.duration:
            return float(v.duration * v.time_base)
        return float(c.duration / 1e6)


def check_output(path: Path, planned: float | None = None, fps: int = 30) -> str | None:
    """None when ``path`` is a whole output file, else what is wrong with it."""
    name = path.name
    try:
        if name.endswith(".mp4"):
            duration = mp4_duration(path)
            if planned is not None and abs(duration - planned) > 1.0 / fps + 1e-6:
                return f"{path}: {duration:.3f} s, planned {planned:.3f} s"
        elif name.endswith(".json") or name.endswith(".otio"):
            json.loads(path.read_text())
        elif name.endswith(".jpg"):
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        elif name.endswith(".edl"):
            text = path.read_text()
            if not text.startswith("TITLE:") or not text.endswith("\n"):
                return f"{path}: not a whole CMX 3600 list"
    except FileNotFoundError:
        return None  # not there (yet): nothing half-written was seen
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        return f"{path}: {type(exc).__name__}: {exc}"
    return None


def planned_duration(out_dir: Path) -> tuple[float | None, int]:
    try:
        edl = json.loads((out_dir / "preview.edl.json").read_text())
    except (OSError, ValueError):
        return None, 30
    return float(edl["duration"]), int(edl["fps"])


def check_folder_outputs(out_dir: Path) -> list[str]:
    planned, fps = planned_duration(out_dir)
    problems = []
    for p in sorted(out_dir.glob("preview.*")):
        problem = check_output(p, planned if p.suffix == ".mp4" else None, fps)
        if problem:
            problems.append(problem)
    return problems


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (hidden names, ``*.tmp``) under ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name)


STATE_NAMES = {"montaged.db", "montaged.db-wal", "montaged.db-shm", "montaged.lock", "arrays"}


def state_leftovers(state: Path) -> list[str]:
    """Anything in the state directory that is not the database, the lock, the logs, a stored
    feature array or a render proxy."""
    bad = []
    for p in state.iterdir():
        if p.name in STATE_NAMES or p.name.startswith("montaged.log"):
            continue
        bad.append(str(p))
    for p in (state / "arrays").rglob("*"):
        if p.is_file() and ((p.suffix != ".npy" and p.name != "proxy.mp4") or p.name.startswith(".")):
            bad.append(str(p))
    return sorted(bad)


def integrity(state: Path) -> list[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{state / 'montaged.db'}?mode=ro", uri=True, timeout=30)) as conn:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]


# ------------------------------------------------------------------------------------------------
# Mounts (disk faults): real file systems, mounted when running as root.


def can_mount() -> str | None:
    """None when tmpfs mounts work here, else why not."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    if not shutil.which("mount"):
        return "no mount command"
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m", readonly: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)
