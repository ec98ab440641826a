"""Video analysis on real encoded clips: exact cut frames, agreement with PySceneDetect, the
metric itself, timestamps, orientation and damaged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenedetect import ContentDetector, FrameTimecode, detect
from scenedetect.detector import FlashFilter

from montaged.analysis import analyze_path
from montaged.analysis import video as va
from montaged.errors import MediaError
from montaged.media import probe
from montaged.media import video as mv
from montaged.synth.video import make_clip


def cuts_of(analysis) -> list[int]:
    return [s["start_frame"] for s in analysis.features["scenes"][1:]]


def analyse(path, strategy="auto", progress=None):
    return va.analyze_video(str(path), probe(str(path)), progress or (lambda f: None), strategy=strategy)


def pyscenedetect_cuts(path) -> list[int]:
    return [int(s.frame_num) for s, _ in detect(str(path), ContentDetector())[1:]]


# ---------------------------------------------------------------------------------------------
# The metric, against OpenCV and PySceneDetect's own code


def test_hsv_is_bit_exact_with_opencv():
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (4, 60, 70, 3), dtype=np.uint8)
    bgr[0, :10] = bgr[0, :10, :, :1]  # greys: S = 0, H = 0
    bgr[1, :5, :, :] = 0  # black: V = 0
    ours = va.hsv_planes(np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)))
    for i in range(len(bgr)):
        ref = cv2.cvtColor(bgr[i], cv2.COLOR_BGR2HSV)
        assert np.array_equal(ours[i].reshape(3, 60, 70), ref.transpose(2, 0, 1))


def test_content_score_matches_content_detector():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (36, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    det = ContentDetector()
    det._calculate_frame_score(FrameTimecode(0, 30.0), a)
    expected = det._calculate_frame_score(FrameTimecode(1, 30.0), b)
    hsv = va.hsv_planes(np.stack([a, b]).transpose(0, 3, 1, 2).copy())
    assert va.content_scores(hsv[:1], hsv[1:])[0] == pytest.approx(expected, abs=1e-9)


def test_small_size_is_pyscenedetects_downscale():
    assert mv.small_size(1920, 1080) == (256, 144)
    assert mv.small_size(1080, 1920) == (144, 256)
    assert mv.small_size(320, 180) == (256, 144)
    assert mv.small_size(200, 100) == (200, 100)


def _reference_flash_filter(above: set[int], n: int, length: int = 15) -> list[int]:
    """PySceneDetect's FlashFilter fed every frame, as ContentDetector does."""
    flt = FlashFilter(mode=FlashFilter.Mode.MERGE, length=length)
    cuts = []
    for i in range(n):
        cuts += [int(t.frame_num) for t in flt.filter(FrameTimecode(i, 30.0), i in above)]
    return cuts


@settings(max_examples=120, deadline=None)
@given(st.sets(st.integers(1, 199), max_size=40), st.integers(2, 200))
def test_flash_filter_matches_pyscenedetect(above, n):
    assert va.flash_filter_merge(sorted(above), n) == _reference_flash_filter(above, n)


# ---------------------------------------------------------------------------------------------
# Exact cuts on encoded clips, every GOP layout, both strategies, and PySceneDetect agreement

LAYOUTS = {
    # name: make_clip arguments
    "gop30-cuts-on-keyframes": dict(duration=3.0, gop=30),  # cuts 30 and 60 = regular keyframes
    "gop30-mid-gop": dict(duration=4.0, gop=30, cuts=[37, 75]),
    "gop30-after-keyframe": dict(duration=4.0, gop=30, cuts=[31, 91], scenecut=False),
    "gop30-before-keyframe": dict(duration=4.0, gop=30, cuts=[29, 89], scenecut=False),
    "gop30-on-fixed-keyframes": dict(duration=4.0, gop=30, cuts=[30, 90], scenecut=False),  # no spike
    "gop250-three-cuts-one-gop": dict(duration=6.0, gop=250, cuts=[40, 100, 160], scenecut=False),
    "gop250-cut-and-back": dict(duration=5.0, gop=250, cuts=[60, 90], looks=[0, 1, 0], scenecut=False),
    "gop250-scenecut": dict(duration=6.0, gop=250, cuts=[45, 80, 150]),
    "no-cut": dict(duration=3.0, gop=30, cuts=[]),
    "no-bframes": dict(duration=4.0, gop=60, cuts=[50, 83], bframes=False, scenecut=False),
    "noisy": dict(duration=4.0, gop=30, cuts=[44, 97], noise=0.03, scenecut=False),
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    d = tmp_path_factory.mktemp("layouts")
    clips = {}
    for i, (name, kw) in enumerate(LAYOUTS.items()):
        clips[name] = make_clip(d / f"{name}.mp4", seed=i, **kw)
    return clips


@pytest.mark.parametrize("strategy", ["sparse", "full"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_exact_cut_frames(layouts, name, strategy):
    truth = layouts[name]
    analysis = analyse(truth.path, strategy)
    assert cuts_of(analysis) == truth.cut_frames
    scenes = analysis.features["scenes"]
    assert scenes[0]["start_frame"] == 0 and scenes[-1]["end_frame"] == truth.n_frames
    for a, b in zip(scenes, scenes[1:]):
        assert a["end_frame"] == b["start_frame"] and a["end"] == b["start"]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_agrees_with_pyscenedetect(layouts, name):
    truth = layouts[name]
    assert cuts_of(analyse(truth.path)) == pyscenedetect_cuts(truth.path)


# A flash (a few frames of another picture, then the same shot again) makes two size spikes
# close together, and the keyframes around it look alike. ContentDetector (merge mode) reports
# a cut at the flash; montaged does not (the picture comes back: no new shot) and lists the
# frame in ``flashes``. The sparse path must still decode such a group rather than trust the
# keyframes around it: without that rule it would never see the flash at all.
FLASHES = {
    "flash-3-frames": dict(duration=4.0, gop=30, cuts=[40, 43], looks=[0, 1, 0], scenecut=False,
                           motion="none"),
    "flash-1-frame-no-bframes": dict(duration=4.0, gop=30, cuts=[40, 41], looks=[0, 1, 0],
                                     scenecut=False, motion="none", bframes=False),
}


def _index_of_sizes(sizes: list[int]) -> mv.PacketIndex:
    """A packet index of an I frame then P frames of the given sizes (no B frames)."""
    n = len(sizes) + 1
    ptype = np.full(n, mv.P_FRAME, np.int8)
    ptype[0] = mv.I_FRAME
    key = np.zeros(n, bool)
    key[0] = True
    return mv.PacketIndex(pts=np.arange(n, dtype=np.int64), dts=np.arange(n, dtype=np.int64),
                          size=np.array([100_000, *sizes], np.int32), key=key, ptype=ptype,
                          decode_order=np.arange(n, dtype=np.int32), time_base=Fraction(1, 30),
                          corrupt=0, truncated=False, stream_index=0, codec="h264")


def test_sustained_change_tells_a_speeding_pan_from_a_flash():
    group = va.Group(lo=5, hi=6, single=False, spikes=2)
    # Frames stay large after the spikes: the picture keeps changing more (a pan speeding up).
    assert va.sustained_change(_index_of_sizes([2000] * 4 + [9000, 9000] + [6000] * 4), group)
    # Back to the size before them: a flash, or a cut and a cut back.
    assert not va.sustained_change(_index_of_sizes([2000] * 4 + [9000, 9000] + [2100] * 4), group)
    # Too few frames to tell: not ruled out.
    assert not va.sustained_change(_index_of_sizes([2000] * 4 + [9000, 9000] + [6000]), group)


@pytest.mark.parametrize("name", list(FLASHES))
def test_a_flash_is_not_a_cut_but_is_reported(tmp_path, name):
    truth = make_clip(tmp_path / f"{name}.mp4", seed=3, **FLASHES[name])
    assert pyscenedetect_cuts(truth.path) == [40]  # the fixture really is a flash PySceneDetect reports
    for strategy in ("sparse", "full"):
        analysis = analyse(truth.path, strategy)
        assert cuts_of(analysis) == [], strategy
        assert analysis.features["flashes"] == [40], strategy


def test_drop_flashes_keeps_a_cut_whose_picture_does_not_come_back():
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 64), dtype=np.uint8) for _ in range(2))
    flash = np.full((3, 64), 255, np.uint8)
    # A -> flash at 10 -> A at 11: a flash. A -> B at 30, and B -> B after: a cut.
    hsv = {9: a, 10: flash, 11: a, 29: a, 30: b, 31: b}
    assert va.drop_flashes([10, 30], [10, 11, 30], hsv) == ([30], [10])
    # The way back not decoded: PySceneDetect's answer stands.
    assert va.drop_flashes([10], [10, 11], {9: a, 10: flash}) == ([10], [])
    # After an earlier flash PySceneDetect's merge filter reports the way *out* of the next one
    # (frame 51, the shot again): it is a flash too.
    assert va.drop_flashes([51], [50, 51], {49: a, 50: flash, 51: a}) == ([], [51])


def test_layouts_really_have_the_gop_structure_they_claim(layouts):
    """Guard against the fixtures silently testing something easier."""
    idx = mv.scan_packets(layouts["gop30-cuts-on-keyframes"].path)
    assert {30, 60} <= set(idx.keyframes.tolist())
    idx = mv.scan_packets(layouts["gop250-three-cuts-one-gop"].path)
    assert idx.keyframes.tolist() == [0]  # one GOP holds all three cuts
    idx = mv.scan_packets(layouts["gop250-cut-and-back"].path)
    assert idx.keyframes.tolist() == [0]
    idx = mv.scan_packets(layouts["gop30-before-keyframe"].path)
    assert {30, 90} <= set(idx.keyframes.tolist()) and 29 not in idx.keyframes
    idx = mv.scan_packets(layouts["no-bframes"].path)
    assert not np.any(idx.ptype == mv.B_FRAME)


def test_a_cut_on_a_fixed_keyframe_is_placed_from_the_reference_frames(layouts):
    """Nothing in the packet index marks a cut that falls on a regular keyframe; the GOP before
    it is checked with its reference frames only (about half of it), not decoded whole."""
    analysis = analyse(layouts["gop30-on-fixed-keyframes"].path, "sparse")
    assert cuts_of(analysis) == [30, 90]
    assert len(analysis.arrays["decoded_frames"]) < 50  # two whole GOPs would be 60 and more


def test_sparse_decodes_a_fraction_of_a_long_gop_file(tmp_path):
    # 30 s with a 1 s GOP: the sparse path must not decode everything.
    truth = make_clip(tmp_path / "long.mp4", duration=30.0, fps=15, size=(320, 180), gop=15,
                      cuts=[55, 130, 260, 333], scenecut=True, noise=0.01)
    analysis = analyse(truth.path, "sparse")
    assert cuts_of(analysis) == truth.cut_frames
    assert len(analysis.arrays["decoded_frames"]) < 0.5 * truth.n_frames


# ---------------------------------------------------------------------------------------------
# Codecs and containers


@pytest.mark.parametrize("ext,codec", [("webm", "vp9"), ("mp4", "hevc"), ("mkv", "libx264"),
                                       ("mov", "mpeg4"), ("ts", "libx264")])
def test_codecs_and_containers(tmp_path, ext, codec):
    truth = make_clip(tmp_path / f"clip.{ext}", duration=3.0, codec=codec, cuts=[25, 61], gop=45)
    for strategy in ("sparse", "full"):
        analysis = analyse(truth.path, strategy)
        assert cuts_of(analysis) == truth.cut_frames, strategy
    assert analysis.features["codec"] == {"libx264": "h264", "mpeg4": "mpeg4"}.get(codec, codec)


def test_picture_types_are_parsed(tmp_path):
    truth = make_clip(tmp_path / "types.mp4", duration=2.0, gop=30, cuts=[20])
    idx = mv.scan_packets(truth.path)
    assert set(np.unique(idx.ptype).tolist()) == {mv.I_FRAME, mv.P_FRAME, mv.B_FRAME}
    assert idx.ptype[20] == mv.I_FRAME  # x264 put an I picture on the cut
    hevc = make_clip(tmp_path / "types.mkv", duration=2.0, gop=30, cuts=[20], codec="hevc")
    idx = mv.scan_packets(hevc.path)
    assert idx.ptype[0] == mv.I_FRAME and mv.B_FRAME in idx.ptype and mv.P_FRAME in idx.ptype


# ---------------------------------------------------------------------------------------------
# Time: VFR, start offsets, rotation


def test_vfr_scene_times_come_from_pts(tmp_path):
    truth = make_clip(tmp_path / "vfr.mp4", duration=4.0, vfr=True, cuts=[40, 80])
    analysis = analyse(truth.path)
    assert cuts_of(analysis) == truth.cut_frames
    t0 = truth.frame_times[0]
    for scene, cut in zip(analysis.features["scenes"][1:], truth.cut_frames):
        assert scene["start"] == pytest.approx(truth.frame_times[cut] - t0, abs=1e-6)
        # ...which is not what frame index x nominal fps would say
        assert abs(scene["start"] - cut / 30.0) > 0.01
    times = analysis.arrays["frame_times"]
    assert np.allclose(times, np.array(truth.frame_times) - t0)
    assert analysis.features["vfr"] is True


def test_non_zero_start_time(tmp_path):
    truth = make_clip(tmp_path / "late.mkv", duration=3.0, start_time=1.5, cuts=[40])
    analysis = analyse(truth.path)
    f = analysis.features
    assert f["start_time"] == pytest.approx(1.5, abs=0.002)
    assert f["scenes"][0]["start"] == 0.0
    assert f["scenes"][1]["start"] == pytest.approx(truth.frame_times[40] - truth.frame_times[0], abs=1e-6)
    assert f["duration"] == pytest.approx(3.0, abs=0.05)


def test_rotation_and_portrait(tmp_path):
    truth = make_clip(tmp_path / "phone.mp4", duration=3.0, rotation=90, cuts=[45])
    analysis = analyse(truth.path)
    f = analysis.features
    assert (f["rotation"], f["display_width"], f["display_height"]) == (90, 180, 320)
    assert cuts_of(analysis) == [45]
    portrait = make_clip(tmp_path / "portrait.mp4", duration=3.0, size=(180, 320), cuts=[45])
    assert cuts_of(analyse(portrait.path)) == pyscenedetect_cuts(portrait.path) == [45]


def test_non_square_pixels(tmp_path):
    truth = make_clip(tmp_path / "anamorphic.mp4", duration=2.0, sar=(4, 3), cuts=[30])
    f = analyse(truth.path).features
    assert f["sar"] == pytest.approx(4 / 3) and f["display_width"] == 427
    assert [s["start_frame"] for s in f["scenes"]] == [0, 30]


# ---------------------------------------------------------------------------------------------
# Features and arrays


def test_features_shape_and_ranges(tmp_path):
    truth = make_clip(tmp_path / "f.mp4", duration=4.0, cuts=[50, 80], audio=True)
    analysis = analyze_path(truth.path)
    f = analysis.features
    assert analysis.kind == f["kind"] == "video"
    json.dumps(f)  # plain data
    assert f["has_audio"] is True and f["frames"] == truth.n_frames
    assert f["truncated"] is False and f["corrupt_frames"] == 0
    for s in f["scenes"]:
        for key in ("motion", "sharpness", "brightness", "contrast", "colorfulness"):
            assert 0.0 <= s[key] <= 1.0, key
        assert len(s["signature"]) == 16 and sum(s["signature"]) == pytest.approx(1.0, abs=1e-3)
        assert s["start"] <= s["best_in"] < s["end"]
    a = analysis.arrays
    n = truth.n_frames
    assert a["frame_times"].dtype == np.float64 and len(a["frame_times"]) == n
    assert a["motion"].dtype == np.float32 and len(a["motion"]) == n
    assert a["packet_sizes"].dtype == np.int32 and len(a["packet_sizes"]) == n
    assert a["keyframe_times"][0] == 0.0
    assert len(a["score_frames"]) == len(a["scores"])
    assert np.all(a["scores"][np.isin(a["score_frames"], truth.cut_frames)] >= va.THRESHOLD)


def test_brightness_follows_the_looks(tmp_path):
    # Looks alternate bright (even) and dark (odd): scene brightness must follow.
    truth = make_clip(tmp_path / "b.mp4", duration=3.0, cuts=[30, 60])
    scenes = analyse(truth.path).features["scenes"]
    assert scenes[0]["brightness"] > scenes[1]["brightness"] + 0.2
    assert scenes[2]["brightness"] > scenes[1]["brightness"] + 0.2


def test_motion_separates_still_from_panning(tmp_path):
    still = make_clip(tmp_path / "still.mp4", duration=3.0, cuts=[], motion="none", noise=0.0)
    pan = make_clip(tmp_path / "pan.mp4", duration=3.0, cuts=[], motion="pan", noise=0.0)
    m_still = analyse(still.path).features["scenes"][0]["motion"]
    m_pan = analyse(pan.path).features["scenes"][0]["motion"]
    assert m_still < 0.1 < m_pan


def test_sharpness_drops_when_detail_is_blurred():
    sharp_gray = np.random.default_rng(0).integers(0, 256, (1, 90, 160)).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp_gray[0], (9, 9), 3)[None]
    sharp = va.sharpness_score(float(va.laplacian_variance(sharp_gray)[0]))
    soft = va.sharpness_score(float(va.laplacian_variance(blurred)[0]))
    assert sharp > soft + 0.2


def test_best_window_finds_the_burst():
    times = np.arange(300) / 30.0
    motion = np.full(300, 0.1, np.float32)
    motion[150:210] = 0.9
    assert va.best_window(times, motion, 0, 300, 2.0) == pytest.approx(5.0, abs=0.05)


def test_progress_is_reported_up_to_one(tmp_path):
    truth = make_clip(tmp_path / "p.mp4", duration=2.0)
    seen = []
    analyse(truth.path, progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 3


# ---------------------------------------------------------------------------------------------
# Damaged files


def test_truncated_file_analyses_the_decodable_part(tmp_path):
    truth = make_clip(tmp_path / "full.mp4", duration=4.0, cuts=[30, 80], faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.55)])
    for strategy in ("sparse", "full"):
        f = analyse(tmp_path / "cut.mp4", strategy).features
        assert f["truncated"] is True
        assert 40 < f["frames"] < truth.n_frames
        assert [s["start_frame"] for s in f["scenes"]][:2] == [0, 30]
        assert f["scenes"][-1]["end_frame"] == f["frames"]


def test_corrupt_bytes_mid_file(tmp_path):
    truth = make_clip(tmp_path / "ok.mkv", duration=4.0, cuts=[30, 90], gop=15, scenecut=False)
    data = bytearray((tmp_path / "ok.mkv").read_bytes())
    rng = np.random.default_rng(7)
    mid = len(data) // 2
    data[mid:mid + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mkv").write_bytes(bytes(data))
    # Decoding every frame meets the damage and counts it; FFmpeg conceals it, so the cuts stay.
    f = analyse(tmp_path / "bad.mkv", "full").features
    assert f["corrupt_frames"] > 0
    assert [s["start_frame"] for s in f["scenes"]] == [0, 30, 90]
    # The sparse path only counts damage in what it decodes, but must not be thrown by it.
    f = analyse(tmp_path / "bad.mkv", "sparse").features
    assert f["frames"] == truth.n_frames
    assert [s["start_frame"] for s in f["scenes"]] == [0, 30, 90]


# Alternate span and intra decodes on a damaged long-GOP file: every intra decode seeks, which
# drops the span decoder left open while its threads may still be decoding (and logging errors)
# and while FFmpeg's log is routed to Python. Freed undrained, that deadlocked (PyAV #909) within
# 40-120 rounds on 5 seeds out of 6 before the fix; a subprocess keeps a hang from wedging pytest.
_TEARDOWN_LOOP = """
import random, sys
import numpy as np
from montaged.media import video as mv
path, seed, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with mv.VideoFile(path) as vf:
    index = vf.scan()
    n, keys, intra = len(index), index.keyframes.tolist(), np.flatnonzero(index.intra).tolist()
    for _ in range(rounds):
        a = min(n - 2, rng.choice(keys) + rng.randint(1, 60))
        vf.decode_span(index, a, a + 3, size=(256, 144))
        vf.decode_intra(index, rng.sample(intra, min(3, len(intra))), size=(256, 144))
print("ok")
"""


@pytest.mark.slow
def test_decoders_dropped_while_damage_is_counted_do_not_deadlock(tmp_path):
    make_clip(tmp_path / "ok.mkv", duration=12.0, gop=120, scenecut=False, cuts=[50, 170, 300])
    data = bytearray((tmp_path / "ok.mkv").read_bytes())
    rng = np.random.default_rng(1)
    for off in range(len(data) // 20, len(data) - 1000, len(data) // 60):
        data[off:off + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mkv").write_bytes(bytes(data))
    for seed in (1, 3):
        try:
            done = subprocess.run([sys.executable, "-c", _TEARDOWN_LOOP, str(tmp_path / "bad.mkv"),
                                   str(seed), "300"], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"seed {seed}: decoding hung (decoder freed while its threads logged)")
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_not_media_is_refused_by_analyze_path(tmp_path):
    p = tmp_path / "junk.mp4"
    p.write_bytes(os.urandom(50_000))
    with pytest.raises(MediaError, match="not a media file: junk.mp4"):
        analyze_path(str(p))


def test_span_decoding_continues_inside_a_gop_and_matches_a_full_decode(tmp_path):
    truth = make_clip(tmp_path / "long_gop.mp4", duration=5.0, gop=250, cuts=[50, 100])
    pts_all, frames_all, _ = mv.decode_all(truth.path, size=(64, 36), fmt="bgrp")
    with mv.VideoFile(truth.path) as vf:
        index = vf.scan()
        assert np.array_equal(index.pts, pts_all)
        for first, last in [(10, 14), (40, 44), (41, 43), (100, 103), (5, 6), (146, 149)]:
            got = vf.decode_span(index, first, last, size=(64, 36), fmt="bgrp")
            assert got.indices.tolist() == list(range(first, last + 1))
            assert np.array_equal(got.images, frames_all[first:last + 1]), (first, last)
        intra = vf.decode_intra(index, [0], size=(64, 36), fmt="bgrp")  # moves the demuxer
        got = vf.decode_span(index, 120, 121, size=(64, 36), fmt="bgrp")
        assert np.array_equal(got.images, frames_all[120:122])
    assert intra.indices.tolist() == [0]


def test_sparse_segments_give_the_same_cuts(tmp_path, monkeypatch):
    # Long files are worked through in segments; make them 1 s long on a short clip.
    truth = make_clip(tmp_path / "seg.mp4", duration=8.0, gop=30, cuts=[45, 90, 150, 181, 200],
                      seed=5)
    whole = cuts_of(analyse(truth.path, "sparse"))
    monkeypatch.setattr(va, "SEGMENT_SECONDS", 1.0)
    assert cuts_of(analyse(truth.path, "sparse")) == whole == truth.cut_frames


def _write_raw(path, codec: str, pix: str, width: int, height: int, n: int = 40, fps: int = 10) -> None:
    """Frames of flat grey that jump from dark to bright at frame n // 2: one cut."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, pix
        for i in range(n):
            img = np.full((height, width, 3), 20 if i < n // 2 else 220, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


@pytest.mark.parametrize("codec,pix,size", [("ffv1", "bgr0", (1, 1)), ("libx264", "yuv420p", (2, 2)),
                                            ("ffv1", "bgr0", (15, 40))])
def test_tiny_frames_are_refused_in_words(tmp_path, codec, pix, size):
    path = tmp_path / "tiny.mkv"
    _write_raw(path, codec, pix, *size)
    with pytest.raises(MediaError, match=rf"frame size {size[0]}x{size[1]} is too small to analyse"):
        analyze_path(str(path))


def test_odd_small_frames_analyse(tmp_path):
    path = tmp_path / "odd.mkv"
    _write_raw(path, "ffv1", "bgr0", 17, 21)
    assert cuts_of(analyze_path(str(path))) == [20] == pyscenedetect_cuts(path)


def test_an_animated_gif_is_video_and_a_one_frame_gif_a_still(tmp_path):
    anim, still = tmp_path / "anim.gif", tmp_path / "still.gif"
    _write_raw(anim, "gif", "rgb8", 64, 48)
    _write_raw(still, "gif", "rgb8", 64, 48, n=1)
    analysis = analyze_path(str(anim))
    assert analysis.kind == "video" and analysis.features["frames"] == 40
    assert cuts_of(analysis) == pyscenedetect_cuts(anim)  # PySceneDetect reads GIFs too
    with pytest.raises(MediaError, match="still image"):
        analyze_path(str(still))


def test_flash_tracker_forgets_pictures_once_settled():
    """A long file with a cut every 100 frames must not keep two pictures per cut to the end."""
    rng = np.random.default_rng(1)
    tracker = va.FlashTracker()
    flash = np.full((3, 64), 255, np.uint8)
    for cut in range(100, 100_000, 100):
        a, b = (rng.integers(0, 256, (3, 64), dtype=np.uint8) for _ in range(2))
        tracker.add(cut, b, a)  # a real cut: A -> B
        if cut % 1000 == 0:  # and every tenth, a flash right after it: B -> white -> B
            tracker.add(cut + 30, flash, b)
            tracker.add(cut + 31, b, flash)
        tracker.settle(cut + 50)
        assert len(tracker.hsv) <= 6
    kept, flashes = tracker.split(list(range(100, 100_000, 100)) + [c + 30 for c in range(1000, 100_000, 1000)])
    assert flashes == [c + 30 for c in range(1000, 100_000, 1000)]
    assert kept == list(range(100, 100_000, 100))
