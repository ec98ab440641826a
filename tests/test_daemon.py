"""The daemon's core, end to end: a real `montaged run` subprocess, real watchdog observers, real
copies made the way real tools make them, real signals. Every file must be analysed exactly once
and never while it is incomplete."""

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from montaged.digest import file_digest
from montaged.store import Store
from tests.helpers import DaemonProcess, cli, need_tool, wait_until, write_config

pytestmark = pytest.mark.slow


def analysed_paths(daemon) -> dict[str, str]:
    with Store(daemon.state, readonly=True) as s:
        return {r["path"]: r["digest"] for r in s.query("SELECT path, digest FROM files WHERE state = 'analyzed'")}


def done_jobs_per_digest(daemon) -> Counter:
    return Counter(j["digest"] for j in daemon.jobs("done") if j["kind"] == "analyze")


def wait_analysed(daemon, paths, timeout=90):
    want = {str(p) for p in paths}
    return wait_until(lambda: want <= set(analysed_paths(daemon)), timeout, what=f"{len(want)} files analysed")


def chunked_copy(src: Path, dst: Path, pause: float, chunks: int = 4):
    data = src.read_bytes()
    step = len(data) // chunks + 1
    with open(dst, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            time.sleep(pause)


@pytest.fixture
def rsync():
    """The rsync binary. Listed before ``daemon`` in a test's arguments, so a missing rsync skips
    the test before a daemon is started for nothing."""
    return need_tool("rsync")


def test_copy_methods_each_analysed_exactly_once(rsync, daemon, layout, tracks, tmp_path):
    root = layout["root"]
    dest = {}
    # cp
    dest["cp"] = root / "cp.wav"
    subprocess.run(["cp", str(tracks[0]), str(dest["cp"])], check=True)
    # chunked writes with pauses shorter than settle_seconds, one file handle
    dest["chunks"] = root / "chunks.wav"
    chunked_copy(tracks[1], dest["chunks"], pause=0.2)
    # browser style: write x.part, then rename
    part = root / "download.wav.part"
    chunked_copy(tracks[2], part, pause=0.1)
    dest["part"] = root / "download.wav"
    os.rename(part, dest["part"])
    # mv from outside the tree
    outside = tmp_path / "outside.wav"
    shutil.copy(tracks[3], outside)
    dest["mv"] = root / "moved-in.wav"
    subprocess.run(["mv", str(outside), str(dest["mv"])], check=True)
    # rsync (temp file + rename) and rsync --inplace
    (root / "rsync").mkdir()
    dest["rsync"] = root / "rsync" / "r.wav"
    subprocess.run([rsync, str(tracks[4]), str(dest["rsync"])], check=True)
    dest["inplace"] = root / "rsync" / "inplace.wav"
    subprocess.run([rsync, "--inplace", str(tracks[5]), str(dest["inplace"])], check=True)
    wait_analysed(daemon, dest.values())
    paths = analysed_paths(daemon)
    for p in dest.values():
        assert paths[str(p)] == file_digest(str(p)), f"{p} analysed with a digest that is not its final content"
    counts = done_jobs_per_digest(daemon)
    assert sorted(counts.values()) == [1] * len(dest)
    assert len(daemon.jobs()) == len(dest), "a job was created for an incomplete file"
    # touch an unchanged file: no new job
    os.utime(dest["cp"])
    time.sleep(2.0)
    assert len(daemon.jobs()) == len(dest)
    assert not list(root.rglob(".*.tmp"))


def test_renames_moves_copies_and_deletes(daemon, layout, tracks):
    root = layout["root"]
    a = root / "a.wav"
    shutil.copy(tracks[0], a)
    wait_analysed(daemon, [a])
    # rename in place, move into a new folder: same content, no new analysis
    os.rename(a, root / "b.wav")
    (root / "trip").mkdir()
    os.rename(root / "b.wav", root / "trip" / "c.wav")
    # an identical copy elsewhere: known content, no new analysis
    shutil.copy(root / "trip" / "c.wav", root / "copy.wav")
    wait_analysed(daemon, [root / "trip" / "c.wav", root / "copy.wav"])
    assert len(daemon.jobs()) == 1
    # a moved folder follows
    os.rename(root / "trip", root / "trip2")
    wait_analysed(daemon, [root / "trip2" / "c.wav"])
    # deletion: gone; features kept while the copy still refers to them
    os.unlink(root / "trip2" / "c.wav")
    wait_until(lambda: str(root / "trip2" / "c.wav") not in analysed_paths(daemon), 20, what="deletion noticed")
    with Store(daemon.state, readonly=True) as s:
        assert s.query_one("SELECT state FROM files WHERE path = ?", (str(root / "trip2" / "c.wav"),))[0] == "gone"
        assert s.query_one("SELECT COUNT(*) FROM features")[0] == 1
    os.unlink(root / "copy.wav")
    def released():
        with Store(daemon.state, readonly=True) as s:
            return s.query_one("SELECT COUNT(*) FROM features")[0] == 0
    wait_until(released, 20, what="features released")
    assert len(daemon.jobs()) == 1


def test_modified_file_is_reanalysed_and_replaced(daemon, layout, tracks):
    p = layout["root"] / "grow.wav"
    shutil.copy(tracks[0], p)
    wait_analysed(daemon, [p])
    first = analysed_paths(daemon)[str(p)]
    shutil.copy(tracks[1], p)  # new content under the same name
    wait_until(lambda: analysed_paths(daemon).get(str(p)) not in (None, first), 60, what="re-analysis")
    assert analysed_paths(daemon)[str(p)] == file_digest(str(p))
    assert len(done_jobs_per_digest(daemon)) == 2


def test_bad_inputs_get_clear_errors_and_the_rest_goes_on(daemon, layout, tracks):
    root = layout["root"]
    (root / "zero.wav").write_bytes(b"")
    (root / "random.mp4").write_bytes(os.urandom(50_000))
    (root / "dir.mp4").mkdir()  # a folder named like media
    unreadable = root / "secret.wav"
    shutil.copy(tracks[0], unreadable)
    unreadable.chmod(0)
    (root / "with space é.wav").write_bytes(tracks[1].read_bytes())
    raw = os.fsencode(str(root)) + b"/latin1-\xe9.wav"
    with open(raw, "wb") as fh:
        fh.write(tracks[2].read_bytes())
    (root / "notes.txt").write_text("not media, never queued")
    good = root / "good.wav"
    shutil.copy(tracks[3], good)

    def settled():
        doc = daemon.status()
        return doc["files"]["analyzed"] >= 3 and doc["files"]["failed"] >= 2 and not doc["files"]["queued"] and not doc["files"]["running"] and not doc["files"]["pending"]
    doc = wait_until(settled, 60, what="every input in a final state") and daemon.status()
    problems = {Path(p["path"]).name: p["error"] for p in doc["problems"]}
    assert "not a media file" in problems["random.mp4"]
    assert "zero.wav" in problems
    analysed = {Path(p).name for p in analysed_paths(daemon)}
    assert {"good.wav", "with space é.wav", "latin1-\\xe9.wav"} <= analysed
    if os.geteuid() != 0:  # root reads anything
        assert "permission denied" in problems["secret.wav"].lower()
    assert "notes.txt" not in problems and "dir.mp4" not in problems
    assert daemon.proc.poll() is None


def test_kill9_during_work_then_restart_finishes_everything_once(layout, tracks):
    root = layout["root"]
    d = DaemonProcess(layout["config"], layout["state"]).start()
    for i, t in enumerate(tracks):
        shutil.copy(t, root / f"t{i}.wav")
    wait_until(lambda: d.jobs("running") or d.jobs("done"), 60, what="work started")
    d.kill9()
    d2 = DaemonProcess(layout["config"], layout["state"]).start()
    try:
        wait_analysed(d2, [root / f"t{i}.wav" for i in range(len(tracks))])
        assert sorted(done_jobs_per_digest(d2).values()) == [1] * len(tracks)
        with Store(layout["state"], readonly=True) as s:
            assert s.integrity_ok()
    finally:
        d2.stop()


def test_worker_that_dies_is_retried_then_quarantined_others_finish(daemon, layout, tracks):
    root = layout["root"]
    shutil.copy(tracks[0], root / "__exit__boom.wav")
    for i in (1, 2, 3):
        shutil.copy(tracks[i], root / f"ok{i}.wav")
    wait_analysed(daemon, [root / f"ok{i}.wav" for i in (1, 2, 3)])
    bad = wait_until(lambda: daemon.jobs("quarantined"), 90, what="quarantine")
    assert bad[0]["attempts"] == 3
    assert "exited with status 1" in bad[0]["error"]
    assert all(j["attempts"] == 0 for j in daemon.jobs("done"))
    doc = daemon.status()
    assert any("__exit__boom.wav" in p["path"] and p["attempts"] == 3 for p in doc["problems"])
    # retry puts it back (it will fail again, but the command works and says so)
    r = cli("retry", "--failed", config=layout["config"])
    assert r.returncode == 0 and "requeued 1" in r.stdout


def test_job_timeout_kills_the_worker(layout, tracks):
    cfg = write_config(layout["config"], watch=[layout["root"]], output=layout["out"], state=layout["state"],
                       extra="")
    # 6 s: far beyond fine.wav's analysis, short enough for the test (the hook hangs for an hour)
    text = cfg.read_text().replace("job_timeout = 120", "job_timeout = 6\nmax_attempts = 1")
    cfg.write_text(text)
    with DaemonProcess(cfg, layout["state"]) as d:
        shutil.copy(tracks[0], layout["root"] / "__hang__.wav")
        shutil.copy(tracks[1], layout["root"] / "fine.wav")
        bad = wait_until(lambda: d.jobs("quarantined"), 60, what="timeout")
        assert len(bad) == 1 and "__hang__" in bad[0]["path"] and "timed out after 6s" in bad[0]["error"]
        wait_analysed(d, [layout["root"] / "fine.wav"])


def test_sigterm_during_work_exits_0_and_restart_resumes(layout, tracks):
    root = layout["root"]
    d = DaemonProcess(layout["config"], layout["state"]).start()
    for i, t in enumerate(tracks):
        shutil.copy(t, root / f"t{i}.wav")
    wait_until(lambda: d.jobs("running"), 60, what="a running job")
    started = time.monotonic()
    assert d.stop(timeout=30) == 0
    assert time.monotonic() - started < 25
    d2 = DaemonProcess(layout["config"], layout["state"]).start()
    try:
        wait_analysed(d2, [root / f"t{i}.wav" for i in range(len(tracks))])
        assert sorted(done_jobs_per_digest(d2).values()) == [1] * len(tracks)
    finally:
        d2.stop()


def test_second_daemon_on_the_same_state_is_refused(daemon, layout):
    r = cli("run", config=layout["config"], timeout=60)
    assert r.returncode == 2
    assert "already running" in r.stderr


def test_changes_while_down_are_reconciled(layout, tracks):
    root = layout["root"]
    shutil.copy(tracks[0], root / "keep.wav")
    shutil.copy(tracks[1], root / "delete-me.wav")
    shutil.copy(tracks[2], root / "move-me.wav")
    with DaemonProcess(layout["config"], layout["state"]) as d:
        wait_analysed(d, [root / "keep.wav", root / "delete-me.wav", root / "move-me.wav"])
    os.unlink(root / "delete-me.wav")
    (root / "sub").mkdir()
    os.rename(root / "move-me.wav", root / "sub" / "moved.wav")
    shutil.copy(tracks[3], root / "new.wav")
    with DaemonProcess(layout["config"], layout["state"]) as d:
        wait_analysed(d, [root / "keep.wav", root / "sub" / "moved.wav", root / "new.wav"])
        with Store(layout["state"], readonly=True) as s:
            row = s.query_one("SELECT state FROM files WHERE path = ?", (str(root / "delete-me.wav"),))
            assert row is None or row[0] == "gone"  # gone, then forgotten after forget_after
        assert d.status()["files"]["analyzed"] == 3
        assert len(d.jobs()) == 4  # only new.wav was analysed after the restart


def test_offline_root_keeps_its_files_and_comes_back(tmp_path, tracks):
    root = tmp_path / "nas"
    root.mkdir()
    cfg = write_config(tmp_path / "c.toml", watch=[root], output=tmp_path / "out", state=tmp_path / "state")
    shutil.copy(tracks[0], root / "a.wav")
    with DaemonProcess(cfg, tmp_path / "state") as d:
        wait_analysed(d, [root / "a.wav"])
    os.rename(root, tmp_path / "nas-unmounted")
    with DaemonProcess(cfg, tmp_path / "state") as d:
        doc = d.status()
        [r] = doc["daemon"]["roots"]
        assert r["online"] is False and "does not exist" in r["error"]
        assert doc["files"]["analyzed"] == 1  # not marked deleted
        os.rename(tmp_path / "nas-unmounted", root)
        shutil.copy(tracks[1], root / "b.wav")
        wait_analysed(d, [root / "a.wav", root / "b.wav"], timeout=60)
        assert d.status()["daemon"]["roots"][0]["online"] is True


def test_sighup_picks_up_a_new_watch_root(layout, tracks, tmp_path):
    second = tmp_path / "second"
    second.mkdir()
    with DaemonProcess(layout["config"], layout["state"]) as d:
        text = layout["config"].read_text().replace(f'watch = ["{layout["root"]}"]', f'watch = ["{layout["root"]}", "{second}"]')
        layout["config"].write_text(text)
        d.signal(signal.SIGHUP)
        wait_until(lambda: len(d.status()["daemon"]["roots"]) == 2, 20, what="second root watched")
        shutil.copy(tracks[0], second / "x.wav")
        wait_analysed(d, [second / "x.wav"])


def test_fifty_files_copied_with_mixed_methods(rsync, daemon, layout, tmp_path):
    """Issue 3's acceptance: 50 files copied in with mixed methods end as 50 analysed files and
    exactly 50 analysis jobs done."""
    from montaged.synth.music import make_track

    src = tmp_path / "src"
    src.mkdir()
    files = [Path(make_track(str(src / f"s{i:02d}.wav"), bpm=80 + i, duration=1.5, seed=100 + i, channels=1, sample_rate=8000).path)
             for i in range(50)]
    root = layout["root"]
    (root / "rsync").mkdir()
    for i, f in enumerate(files):
        method = i % 5
        dest = root / f.name
        if method == 0:
            subprocess.run(["cp", str(f), str(dest)], check=True)
        elif method == 1:
            chunked_copy(f, dest, pause=0.02, chunks=3)
        elif method == 2:
            shutil.copy(f, root / (f.name + ".part"))
            os.rename(root / (f.name + ".part"), dest)
        elif method == 3:
            subprocess.run([rsync, str(f), str(root / "rsync" / f.name)], check=True)
        else:
            shutil.move(str(f), str(dest))
    r = wait_until(lambda: (lambda doc: doc if doc["files"]["analyzed"] == 50 else None)(daemon.status()), 180, what="50 analysed")
    assert r["files"]["failed"] == 0 and r["files"]["quarantined"] == 0
    done = cli("jobs", "--state", "done", "--json", config=layout["config"])
    import json
    assert len([j for j in json.loads(done.stdout) if j["kind"] == "analyze"]) == 50
    assert len(daemon.jobs()) == 50
