"""Folder shapes through the real thing: generated clips, the real analysis, `montaged preview`
in a subprocess, and the rendered preview decoded with PyAV."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from tests.helpers import cli

pytestmark = pytest.mark.slow
FPS = 30


def first_frames_luma(path, starts: list[int]) -> list[float]:
    """Mean luma (0..1) of the output frames at indices ``starts``."""
    wanted, out = set(starts), {}
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = float(frame.to_ndarray(format="gray").mean() / 255.0)
    return [out[i] for i in starts]


def test_long_single_shots_with_fades_and_a_portrait_clip(tmp_path):
    """Two 8-s single shots that fade in from black (one with a flash), a portrait clip of two
    shots: 12 s asked get 12 s (within a bar), every clip appears, no frame is shown twice, and
    no shot opens on the fade or the flash."""
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    d = tmp_path / "phone"
    d.mkdir()
    make_clip(str(d / "a.mp4"), duration=8.0, fps=30, size=(320, 180), cuts=[], fade_in=20, flashes=(100,),
              motion="handheld", seed=1)
    make_clip(str(d / "b.mp4"), duration=8.0, fps=30, size=(320, 180), cuts=[], fade_in=20, motion="walk", seed=2)
    make_clip(str(d / "p.mp4"), duration=6.0, fps=30, size=(320, 180), cuts=[90], rotation=90, seed=3)
    make_track(str(d / "song.wav"), bpm=120, duration=20.0, seed=1, channels=1, sample_rate=22050)
    (d / "montage.toml").write_text("duration = 12\nseed = 2\n")
    out = tmp_path / "out"
    r = cli("preview", str(d), "--out", str(out), "--json", env={"XDG_STATE_HOME": str(tmp_path / "state")},
            timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    edl = json.loads((out / "preview.edl.json").read_text())
    assert abs(doc["duration"] - 12.0) <= 2.0 + 1e-6, doc  # a 4-beat bar at 120 BPM
    assert (edl["width"], edl["height"]) == (640, 360)  # two landscape clips, one portrait
    assert not [w for w in doc["warnings"] if "second time" in w or "shorter than" in w], doc["warnings"]
    cuts = edl["cuts"]
    assert {c["source"] for c in cuts} == {"a.mp4", "b.mp4", "p.mp4"}
    shown: dict = {}
    for c in cuts:
        for a, b in shown.get(c["source"], []):
            assert min(b, c["source_out"]) - max(a, c["source_in"]) <= 1e-6, c  # no frame twice
        shown.setdefault(c["source"], []).append((c["source_in"], c["source_out"]))
        if c["source"] in ("a.mp4", "b.mp4"):
            assert c["source_in"] >= 1.0 - 1e-6, c  # not on the fade from black
        if c["source"] == "a.mp4":
            assert not 98 <= round(c["source_in"] * 30) <= 101, c  # nor on the flash
    # The shots really open on a lit picture (a fade's first frames are near black).
    lumas = first_frames_luma(out / "preview.mp4", [round(c["record_in"] * FPS) for c in cuts])
    assert min(lumas) > 0.1, lumas
    # Screen time follows the footage (8, 8 and 6 s): no clip gets less than a fifth.
    share = {s: sum(c["record_out"] - c["record_in"] for c in cuts if c["source"] == s) / doc["duration"]
             for s in ("a.mp4", "b.mp4", "p.mp4")}
    assert min(share.values()) >= 0.2, share
    assert np.isclose(sum(share.values()), 1.0)
