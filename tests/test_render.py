"""Real renders of tiny generated clips and a short track, checked by decoding the result with PyAV."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from montaged.analysis import Analysis
from montaged.errors import RenderError
from montaged.lock import process_exists
from montaged.montage.plan import plan_edit
from montaged.montage.preview import plan_folder, preview_folder, write_outputs
from montaged.montage.render import make_proxy, render
from montaged.synth.music import make_track
from montaged.synth.video import make_clip
from tests.helpers import wait_until

try:
    from montaged.config import PreviewConfig
except ImportError:  # pragma: no cover - until config.py lands
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class PreviewConfig:  # type: ignore[no-redef]
        manifest: str = "montage.toml"
        width: int = 640
        height: int = 360
        fps: int = 30
        duration: float = 60.0
        style: str = "dynamic"
        clip_audio: float = 0.0
        render_processes: int = 0
        crf: int = 23
        preset: str = "veryfast"

FPS = 30


# --- features straight from the generators' truth (the analysis is tested elsewhere) ------------


def clip_analysis(truth, seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    ft = np.asarray(truth.frame_times) - truth.frame_times[0]
    bounds = [0, *truth.cut_frames, truth.n_frames]
    scenes = []
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        scenes.append({"start": float(ft[a]), "end": float(ft[b]) if b < truth.n_frames else float(truth.duration),
                       "start_frame": a, "end_frame": b, "motion": float(rng.random()), "sharpness": 0.6,
                       "brightness": 0.5, "contrast": 0.5, "colorfulness": 0.5,
                       "signature": rng.random(16).tolist(), "best_in": float(ft[a])})
    dw, dh = (truth.height, truth.width) if truth.rotation % 180 else (truth.width, truth.height)
    features = {"duration": truth.duration, "fps": truth.fps, "width": truth.width, "height": truth.height,
                "display_width": dw, "display_height": dh, "rotation": truth.rotation, "sar": 1.0, "scenes": scenes}
    return Analysis("video", features, {"frame_times": ft, "motion": rng.random(len(ft)).astype(np.float32)})


def track_analysis(truth) -> Analysis:
    downbeats = truth.downbeats
    features = {"duration": truth.duration, "tempo": truth.tempo, "beats": truth.beats.tolist(),
                "downbeats": downbeats.tolist(), "phrases": downbeats[::2].tolist(), "beats_per_bar": 4,
                "confidence": 1.0, "energy_hz": 10, "sections": [], "intro_end": 0.0}
    return Analysis("audio", features, {})


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """A folder with four 4 s clips (30 fps, 25 fps, portrait phone clip, VFR with sound) and a
    10 s track at 123 BPM (beats off the frame grid), plus their features."""
    folder = tmp_path_factory.mktemp("hike")
    specs = {
        "a.mp4": dict(fps=30),
        "b.mp4": dict(fps=25),
        "phone.mp4": dict(fps=30, rotation=90, size=(320, 180)),
        "vfr.mkv": dict(fps=30, vfr=True, audio=True),
    }
    truths, analyses = {}, {}
    for i, (name, spec) in enumerate(specs.items()):
        truth = make_clip(str(folder / name), duration=4.0, seed=i + 1, **spec)
        truths[name] = truth
        analyses[folder / name] = clip_analysis(truth, seed=i)
    track = make_track(str(folder / "song.m4a"), bpm=123.0, duration=10.0, seed=3)
    analyses[folder / "song.m4a"] = track_analysis(track)
    return {"folder": folder, "truths": truths, "analyses": analyses, "track": track}


def probe_output(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        pts = [f.pts for f in c.decode(v)]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "codec": v.codec_context.name,
                "audio_codec": a.codec_context.name, "frames": len(pts),
                "video_duration": float((max(pts) - min(pts)) * v.time_base) + 1 / FPS,
                "audio_duration": float(a.duration * a.time_base), "pts_steps": set(np.diff(sorted(pts)).tolist())}
    return info


def decode_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def settings(**kw) -> PreviewConfig:
    base = dict(duration=6.0, render_processes=2)
    base.update(kw)
    return PreviewConfig(**base)


@pytest.fixture(scope="module")
def rendered(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    folder = media["folder"]
    edit = plan_folder(folder, settings(), media["analyses"])
    progress: list[float] = []
    outputs = write_outputs(edit, folder, out, settings(), progress=progress.append)
    return {"edit": edit, "outputs": outputs, "out": out, "progress": progress}


def _numbered_clip(path: Path, n: int, fps: int, size: tuple[int, int]) -> None:
    """Frame i is flat grey 10 + 4 i (readable back after lossy coding), with B-frames and
    1-s GOPs, so a cut's pre-roll holds frames that are skipped."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.options = {"g": "30", "bf": "3", "sc_threshold": "0", "crf": "18"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 10 + 4 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("size", [(320, 180), (1280, 720)])  # 720p: decoded without deblocking
def test_source_frames_are_exact_after_a_skipped_preroll(tmp_path, size):
    from montaged.montage.render import Source

    _numbered_clip(tmp_path / "n.mp4", 50, 30, size)
    src = Source(str(tmp_path / "n.mp4"), threads=2, out_size=(320, 180))
    try:
        for first in (0, 1, 13, 29, 30, 31, 44, 3):  # and back: every cut seeks
            shown = [int(round((f.to_ndarray(format="gray").mean() - 10) / 4))
                     for f in src.frames(first / 30, 5, 30)]
            assert shown == [first + j for j in range(5)], first
    finally:
        src.close()


def test_render_matches_the_plan(media, rendered):
    edit, path = rendered["edit"], rendered["outputs"]["preview"]
    assert path == rendered["out"] / "preview.mp4"
    info = probe_output(path)
    assert (info["width"], info["height"]) == (640, 360)
    assert info["codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["frames"] == round(edit.duration * FPS)
    assert abs(info["video_duration"] - edit.duration) <= 1 / FPS + 1e-6
    assert abs(info["audio_duration"] - info["video_duration"]) <= 0.05
    assert len(info["pts_steps"]) == 1  # constant frame rate
    # +faststart: the index (moov) comes before the media data.
    head = path.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")
    # Every cut on a beat, within one frame.
    beats = media["track"].beats
    for cut in edit.cuts:
        assert min(abs(beats - edit.music_offset - cut.record_in)) <= 1 / FPS
    # Progress rises to 1.0 as segments finish.
    progress = rendered["progress"]
    assert progress[-1] == 1.0 and progress == sorted(progress) and len(progress) >= 3
    # Nothing but the outputs in the folder: temporary files are gone.
    assert sorted(p.name for p in rendered["out"].iterdir()) == sorted(
        ["preview.mp4", "preview.edl.json", "preview.otio", "preview.edl", "preview.fcpxml", "preview.storyboard.jpg"])


def test_every_frame_comes_from_its_scene(media, rendered):
    """Shots of a generated clip have clearly different colours: each output frame's mean colour
    must be nearest to the scene its cut names, so no cut crosses a scene boundary."""
    edit = rendered["edit"]
    means = [f.reshape(-1, 3).mean(axis=0) for f in decode_frames(rendered["outputs"]["preview"])]
    scene_means = {}
    for name, truth in media["truths"].items():
        src = np.asarray([f.reshape(-1, 3).mean(axis=0) for f in decode_frames(truth.path)])
        bounds = [0, *truth.cut_frames, truth.n_frames]
        scene_means[name] = [src[bounds[i]:bounds[i + 1]].mean(axis=0) for i in range(len(bounds) - 1)]
    for cut in edit.cuts:
        a, b = edit.frame_range(cut)
        for j in range(a, b):
            nearest = int(np.argmin([np.linalg.norm(means[j] - m) for m in scene_means[cut.source]]))
            assert nearest == cut.scene, (cut, j)


def test_music_fades_out_over_the_last_bar(rendered):
    edit = rendered["edit"]
    with av.open(str(rendered["outputs"]["preview"])) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    rate = 48000
    rms = lambda a, b: float(np.sqrt(np.mean(audio[:, int(a * rate):int(b * rate)] ** 2)))  # noqa: E731
    before = rms(edit.fade_start - 1.0, edit.fade_start)
    tail = rms(edit.duration - 0.15, edit.duration - 0.02)
    assert before > 0.01
    assert tail < 0.1 * before


def test_portrait_preview_with_rotation_applied(media, tmp_path):
    folder = media["folder"]
    phone = media["truths"]["phone.mp4"]
    clips = [("phone.mp4", media["analyses"][folder / "phone.mp4"].features,
              media["analyses"][folder / "phone.mp4"].arrays),
             ("a.mp4", media["analyses"][folder / "a.mp4"].features, media["analyses"][folder / "a.mp4"].arrays)]
    music = media["analyses"][folder / "song.m4a"]
    edit = plan_edit(clips, ("song.m4a", music.features, music.arrays), duration=4.0, style="dynamic", fps=FPS,
                     width=640, height=360, seed=2, aspect="9:16", folder=str(folder))
    assert (edit.width, edit.height) == (360, 640)
    out = render(edit, tmp_path / "p.mp4", processes=1)
    info = probe_output(out.path)
    assert (info["width"], info["height"]) == (360, 640)
    assert info["frames"] == round(edit.duration * FPS)
    # The phone clip is coded 320x180 with rotation=90 (turn clockwise to display): in a
    # portrait preview it must fill the frame, turned the right way.
    frames = decode_frames(out.path)
    src = decode_frames(phone.path)
    cut = next(c for c in edit.cuts if c.source == "phone.mp4")
    a, _ = edit.frame_range(cut)
    first = int(round(cut.source_in * phone.fps))
    got = frames[a].astype(np.float32)
    from PIL import Image

    def as_output(img):
        return np.asarray(Image.fromarray(img).resize((360, 640), Image.BILINEAR), np.float32)

    right = np.abs(got - as_output(np.rot90(src[first], -1))).mean()
    wrong = np.abs(got - as_output(np.rot90(src[first], 1))).mean()
    assert right < 12 and right < 0.6 * wrong


def test_letterbox_keeps_the_picture_and_fills_the_sides(media, tmp_path):
    folder = media["folder"]
    an = media["analyses"][folder / "phone.mp4"]
    music = media["analyses"][folder / "song.m4a"]
    edit = plan_edit([("phone.mp4", an.features, an.arrays)], ("song.m4a", music.features, music.arrays),
                     duration=2.0, style="dynamic", fps=FPS, width=640, height=360, seed=1, aspect="16:9",
                     folder=str(folder))
    # Work folders of a render that was killed (its pid is gone) are cleaned up by the next one.
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f".l.mp4.{gone.pid}.x1y2.tmp"
    stale.mkdir()
    (stale / "segment000.mp4").write_bytes(b"partial")
    out = render(edit, tmp_path / "l.mp4", processes=1)
    assert not stale.exists()
    frame = decode_frames(out.path)[5].astype(np.float32)
    # A 180x320 portrait picture centred in 640x360: columns 218..421 hold it, the sides a
    # blurred, darker fill (not black, not the sharp picture).
    centre, side = frame[:, 240:400], frame[:, :200]
    assert side.mean() > 3  # filled, not black bars
    assert side.mean() < centre.mean()
    sharp = lambda a: float(np.abs(np.diff(a, axis=1)).mean())  # noqa: E731
    assert sharp(side) < 0.5 * sharp(centre)


def test_pixel_aspect_ratio_is_honoured(tmp_path):
    """An anamorphic 320x180 clip with 4:3 pixels displays as 427x180 (2.37:1): in a 640x360
    preview the picture is 640x270, with blurred bands above and below."""
    folder = tmp_path / "ana"
    folder.mkdir()
    truths = [make_clip(str(folder / f"w{i}.mp4"), duration=3.0, seed=i + 5, sar=(4, 3)) for i in range(2)]
    track = make_track(str(folder / "song.m4a"), bpm=120.0, duration=6.0, seed=1)
    clips = [(f"w{i}.mp4", clip_analysis(t, seed=i).features, clip_analysis(t, seed=i).arrays)
             for i, t in enumerate(truths)]
    music = track_analysis(track)
    edit = plan_edit(clips, ("song.m4a", music.features, music.arrays), duration=2.0, style="dynamic", fps=FPS,
                     width=640, height=360, seed=1, aspect="16:9", folder=str(folder))
    out = render(edit, tmp_path / "w.mp4", processes=1)
    frame = decode_frames(out.path)[10].astype(np.float32).mean(axis=2)
    detail = np.abs(np.diff(frame, axis=1)).mean(axis=1)  # per row: sharp picture vs blurred band
    sharp_rows = np.flatnonzero(detail > 0.5 * detail.max())
    assert abs(len(sharp_rows) - 270) <= 6
    assert abs(sharp_rows.min() - 45) <= 4 and abs(sharp_rows.max() - 314) <= 4


def test_proxies_render_the_same_edit(media, tmp_path):
    folder = media["folder"]
    proxies = {}
    for name in ("a.mp4", "b.mp4", "phone.mp4", "vfr.mkv"):
        proxies[name] = make_proxy(folder / name, tmp_path / f"{name}.proxy.mp4", height=120)
    with av.open(str(proxies["phone.mp4"])) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (68, 120)  # rotation applied
        n_proxy = sum(1 for _ in c.decode(v))
    assert n_proxy == media["truths"]["phone.mp4"].n_frames
    edit = plan_folder(folder, settings(), media["analyses"])
    out = render(edit, tmp_path / "x.mp4", proxies=proxies, processes=1)
    info = probe_output(out.path)
    assert info["frames"] == round(edit.duration * FPS)
    assert (info["width"], info["height"]) == (640, 360)


def test_clip_audio_is_mixed_under_the_music(media, tmp_path):
    folder = media["folder"]
    an = media["analyses"][folder / "vfr.mkv"]
    other = media["analyses"][folder / "a.mp4"]
    music = media["analyses"][folder / "song.m4a"]
    edit = plan_edit([("vfr.mkv", an.features, an.arrays), ("a.mp4", other.features, other.arrays)],
                     ("song.m4a", music.features, music.arrays), duration=3.0, style="dynamic", fps=FPS,
                     width=320, height=180, seed=1, folder=str(folder))

    def audio_of(level):
        out = render(edit, tmp_path / f"m{level}.mp4", processes=1, clip_audio=level)
        with av.open(str(out.path)) as c:
            return np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)

    quiet, mixed = audio_of(0.0), audio_of(1.0)
    n = min(quiet.shape[1], mixed.shape[1])
    cut = next(c for c in edit.cuts if c.source == "vfr.mkv")
    a, b = int(cut.record_in * 48000) + 2000, int(cut.record_out * 48000) - 2000
    other_cut = next(c for c in edit.cuts if c.source == "a.mp4")
    c0, c1 = int(other_cut.record_in * 48000) + 2000, min(n, int(other_cut.record_out * 48000) - 2000)
    assert np.abs(mixed[:, a:b] - quiet[:, a:b]).mean() > 0.01  # the clip's tone is there
    assert np.abs(mixed[:, c0:c1] - quiet[:, c0:c1]).mean() < 0.005  # a.mp4 has no sound


def test_render_processes_are_kept_for_the_next_preview_and_replaced_after_a_failure(media, tmp_path):
    """Renders in two processes reuse the same processes; a render whose segments fail (its
    clips became unreadable) discards them, and the next render starts new ones and works."""
    import shutil

    from montaged.montage import render as render_module

    edit = plan_folder(media["folder"], settings(duration=4.0), media["analyses"])
    render(edit, tmp_path / "1.mp4", processes=2)
    first = set(render_module._pool[1]._processes)
    assert len(first) == 2
    render(edit, tmp_path / "2.mp4", processes=2)
    assert set(render_module._pool[1]._processes) == first

    broken = tmp_path / "broken"
    shutil.copytree(media["folder"], broken)
    for cut in edit.cuts:
        (broken / cut.source).write_bytes(b"\0" * 4096)
    with pytest.raises(RenderError, match="cannot read clip"):
        render(edit, tmp_path / "3.mp4", folder=broken, processes=2)
    assert render_module._pool is None
    assert not (tmp_path / "3.mp4").exists()

    out = render(edit, tmp_path / "4.mp4", processes=2)
    assert probe_output(out.path)["frames"] == out.frames
    second = set(render_module._pool[1]._processes)
    assert not second & first

    # A kept process killed between previews (the OOM killer): the next preview starts new ones.
    victim = next(iter(second))
    os.kill(victim, signal.SIGKILL)
    kept = render_module._pool[1]
    wait_until(lambda: kept._broken, 10, what="the pool to notice its dead process")
    out = render(edit, tmp_path / "5.mp4", processes=2)
    assert probe_output(out.path)["frames"] == out.frames
    assert victim not in set(render_module._pool[1]._processes)


def test_kept_render_processes_end_with_the_process_that_keeps_them(media, tmp_path):
    """The daemon's render worker killed (a job timeout, the daemon killed alone): its kept
    segment processes must not live on as orphans."""
    edit = plan_folder(media["folder"], settings(duration=4.0), media["analyses"])
    (tmp_path / "edit.json").write_text(json.dumps(edit.to_dict()))
    script = textwrap.dedent(f"""
        import json, sys, time
        from montaged.montage import render as r
        from montaged.montage.plan import EditList
        edit = EditList.from_dict(json.load(open({str(tmp_path / "edit.json")!r})))
        r.render(edit, {str(tmp_path / "out.mp4")!r}, folder={str(media["folder"])!r}, processes=2)
        print(" ".join(map(str, r._pool[1]._processes)), flush=True)
        time.sleep(120)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        kept = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(kept) == 2
    finally:
        owner.kill()
        owner.wait(10)

    try:
        wait_until(lambda: not any(process_exists(p) for p in kept), 10, interval=0.05,
                   what="the kept render processes to end after their owner was killed")
    finally:
        for pid in kept:
            if process_exists(pid):  # a zombie counts as ended
                os.kill(pid, signal.SIGKILL)


def test_unwritable_output_is_a_render_error_without_partial_files(media, tmp_path):
    edit = plan_folder(media["folder"], settings(duration=2.0), media["analyses"])
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        # root ignores permission bits: use a read-only mount instead, when allowed.
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
        if res.returncode != 0:
            pytest.skip("running as root without permission to mount a read-only file system")
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(RenderError, match="cannot write.*(Read-only file system|Permission denied)"):
            write_outputs(edit, media["folder"], ro / "sub" if os.geteuid() != 0 else ro, settings(duration=2.0))
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)


def test_disk_full_is_a_render_error_without_partial_files(media, tmp_path):
    """A file size limit makes writes fail with EFBIG the way a full disk fails with ENOSPC."""
    out = tmp_path / "full"
    out.mkdir()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from tests.test_render import clip_analysis, track_analysis, settings
        from montaged.montage.preview import plan_folder, write_outputs
        from montaged.errors import RenderError
        import pickle
        analyses = pickle.loads(Path({str(tmp_path / 'an.pkl')!r}).read_bytes())
        edit = plan_folder(Path({str(media['folder'])!r}), settings(duration=4.0), analyses)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            write_outputs(edit, Path({str(media['folder'])!r}), Path({str(out)!r}), settings(duration=4.0, render_processes=1))
        except RenderError as exc:
            print("RenderError:", exc)
    """)
    import pickle

    (tmp_path / "an.pkl").write_bytes(pickle.dumps(media["analyses"]))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "RenderError: cannot write" in res.stdout, res.stdout + res.stderr
    assert "File too large" in res.stdout
    assert list(out.iterdir()) == []


def test_preview_folder_one_shot(media, tmp_path):
    by_path = dict(media["analyses"])
    calls = []

    def analyze(path):
        calls.append(Path(path).name)
        return by_path[Path(path)]

    (media["folder"] / "montage.toml").write_text('duration = 3\nstyle = "energetic"\nclips = ["*.mp4"]\nseed = 4\n')
    try:
        edit, outputs = preview_folder(media["folder"], tmp_path / "one", settings(render_processes=1), analyze=analyze)
    finally:
        (media["folder"] / "montage.toml").unlink()
    assert sorted(calls) == ["a.mp4", "b.mp4", "phone.mp4", "song.m4a"]
    assert {c.source for c in edit.cuts} <= {"a.mp4", "b.mp4", "phone.mp4"}
    assert edit.seed == 4 and edit.style == "energetic"
    assert set(outputs) == {"preview", "edl_json", "otio", "edl", "fcpxml", "storyboard"}
    assert all(p.is_file() for p in outputs.values())


def test_end_to_end_with_the_real_analysis(tmp_path):
    """Generated media -> analyze_path -> plan -> render -> exports, checked against the
    analysis (beats, scenes) and against the generators' truth (cuts)."""
    from montaged.analysis import analyze_path

    folder = tmp_path / "trip"
    folder.mkdir()
    truths = {f"c{i}.mp4": make_clip(str(folder / f"c{i}.mp4"), duration=4.0, seed=i + 1, fps=25 if i == 1 else 30)
              for i in range(3)}
    make_track(str(folder / "song.m4a"), bpm=123.0, duration=12.0, seed=3)
    (folder / "montage.toml").write_text('title = "Trip"\nduration = 8\n')
    analysed = {}

    def analyze(path):
        analysed[Path(path)] = analyze_path(path)
        return analysed[Path(path)]

    edit, outputs = preview_folder(folder, tmp_path / "out", settings(render_processes=0), analyze=analyze)
    music = analysed[folder / "song.m4a"].features
    assert abs(edit.duration - 8.0) <= 60 / 123.0 * 4 + 1e-6
    for cut in edit.cuts:
        assert abs(music["beats"][edit.first_beat + cut.beat] - edit.music_offset - cut.record_in) <= 1 / FPS
        scene = analysed[folder / cut.source].features["scenes"][cut.scene]
        assert scene["start"] - 1e-6 <= cut.source_in and cut.source_out <= scene["end"] + 1e-6
        # The analysis found the true cuts, so the segment also stays inside a true shot.
        truth = truths[cut.source]
        cut_times = [0.0, *truth.cut_times, truth.duration]
        shot = max(i for i, t in enumerate(cut_times) if t <= cut.source_in + 1e-6)
        assert cut.source_out <= cut_times[shot + 1] + 1e-6
    info = probe_output(outputs["preview"])
    assert info["frames"] == round(edit.duration * FPS)
    assert abs(info["audio_duration"] - info["video_duration"]) <= 0.05
    assert json.loads(outputs["edl_json"].read_text())["title"] == "Trip"
