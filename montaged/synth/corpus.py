"""The camera-like clip corpus: what phones, action cameras and editors' exports really write.

One entry per *kind* of footage, shared by the tests (small: 320x180, a few seconds) and
``benchmarks/bench_video.py --suite camera`` (full size: 1080p, portrait 1080x1920, 4K). Each
kind says how the camera moves, how the encoder was set up and where the true cuts are:

- ``class``: ``tripod`` (locked-off or slow tripod pans, or an editor's export with scene-cut
  keyframes) or ``moving`` (handheld, walking, whip pans, zooms: the footage the 3x target is
  about);
- ``cuts``: ``random`` (scenes of 1.5-5 s at random frames), ``keyframes`` (cuts exactly on
  regular keyframes, and one frame after one: no size spike marks them) or ``none`` (one long
  shot);
- everything else goes to :func:`montaged.synth.video.make_clip` as it is.

Flash frames are not cuts (the truth); PySceneDetect reports them as cuts, which is one of the
disagreements the README lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from montaged.synth.video import ClipTruth, make_clip

# name -> spec. Sizes are the full (benchmark) size; tests scale them down, keeping orientation.
KINDS: dict[str, dict] = {
    "tripod-gop30-scenecut": dict(cls="tripod", motion="pan", gop=30, scenecut=True, cuts="random"),
    "tripod-gop250-scenecut": dict(cls="tripod", motion="none", gop=250, scenecut=True, cuts="random"),
    "handheld-high-gop30": dict(cls="moving", motion="handheld", profile="high", cuts="random"),
    "handheld-high-gop15": dict(cls="moving", motion="handheld", profile="high", gop=15, cuts="random"),
    "walk-main-gop30": dict(cls="moving", motion="walk", profile="main", cuts="random"),
    "whip-high-gop30": dict(cls="moving", motion="whip", profile="high", cuts="random"),
    "zoom-high-gop30": dict(cls="moving", motion="zoom", profile="high", cuts="random"),
    "handheld-baseline-portrait25": dict(cls="moving", motion="handheld", profile="baseline", fps=25,
                                         gop=25, size=(1080, 1920), cuts="random"),
    "handheld-hevc-gop30": dict(cls="moving", motion="handheld", codec="hevc", cuts="random"),
    "handheld-hevc10-gop30": dict(cls="moving", motion="handheld", codec="hevc", bit_depth=10,
                                  cuts="random"),
    "handheld-high-60fps": dict(cls="moving", motion="handheld", profile="high", fps=60, gop=60,
                                cuts="random"),
    "handheld-high-vfr": dict(cls="moving", motion="handheld", profile="high", vfr=True, cuts="random"),
    "handheld-high-rot90": dict(cls="moving", motion="handheld", profile="high", rotation=90,
                                cuts="random"),
    "handheld-keyframe-cuts": dict(cls="moving", motion="handheld", profile="high", cuts="keyframes"),
    "handheld-flash-fade": dict(cls="moving", motion="handheld", profile="high", cuts="random",
                                flash_every=2.3, fade_in=20),
    "handheld-lowlight": dict(cls="moving", motion="handheld", profile="high", noise=0.05, cuts="random"),
    "handheld-one-shot": dict(cls="moving", motion="handheld", profile="high", cuts="none"),
    "handheld-hevc-4k": dict(cls="moving", motion="handheld", codec="hevc", size=(3840, 2160),
                             cuts="random", max_duration=6.0),
}

FULL_SIZE = (1920, 1080)
SMALL_SIZE = (320, 180)
# Bits per pixel per frame at the full size: a phone's 17 Mbit/s at 1080p30 (~0.27).
BITS_PER_PIXEL = 17_000_000 / (1920 * 1080 * 30)


def cut_frames(rule: str, n_frames: int, fps: float, gop: int, seed: int) -> list[int]:
    """The true cuts of a clip of ``n_frames``: see the module docstring for the rules."""
    if rule == "none":
        return []
    if rule == "keyframes":
        # On the 4th, 8th, ... keyframe, alternately exactly on it and one frame after it.
        cuts = [k * gop + (j % 2) for j, k in enumerate(range(4, n_frames // gop, 4))]
        return [c for c in cuts if c < n_frames - 15]
    rng = np.random.default_rng(seed)
    cuts, pos = [], 0
    while True:
        pos += int(round(rng.uniform(1.5, 5.0) * fps))
        if pos >= n_frames - int(1.5 * fps):
            return cuts
        cuts.append(pos)


def clip_args(kind: str, *, duration: float, small: bool, seed: int = 0) -> dict:
    """make_clip keyword arguments for one clip of ``kind`` (without the path)."""
    spec = dict(KINDS[kind])
    spec.pop("cls")
    rule = spec.pop("cuts")
    duration = min(duration, spec.pop("max_duration", duration))
    flash_every = spec.pop("flash_every", None)
    size = spec.pop("size", FULL_SIZE)
    if small:
        portrait = size[1] > size[0]
        size = SMALL_SIZE[::-1] if portrait else SMALL_SIZE
    fps = spec.setdefault("fps", 30)
    gop = spec.setdefault("gop", 30)
    profile = spec.pop("profile", None)
    if profile and spec.get("codec", "libx264") in ("libx264", "h264"):
        spec["profile"] = profile
    n = int(round(duration * fps))
    cuts = cut_frames(rule, n, fps, gop, seed)
    flashes = ()
    if flash_every:
        # Flash frames at least a second away from every cut (a flash next to a cut is a cut).
        candidates = np.arange(int(flash_every * fps), n - 10, int(flash_every * fps))
        flashes = tuple(int(f) for f in candidates if all(abs(f - c) > fps for c in cuts))
    spec.setdefault("noise", 0.02)
    spec.setdefault("scenecut", False)
    if not small:
        spec["bitrate"] = int(BITS_PER_PIXEL * size[0] * size[1] * fps)
    return dict(spec, duration=duration, size=size, cuts=cuts, flashes=flashes, seed=seed)


def make(kind: str, path, *, duration: float = 4.0, small: bool = True, seed: int = 0) -> ClipTruth:
    """Encode one clip of ``kind`` to ``path`` and return its truth (``cut_frames``)."""
    return make_clip(Path(path), **clip_args(kind, duration=duration, small=small, seed=seed))


def moving_kinds() -> list[str]:
    return [k for k, v in KINDS.items() if v["cls"] == "moving"]
