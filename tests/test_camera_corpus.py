"""Scene cuts on camera-like footage: every kind of the corpus (montaged.synth.corpus), small.

The benchmark measures the same kinds at full size (benchmarks/bench_video.py --suite camera);
here each kind is a 320x180 clip of a few seconds whose true cuts are known. Flash frames are
not cuts (the truth), and PySceneDetect reports them: for that kind the test checks that they
are listed in ``flashes`` instead.
"""

from __future__ import annotations

import av
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
