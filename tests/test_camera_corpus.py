"""Scene cuts on camera-like footage: every kind of the corpus (montaged.synth.corpus), small.

The benchmark measures the same kinds at full size (benchmarks/bench_video.py --suite camera);
here each kind is a 320x180 clip of a few seconds whose true cuts are known. Flash frames are
not cuts (the truth), and PySceneDetect reports them: for that kind the test checks that they
are listed in ``flashes`` instead.
"""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
from scenedetect import ContentDetector, detect

from montaged.analysis import video as va
from montaged.media import probe
from montaged.synth import corpus

pytestmark = pytest.mark.slow


def analyze_path(path, strategy="auto"):
    return va.analyze_video(str(path), probe(str(path)), lambda _f: None, strategy=strategy)


def _cuts(analysis) -> list[int]:
    return [s["start_frame"] for s in analysis.features["scenes"][1:]]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    made = {}
    for i, kind in enumerate(k for k in corpus.KINDS if k != "handheld-hevc-4k"):
        duration = 10.0 if corpus.KINDS[kind]["cuts"] == "keyframes" else 6.0
        made[kind] = corpus.make(kind, folder / f"{kind}.mp4", duration=duration, seed=i + 1)
    return made


@pytest.mark.parametrize("kind", [k for k in corpus.KINDS if k != "handheld-hevc-4k"])
@pytest.mark.parametrize("strategy", ["auto", "full"])
def test_true_cuts_on_every_kind(clips, kind, strategy):
    truth = clips[kind]
    analysis = analyze_path(truth.path, strategy=strategy)
    assert _cuts(analysis) == truth.cut_frames


def _unmatched(cuts: list[int], others: list[int], tol: int = 1) -> list[int]:
    """The cuts with no cut of ``others`` within ``tol`` frames (PySceneDetect numbers the
    frames of a variable-frame-rate file from time x average rate: one off, sometimes)."""
    return [c for c in cuts if not any(abs(c - o) <= tol for o in others)]


@pytest.mark.parametrize("kind", [k for k in corpus.KINDS if k != "handheld-hevc-4k"])
def test_pyscenedetect_disagrees_only_on_flashes(clips, kind):
    truth = clips[kind]
    psd = [s[0].frame_num for s in detect(truth.path, ContentDetector())][1:]
    analysis = analyze_path(truth.path)
    ours = _cuts(analysis)
    assert _unmatched(ours, psd) == []  # every cut montaged finds, PySceneDetect finds too
    flash_frames = truth.flashes
    # ... and what PySceneDetect finds beyond them are flash frames (the truth wins there).
    assert _unmatched(psd, ours) == [f for f in _unmatched(psd, ours) if f in flash_frames]
    assert set(analysis.features["flashes"]) <= set(psd)
    if flash_frames:
        assert _unmatched(psd, ours), "the flash kind must really have flashes PySceneDetect reports"


def test_the_corpus_is_what_it_claims(clips):
    """Guard against the fixtures silently testing something easier."""
    def stream_of(kind):
        with av.open(clips[kind].path) as c:
            s = c.streams.video[0]
            return s.codec_context.profile, s.codec_context.format.name, s.average_rate
    assert stream_of("handheld-baseline-portrait25")[0] == "Constrained Baseline"
    assert stream_of("walk-main-gop30")[0] == "Main"
    assert stream_of("handheld-hevc10-gop30")[1] == "yuv420p10le"
    assert stream_of("handheld-high-60fps")[2] == 60
    keyframe_cuts = clips["handheld-keyframe-cuts"].cut_frames
    assert keyframe_cuts and any(c % 30 == 0 for c in keyframe_cuts) and any(c % 30 == 1 for c in keyframe_cuts)
    assert clips["handheld-one-shot"].cut_frames == []


@pytest.mark.parametrize("kind", ["handheld-flash-fade", "handheld-keyframe-cuts", "handheld-high-vfr"])
def test_exact_strategy_is_pyscenedetect(clips, kind):
    truth = clips[kind]
    psd = detect(truth.path, ContentDetector(), backend="pyav")[1:]
    exact = analyze_path(truth.path, "exact").features["scenes"][1:]
    # Compared in seconds: on VFR, PySceneDetect's frame numbers are time x nominal rate, and
    # the exact strategy maps its cuts to the file's real frames by time.
    frame = 1.0 / truth.fps
    assert len(exact) == len(psd)
    for ours, (start, _end) in zip(exact, psd):
        assert abs(ours["start"] - start.seconds) <= frame, (ours["start"], start.seconds)
    if kind != "handheld-high-vfr":
        assert [s["start_frame"] for s in exact] == [start.frame_num for start, _ in psd]


@pytest.mark.parametrize("kind", [k for k in corpus.KINDS
                                  if k not in ("handheld-hevc-4k", "handheld-high-vfr")])
def test_full_strategy_scores_every_frame_as_pyscenedetect_does(clips, kind):
    """Frame by frame against scenedetect's own ContentDetector (the exact strategy). The full
    strategy scales frames in FFmpeg and skips the loop filter, so scores differ a little (the
    most on the near-black frames of a fade); cuts must not. Not on VFR: PySceneDetect numbers
    those frames from time x average rate, so its frames cannot be paired one to one."""
    truth = clips[kind]
    full = analyze_path(truth.path, "full")
    exact = analyze_path(truth.path, "exact")
    ours = dict(zip(full.arrays["score_frames"].tolist(), full.arrays["scores"].tolist()))
    ref = dict(zip(exact.arrays["score_frames"].tolist(), exact.arrays["scores"].tolist()))
    assert set(ref) == set(range(1, truth.n_frames))
    diff = np.abs(np.array([ours[f] - ref[f] for f in sorted(ref)]))
    assert diff.max() <= 1.6 and np.percentile(diff, 99) <= 0.8, (round(diff.max(), 2), round(np.percentile(diff, 99), 2))
    flashes = full.features["flashes"]
    assert sorted(_cuts(full) + flashes) == _cuts(exact)


def test_exact_strategy_without_pyscenedetect_says_what_to_install(clips):
    """A real interpreter whose import of scenedetect fails (as when the extra is missing)."""
    code = ("import sys; sys.modules['scenedetect'] = None\n"
            "from montaged.analysis import analyze_path\n"
            "from montaged.errors import MediaError\n"
            "try:\n    analyze_path(sys.argv[1], scenes='exact')\n"
            "except MediaError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, clips["handheld-one-shot"].path],
                         capture_output=True, text=True, check=True).stdout
    assert "pip install 'montaged[exact]'" in out
