"""Manifest -> preview through the real daemon: folder states, re-renders, broken manifests, and
the outputs on disk checked with PyAV."""

import json
import os
import shutil
import time
from pathlib import Path

import av
import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    folder = tmp_path_factory.mktemp("media")
    clips = []
    for i in range(4):
        path = folder / f"clip{i}.mp4"
        make_clip(str(path), duration=4.0, fps=30, size=(320, 180), cuts=[40, 80], gop=30, seed=i + 1)
        clips.append(path)
    music = folder / "music.wav"
    make_track(str(music), bpm=120, duration=14.0, seed=3, channels=1, sample_rate=22050)
    return clips, music


def folder_state(daemon, folder):
    for f in daemon.status()["folders"]:
        if f["path"] == str(folder):
            return f
    return None


def wait_folder(daemon, folder, states=("ready", "failed"), timeout=120, after=None):
    def done():
        f = folder_state(daemon, folder)
        if f and f["state"] in states and (after is None or f["updated"] > after):
            return f
        return None
    return wait_until(done, timeout, interval=0.2, what=f"{folder} in {states}")


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        vdur = float(v.duration * v.time_base) if v.duration else float(c.duration / 1e6)
        adur = float(a.duration * a.time_base) if a.duration else vdur
        return {"width": v.codec_context.width, "height": v.codec_context.height, "video": vdur, "audio": adur,
                "vcodec": v.codec_context.name, "acodec": a.codec_context.name}


def fill(folder, media, n=3):
    clips, music = media
    folder.mkdir(parents=True, exist_ok=True)
    for c in clips[:n]:
        shutil.copy(c, folder / c.name)
    shutil.copy(music, folder / music.name)


def test_warm_preview_then_rerender_on_change(daemon, layout, media):
    folder = layout["root"] / "hike"
    fill(folder, media)
    wait_until(lambda: daemon.status()["files"]["analyzed"] == 4, 120, what="4 files analysed")
    # Render proxies are made after analysis, in idle time, and the render uses them.
    wait_until(lambda: [j["kind"] for j in daemon.jobs("done")].count("proxy") == 3, 180, what="3 proxies")
    (folder / "montage.toml").write_text('title = "Hike"\nduration = 6\nseed = 1\n')
    ready = wait_folder(daemon, folder)
    assert ready["state"] == "ready", ready
    out = layout["out"] / "hike"
    preview = out / "preview.mp4"
    assert ready["preview"] == str(preview)
    for name in ("preview.edl.json", "preview.otio", "preview.edl", "preview.fcpxml", "preview.storyboard.jpg"):
        assert (out / name).stat().st_size > 0, name
    edl = json.loads((out / "preview.edl.json").read_text())
    info = probe(preview)
    assert (info["width"], info["height"]) == (640, 360) and info["vcodec"] == "h264" and info["acodec"] == "aac"
    assert abs(info["video"] - edl["duration"]) <= 1.0 / edl["fps"] + 1e-6
    assert abs(info["audio"] - info["video"]) < 0.05
    assert edl["cuts"] and all(c["source"].startswith("clip") for c in edl["cuts"])
    assert [j["kind"] for j in daemon.jobs("done")].count("render") == 1
    assert "(3 of 3 clips from proxies)" in daemon.output()
    assert not list(out.glob(".*tmp*"))

    # A changed manifest re-renders (debounced); the old preview stays until replaced.
    before = ready["updated"]
    written = (out / "preview.edl.json").stat().st_mtime_ns
    time.sleep(1.1)  # `updated` has one-second resolution
    (folder / "montage.toml").write_text('title = "Hike"\nduration = 6\nseed = 2\n')
    again = wait_folder(daemon, folder, states=("ready", "failed"), after=before)
    assert again["state"] == "ready"
    assert (out / "preview.edl.json").stat().st_mtime_ns > written
    # A clip added to a ready folder re-renders too.
    before = again["updated"]
    time.sleep(1.1)
    shutil.copy(media[0][3], folder / "late.mp4")
    third = wait_folder(daemon, folder, after=before)
    assert third["state"] == "ready"
    assert [j["kind"] for j in daemon.jobs("done")].count("render") == 3
    assert third["files"] == 5 and third["analyzed"] == 5


def test_cold_manifest_waits_for_analysis(daemon, layout, media):
    folder = layout["root"] / "cold"
    folder.mkdir()
    (folder / "montage.toml").write_text("duration = 5\n")  # before any clip
    f = wait_until(lambda: folder_state(daemon, folder), 30, what="folder known")
    assert f["state"] in ("waiting", "failed")
    fill(folder, media, n=2)
    ready = wait_folder(daemon, folder, states=("ready",), timeout=180)
    assert Path(ready["preview"]).exists()


def test_broken_manifest_fails_with_the_key_and_others_are_served(daemon, layout, media):
    bad, good = layout["root"] / "bad", layout["root"] / "good"
    fill(bad, media, n=2)
    fill(good, media, n=2)
    wait_until(lambda: daemon.status()["files"]["analyzed"] == 6, 120, what="analysed")
    (bad / "montage.toml").write_text('durration = 5\n')
    (good / "montage.toml").write_text('duration = 5\n')
    failed = wait_folder(daemon, bad, states=("failed",))
    assert "durration" in failed["error"]
    assert wait_folder(daemon, good)["state"] == "ready"
    assert not (layout["out"] / "bad").exists()
    # Fixing it brings the folder back.
    (bad / "montage.toml").write_text('duration = 5\n')
    assert wait_folder(daemon, bad, states=("ready",))["state"] == "ready"
    # Removing the manifest stops tracking the folder; its outputs stay.
    os.unlink(bad / "montage.toml")
    wait_until(lambda: folder_state(daemon, bad) is None, 30, what="folder forgotten")
    assert (layout["out"] / "bad" / "preview.mp4").exists()
    assert daemon.proc.poll() is None


def test_a_proxy_that_cannot_be_made_is_a_problem_and_the_preview_still_renders(daemon, layout, media):
    """The test hook makes the proxy job of `__noproxy__*` fail (as a clip FFmpeg analyses but
    cannot re-encode would). Nothing is lost: the preview reads the original. `status` says why
    previews with that clip are slower, and `retry --failed` puts the proxy job back."""
    from tests.helpers import cli

    clips, music = media
    folder = layout["root"] / "noproxy"
    folder.mkdir()
    shutil.copy(clips[0], folder / "__noproxy__clip.mp4")
    shutil.copy(clips[1], folder / "fine.mp4")
    shutil.copy(music, folder / music.name)
    wait_until(lambda: [j for j in daemon.jobs() if j["kind"] == "proxy" and j["state"] == "failed"], 120,
               what="the proxy job to fail")
    (folder / "montage.toml").write_text("duration = 4\n")
    ready = wait_folder(daemon, folder, states=("ready",))
    assert probe(ready["preview"])["video"] > 3.9
    doc = daemon.status()
    [problem] = doc["problems"]
    assert problem["kind"] == "proxy" and problem["path"].endswith("__noproxy__clip.mp4")
    assert problem["error"].startswith("render proxy not made (previews read the original): cannot decode")
    assert doc["files"]["analyzed"] == 3 and not doc["files"].get("failed")
    r = cli("retry", "--failed", config=layout["config"])
    assert r.returncode == 0 and "requeued 1" in r.stdout, r.stdout + r.stderr
    wait_until(lambda: [j for j in daemon.jobs() if j["kind"] == "proxy" and j["state"] == "failed"], 60,
               what="the retried proxy job to fail again")
