"""kill -9 at random moments, again and again, then check that nothing was lost, nothing was done
twice and no reader ever saw a half-written output.

Each iteration starts the daemon, drops a new folder (a new clip, a copy of a clip seen before,
the music and a manifest), and kills the daemon's whole process group (daemon, analysis workers,
render worker and its segment processes) after a random delay within the expected run time, so
kills land during start-up, settling, hashing, analysis, planning, rendering and database
commits. One kill in four hits the daemon alone, as the OOM killer would: its workers must then
end on their own within seconds (montaged/lifeline.py) instead of living on as orphans that hold
a render's work folder or overwrite a newer preview. Work piles up across iterations, so later kills hit a daemon that is resuming. At
the end a last daemon finishes everything and the state is checked.

MONTAGED_CRASH_SEED replays a sequence of delays; MONTAGED_CRASH_ITERATIONS sets the count."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from montaged.store import Store
from tests.helpers import DaemonProcess, wait_until
from tests.reliability.conftest import (
    SOAK,
    check_folder_outputs,
    check_output,
    integrity,
    leftovers,
    planned_duration,
    record,
    rel_config,
    state_leftovers,
    unique_clip,
)

pytestmark = pytest.mark.slow

ITERATIONS = int(os.environ.get("MONTAGED_CRASH_ITERATIONS", 60 if SOAK else 20))
MAX_DELAY = 6.0  # seconds: about the time a folder takes from drop to preview on this box


def phase_of(state: Path, pid: int) -> str:
    """What the daemon was doing just before the kill, from the store (read-only)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state / 'montaged.db'}?mode=ro", uri=True, timeout=5)) as c:
            meta = c.execute("SELECT value FROM meta WHERE key = 'daemon'").fetchone()
            if not meta or json.loads(meta[0]).get("pid") != pid or not json.loads(meta[0]).get("running"):
                return "start-up"  # the rows below are still the last run's
            running = {r[0] for r in c.execute("SELECT kind FROM jobs WHERE state = 'running'")}
            files = {r[0] for r in c.execute("SELECT DISTINCT state FROM files")}
            folders = {r[0] for r in c.execute("SELECT DISTINCT state FROM folders")}
    except sqlite3.Error:
        return "start-up"
    if "render" in running:
        return "rendering"
    if "analyze" in running:
        return "analysis"
    if "pending" in files:
        return "hashing"
    if "queued" in files:
        return "queued"
    if "waiting" in folders or "rendering" in folders:
        return "planning"
    return "settling"


class TornReader(threading.Thread):
    """Opens every preview.* in the output root, over and over, while the daemon is killed and
    restarted; records any file that does not parse or has the wrong duration."""

    def __init__(self, out: Path):
        super().__init__(daemon=True)
        self.out = out
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            if self.out.exists():
                for folder in [p for p in self.out.iterdir() if p.is_dir()]:
                    planned, fps = planned_duration(folder)
                    for p in folder.glob("preview.*"):
                        problem = check_output(p, planned if p.suffix == ".mp4" else None, fps)
                        self.reads += 1
                        if problem:
                            self.problems.append(problem)
            self.stop.wait(0.05)


def test_kill9_loop_loses_nothing_and_redoes_nothing(tmp_path, small_media):
    seed = int(os.environ.get("MONTAGED_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    root, out, state = tmp_path / "ingest", tmp_path / "previews", tmp_path / "state"
    root.mkdir()
    # Two render processes, kept between previews: kills also land on segment processes.
    cfg = rel_config(tmp_path / "montaged.toml", watch=[root], output=out, state=state, preview__render_processes=2)
    media = tmp_path / "new"
    media.mkdir()
    clips = [unique_clip(media / f"n{i}.mp4", seed=1000 + i) for i in range(ITERATIONS)]
    reader = TornReader(out)
    reader.start()
    phases: Counter = Counter()
    orphans: list[int] = []  # process groups of daemons killed alone
    try:
        for i in range(ITERATIONS):
            d = DaemonProcess(cfg, state).start(wait=False)
            folder = root / f"f{i:02d}"
            folder.mkdir()
            shutil.copy(clips[i], folder / "new.mp4")
            shutil.copy(small_media["clips"][i % 2], folder / "seen.mp4")  # same content as in f00/f01
            shutil.copy(small_media["music"], folder / "music.wav")
            (folder / "montage.toml").write_text(f'title = "crash {i}"\nduration = 3\nseed = {i}\n')
            time.sleep(rng.uniform(0.0, MAX_DELAY))
            assert d.proc.poll() is None, f"the daemon died on its own:\n{d.output()}"
            phase = phase_of(state, d.proc.pid)
            if rng.random() < 0.25:
                # The OOM killer's way: the daemon alone. Its workers notice and end themselves.
                orphans.append(d.proc.pid)
                os.kill(d.proc.pid, signal.SIGKILL)
                d.proc.wait(10)
                d.log.close()
                deadline = time.monotonic() + 10
                while (left := live_members(d.proc.pid)) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not left, f"the killed daemon's workers still run 10 s later: {left}"
                phase += " (daemon only)"
            else:
                d.kill9()
            phases[phase] += 1
            # After every kill -9 the database must be consistent (WAL replays on next open).
            # (A kill can land before the very first daemon created it.)
            if (state / "montaged.db").exists():
                assert integrity(state) == ["ok"], f"database corrupt after kill {i + 1}"

        final = DaemonProcess(cfg, state).start()
        try:
            def all_ready():
                folders = final.status()["folders"]
                states = Counter(f["state"] for f in folders)
                if states.get("failed"):
                    bad = [f for f in folders if f["state"] == "failed"]
                    raise AssertionError(f"folder failed after the kills: {bad}")
                return len(folders) == ITERATIONS and states.get("ready") == ITERATIONS
            wait_until(all_ready, 240, interval=0.3, what=f"{ITERATIONS} previews ready")
            # Proxies are made last, in idle time: let the queue drain before the final stop.
            wait_until(lambda: not any(j["state"] in ("queued", "running") for j in final.jobs()), 240, interval=0.5,
                       what="the queue to drain (proxies)")
            jobs = final.jobs()
            doc = final.status()
        finally:
            assert final.stop() == 0
    finally:
        reader.stop.set()
        reader.join(10)
        for pgid in orphans:  # only if the wait above failed
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    # Every file analysed, every content analysed exactly once, nothing charged to a job.
    with Store(state, readonly=True) as s:
        files = s.query("SELECT path, digest, state FROM files WHERE state != 'gone'")
    assert len(files) == 3 * ITERATIONS
    not_analysed = [f["path"] for f in files if f["state"] != "analyzed"]
    assert not not_analysed, f"files lost: {not_analysed}"
    done = Counter(j["digest"] for j in jobs if j["kind"] == "analyze" and j["state"] == "done")
    digests = {f["digest"] for f in files}
    assert set(done) == digests
    twice = {d: n for d, n in done.items() if n != 1}
    assert not twice, f"content analysed more than once: {twice}"
    charged = [j for j in jobs if j["attempts"] or (j["state"] in ("failed", "quarantined") and j["error"] != "superseded by a newer plan")]
    assert not charged, f"a job was charged for the daemon's death: {charged}"
    # One finished render per folder: an interrupted render is redone once, not once per crash.
    renders = Counter(j["path"] for j in jobs if j["kind"] == "render" and j["state"] == "done")
    assert set(renders.values()) == {1}, f"previews rendered more than once: {renders}"
    assert doc["files"]["analyzed"] == 3 * ITERATIONS and not doc["problems"]

    # Every preview whole, with the planned duration; no temporary file anywhere.
    for f in doc["folders"]:
        rel = Path(f["path"]).relative_to(root)
        problems = check_folder_outputs(out / rel)
        assert not problems, problems
        assert (out / rel / "preview.mp4").exists() and (out / rel / "preview.storyboard.jpg").exists()
    assert not leftovers(out), f"temporary files left in the output: {leftovers(out)}"
    assert not state_leftovers(state), f"temporary files left in the state dir: {state_leftovers(state)}"
    assert integrity(state) == ["ok"]
    assert not list(state.glob("montaged.db.corrupt-*")), "the database was set aside as corrupt"
    assert reader.reads > 0
    assert not reader.problems, f"a reader saw a half-written output: {reader.problems[:5]}"

    record("crash: kills survived", f"{ITERATIONS}/{ITERATIONS} (seed {seed})")
    record("crash: kill phases", dict(sorted(phases.items())))
    record("crash: files lost", 0)
    record("crash: contents analysed twice", 0)
    record("crash: torn-output reads", f"0 of {reader.reads}")


def live_members(pgid: int) -> list[str]:
    """The processes of group ``pgid`` that still run (zombies waiting for init do not count)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(f"{stat.parent.name} ({fields[0]})")
    return found


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_temporary_array_of_a_killed_write_is_removed_when_the_job_is_redone(tmp_path):
    """kill -9 in the middle of write_array leaves `.name.npy.XXXX.tmp`; the job is redone after
    the restart and stores the same digest again: the leftover must go."""
    import numpy as np

    from montaged.analysis import Analysis

    digest = "ab" * 20
    with Store(tmp_path / "state") as store:
        folder = store.arrays_dir / digest[:2] / digest
        folder.mkdir(parents=True)
        (folder / ".beats.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY half")
        store.put_features(digest, Analysis(kind="audio", features={"tempo": 120.0}, arrays={"beats": np.arange(4.0)}))
        assert sorted(p.name for p in folder.iterdir()) == ["beats.npy"]
        assert list(store.get_features(digest).arrays["beats"]) == [0.0, 1.0, 2.0, 3.0]


def test_temporary_exports_of_a_killed_render_are_removed_by_the_next_one(tmp_path):
    """kill -9 while the edit lists are written leaves `.preview.edl.json.<pid>.tmp`; the
    render is redone after the restart and must clean up what dead writers left."""
    from montaged.montage.export import remove_stale_temps

    dead = dead_pid()
    names = ["preview.edl.json", "preview.otio", "preview.edl", "preview.storyboard.jpg"]
    for name in names:
        (tmp_path / f".{name}.{dead}.tmp").write_text("half")
    (tmp_path / f".preview.otio.{os.getppid()}.tmp").write_text("a live writer's")
    (tmp_path / "preview.edl.json").write_text("{}")
    remove_stale_temps(tmp_path, names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".preview.otio.{os.getppid()}.tmp", "preview.edl.json"])
