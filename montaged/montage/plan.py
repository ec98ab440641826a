"""Beat grid -> cut list: which shot plays on which beats. Pure numpy, seeded, reproducible.

The timeline starts on a downbeat after the music's quiet intro and ends on a phrase boundary
near the requested duration; bars and phrases follow the analysed meter (3 beats a bar in a
waltz), and a beat grid the analysis is unsure of is only cut on its stronger pulse. Every cut
starts exactly on a beat: cut times are the *absolute* beat times (minus the music offset)
rounded to the output frame grid, never sums of durations, so rounding errors cannot
accumulate into drift. How many beats a shot lasts follows the style
and the loudness of the section it falls in (short shots in the drop, long ones in a breakdown).

For every slot, all candidate scenes of all clips are scored in one vectorised pass:
quality (sharp, well exposed), motion matched to the music's energy, unused scenes first (with a
reuse cap), never the same source twice in a row, visual variety against the previous shot
(signature distance), and a small seeded jitter so another seed gives another edit. A scene
must be at least as long as its slot, so no segment ever crosses a detected cut; the in-point is
the most active window of the scene.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from montaged.errors import RenderError

log = logging.getLogger("montaged.montage.plan")

EDL_VERSION = 1
MIN_SHOT = 0.4  # seconds: shorter shots flicker
REUSE_CAP = 2  # a scene may appear at most this many times in one preview
STYLES = ("calm", "dynamic", "energetic")
# Beats per shot by style and by the energy level of the section the shot starts in.
BEATS_PER_CUT = {
    "calm": {"high": 4, "mid": 8, "low": 16},
    "dynamic": {"high": 2, "mid": 4, "low": 8},
    "energetic": {"high": 1, "mid": 2, "low": 4},
}
LEVEL_ENERGY = {"low": 0.2, "mid": 0.5, "high": 0.85}
# Below this beat confidence (the analysis's 0..1) a shot may only start on every other beat of
# the bar; a fallback grid (no steady beat found) only on its bars. A cut off the real beat
# looks wrong; a cut twice as long still looks calm.
LOW_CONFIDENCE = 0.5

# Score weights. The "unused" bonus is larger than every other term together, so unused scenes
# always win over reused ones ("unused first"); the rest trade off against each other.
W_SHARP, W_BRIGHT, W_MOTION, W_VARIETY, W_BALANCE, W_JITTER = 0.25, 0.15, 0.25, 0.20, 0.15, 0.20
W_UNUSED = 2.0
# In-point choice: activity (0..1) minus this much for a full PREROLL_SCALE seconds of frames to
# decode from the previous keyframe. Pre-roll is what a render from camera originals (before
# their proxies exist) spends most on after the shown frames themselves: a quarter more
# decoding with in-points anywhere in 1-s GOPs. Half a second of it weighs as much as a quarter
# of the scene's range of activity.
W_PREROLL, PREROLL_SCALE = 0.5, 1.0

Clip = tuple  # (source_name, features: dict, arrays: Mapping[str, np.ndarray])


@dataclass
class Cut:
    index: int
    record_in: float  # seconds on the preview timeline
    record_out: float
    source: str  # path relative to the folder
    source_in: float  # seconds from the clip's first frame
    source_out: float
    scene: int  # index in the clip's scene list
    beat: int  # index in the analysed beat list, counted from music.offset
    score: float


@dataclass
class EditList:
    """A planned preview: the contract's ``preview.edl.json`` plus what rendering needs."""

    folder: str
    fps: int
    width: int
    height: int
    duration: float
    music_path: str
    music_offset: float  # seconds into the music where the preview starts (a downbeat)
    tempo: float
    fade_start: float  # timeline seconds where the music starts fading out
    fade_duration: float  # the last bar
    first_beat: int  # index in the analysed beat list of the beat at music_offset
    cuts: list[Cut] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    title: str | None = None
    style: str = "dynamic"
    aspect: str = "auto"
    seed: int = 0
    version: int = EDL_VERSION

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "folder": self.folder,
            "title": self.title,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "duration": self.duration,
            "style": self.style,
            "aspect": self.aspect,
            "seed": self.seed,
            "music": {
                "path": self.music_path,
                "offset": self.music_offset,
                "tempo": self.tempo,
                "first_beat": self.first_beat,
                "fade_out": {"start": self.fade_start, "duration": self.fade_duration},
            },
            "cuts": [asdict(c) for c in self.cuts],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> EditList:
        music = d["music"]
        fade = music.get("fade_out") or {"start": d["duration"], "duration": 0.0}
        return cls(
            folder=d["folder"], fps=int(d["fps"]), width=int(d["width"]), height=int(d["height"]),
            duration=float(d["duration"]), music_path=music["path"], music_offset=float(music["offset"]),
            tempo=float(music["tempo"]), fade_start=float(fade["start"]), fade_duration=float(fade["duration"]),
            first_beat=int(music.get("first_beat", 0)), cuts=[Cut(**c) for c in d["cuts"]],
            warnings=list(d.get("warnings", [])), title=d.get("title"), style=d.get("style", "dynamic"),
            aspect=d.get("aspect", "auto"), seed=int(d.get("seed", 0)), version=int(d.get("version", EDL_VERSION)),
        )

    def frame_range(self, cut: Cut) -> tuple[int, int]:
        """Output frames [first, end) of a cut; exact because record times lie on the frame grid."""
        return round(cut.record_in * self.fps), round(cut.record_out * self.fps)


# --- output size ------------------------------------------------------------------------------


def display_size(features: Mapping) -> tuple[float, float]:
    """How a clip looks when played: pixel aspect and rotation applied."""
    dw, dh = features.get("display_width"), features.get("display_height")
    if dw and dh:
        return float(dw), float(dh)
    w, h = float(features.get("width") or 16), float(features.get("height") or 9)
    w *= float(features.get("sar") or 1.0)
    if int(features.get("rotation") or 0) % 180:
        w, h = h, w
    return w, h


def output_size(aspect: str, clip_features: Sequence[Mapping], width: int, height: int) -> tuple[int, int, str]:
    """(width, height, resolved aspect). ``auto`` follows the display orientation most clips have
    (a tie goes to the longer total duration, then landscape); portrait swaps the configured size."""
    long_side, short_side = max(width, height), min(width, height)
    if aspect == "auto":
        # (count, total duration) per orientation: compared as tuples.
        portrait, landscape = [0, 0.0], [0, 0.0]
        for f in clip_features:
            w, h = display_size(f)
            side = portrait if h > w else landscape
            side[0] += 1
            side[1] += float(f.get("duration") or 0.0)
        aspect = "9:16" if portrait > landscape else "16:9"
    if aspect == "9:16":
        size = (short_side, long_side)
    elif aspect == "1:1":
        size = (short_side, short_side)
    elif aspect == "16:9":
        size = (long_side, short_side)
    else:
        raise ValueError(f"unknown aspect {aspect!r}")
    # x264 with yuv420p needs even dimensions.
    return size[0] - size[0] % 2, size[1] - size[1] % 2, aspect


# --- the music --------------------------------------------------------------------------------


@dataclass
class _Music:
    beats: np.ndarray
    downbeats: np.ndarray
    phrases: np.ndarray
    duration: float
    tempo: float
    bpb: int
    intro_end: float
    sections: list
    energy: np.ndarray | None
    energy_hz: float
    stride: str = "beat"  # where shots may start: "beat", "half" (every other beat of a bar) or "bar"


def _music(features: Mapping, arrays: Mapping, warnings: list[str]) -> _Music:
    duration = float(features.get("duration") or 0.0)
    beats = np.asarray(features.get("beats") or [], dtype=np.float64)
    beats = np.unique(beats[(beats >= 0) & (beats <= duration + 1e-6)]) if duration else np.unique(beats)
    tempo = float(features.get("tempo") or 0.0)
    bpb = int(features.get("beats_per_bar") or 4)
    downbeats = np.asarray(features.get("downbeats") or [], dtype=np.float64)
    phrases = np.asarray(features.get("phrases") or [], dtype=np.float64)
    if len(beats) < 2:
        # No usable beat: cut on a steady grid so a preview still comes out, and say so.
        period = 60.0 / tempo if 40 <= tempo <= 240 else 0.5
        beats = np.arange(0.0, duration + 1e-9, period)
        downbeats = beats[::bpb]
        phrases = downbeats[::4]
        warnings.append("no beat was found in the music: cuts follow a steady grid instead")
    if tempo <= 0:
        tempo = 60.0 / float(np.median(np.diff(beats)))
    if len(downbeats) == 0:
        downbeats = beats[::bpb]
    if len(phrases) == 0:
        phrases = downbeats[:: 4]
    stride = "beat"
    confidence = features.get("confidence")
    if features.get("fallback_grid"):
        stride = "bar"
        warnings.append(f"no steady beat was found in the music: cuts follow a steady {tempo:.0f} BPM grid, "
                        "on its bars only")
    elif confidence is not None and float(confidence) < LOW_CONFIDENCE:
        stride = "half" if bpb % 2 == 0 else "bar"
        warnings.append(f"the beat of the music is uncertain (confidence {float(confidence):.2f}): cuts fall on "
                        + ("every other beat" if stride == "half" else "bars") + " only")
    energy = arrays.get("energy") if arrays else None
    energy = None if energy is None or len(energy) == 0 else np.asarray(energy, dtype=np.float64)
    return _Music(beats=beats, downbeats=downbeats, phrases=phrases, duration=duration or float(beats[-1]),
                  tempo=tempo, bpb=bpb, intro_end=float(features.get("intro_end") or 0.0),
                  sections=list(features.get("sections") or []), energy=energy,
                  energy_hz=float(features.get("energy_hz") or 10.0), stride=stride)


def _nearest_beat(beats: np.ndarray, t: float) -> int:
    i = int(np.searchsorted(beats, t))
    if i == 0:
        return 0
    if i >= len(beats):
        return len(beats) - 1
    return i if beats[i] - t < t - beats[i - 1] else i - 1


def _level_at(music: _Music, t: float) -> str:
    for s in music.sections:
        if s.get("start", 0.0) <= t < s.get("end", math.inf) and s.get("level") in LEVEL_ENERGY:
            return s["level"]
    e = _energy_between(music, t, t + 1.0)
    return "high" if e >= 0.66 else "mid" if e >= 0.33 else "low"


def _energy_between(music: _Music, a: float, b: float) -> float:
    if music.energy is None:
        for s in music.sections:
            if s.get("start", 0.0) <= a < s.get("end", math.inf):
                return LEVEL_ENERGY.get(s.get("level"), 0.5)
        return 0.5
    i = max(0, min(len(music.energy) - 1, int(a * music.energy_hz)))
    j = max(i + 1, min(len(music.energy), int(math.ceil(b * music.energy_hz))))
    return float(np.clip(music.energy[i:j].mean(), 0.0, 1.0))


def _start_and_end(music: _Music, duration: float, warnings: list[str]) -> tuple[int, int]:
    """Beat indices of the first and the last beat of the preview."""
    beats = music.beats
    limit = min(music.duration, float(beats[-1]))
    # Start on the first downbeat at or after the end of the quiet intro...
    downs = music.downbeats[music.downbeats >= music.intro_end - 1e-3]
    start_t = float(downs[0]) if len(downs) else float(beats[0])
    if limit - start_t < duration and music.intro_end > 0:
        # ...unless the rest of the music is too short for the preview: then start as late as
        # the duration allows (still on a downbeat), using part of the intro.
        earlier = music.downbeats[music.downbeats <= start_t + 1e-6]
        fits = earlier[earlier <= limit - duration + 1e-6]
        if len(earlier):
            start_t = float(fits[-1]) if len(fits) else float(earlier[0])
    k0 = _nearest_beat(beats, start_t)
    t0 = float(beats[k0])
    period = float(np.median(np.diff(beats)))
    bar = period * music.bpb
    target = t0 + duration
    if target > limit + 1e-6:
        warnings.append(f"the music after its intro lasts {limit - t0:.1f} s: the preview is shorter than the "
                        f"{duration:g} s asked for")
        target = limit

    def near(points: np.ndarray) -> float | None:
        ok = points[(np.abs(points - target) <= bar + 1e-6) & (points <= limit + 1e-6) & (points > t0 + MIN_SHOT)]
        return float(ok[np.argmin(np.abs(ok - target))]) if len(ok) else None

    end_t = near(music.phrases)
    if end_t is None:
        end_t = near(music.downbeats)
    if end_t is None:
        end_t = target
    k_end = _nearest_beat(beats, end_t)
    if beats[k_end] > limit + 1e-6 and k_end > 0:
        k_end -= 1
    if k_end <= k0:
        raise RenderError("the music is too short for a preview (less than one beat after its start)")
    return k0, k_end


# --- the footage ------------------------------------------------------------------------------


@dataclass
class _Candidates:
    """Every scene of every clip, one row per scene."""

    clip: np.ndarray  # int index into sources
    scene: np.ndarray  # int index in the clip's scene list
    start: np.ndarray
    end: np.ndarray
    motion_rank: np.ndarray  # 0..1 percentile among all candidates
    sharp_rank: np.ndarray
    bright_score: np.ndarray
    signature: np.ndarray  # (n, k) float
    sources: list[str]
    clips: Sequence[Clip]
    timing: dict  # clip index -> (frame_times, motion_times, motion_values, fps), filled when needed


def _rank(values: np.ndarray) -> np.ndarray:
    """Percentile rank in 0..1: makes scores independent of each feature's scale."""
    if len(values) < 2:
        return np.full(len(values), 0.5)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks / (len(values) - 1)


def _clip_timing(features: Mapping, arrays: Mapping) -> tuple:
    fps = float(features.get("fps") or 30.0)
    duration = float(features.get("duration") or 0.0)
    ft = arrays.get("frame_times") if arrays else None
    ft = np.asarray(ft, dtype=np.float64) if ft is not None and len(ft) else None
    motion = arrays.get("motion") if arrays else None
    mt = mv = None
    if motion is not None and len(motion):
        mv = np.nan_to_num(np.asarray(motion, dtype=np.float64))
        mt_arr = arrays.get("motion_times") if arrays else None
        if mt_arr is not None and len(mt_arr) == len(mv):
            mt = np.asarray(mt_arr, dtype=np.float64)
        elif ft is not None and len(ft) == len(mv):
            mt = ft
        else:  # sampled evenly over the clip
            mt = (np.arange(len(mv)) + 0.5) * (duration / len(mv)) if duration else np.arange(len(mv)) / fps
    kt = arrays.get("keyframe_times") if arrays else None
    kt = np.asarray(kt, dtype=np.float64) if kt is not None and len(kt) else None
    return ft, mt, mv, fps, kt


SIGNATURE_LEN = 16


def _signature(s: Mapping) -> list[float]:
    sig = list(s.get("signature") or ())[:SIGNATURE_LEN]
    return sig + [0.0] * (SIGNATURE_LEN - len(sig))


def _candidates(clips: Sequence[Clip]) -> _Candidates:
    """One row per usable scene. A plain Python pass over the scene dicts (they arrive as
    msgpack/JSON data); everything after it is array arithmetic."""
    rows: list[tuple] = []
    sigs: list[list[float]] = []
    for ci, (_name, features, _arrays) in enumerate(clips):
        scenes = features.get("scenes") or []
        if not scenes and features.get("duration"):
            scenes = [{"start": 0.0, "end": float(features["duration"])}]
        for si, s in enumerate(scenes):
            start, end = float(s.get("start", 0.0)), float(s.get("end", 0.0))
            if not end > start:
                continue
            brightness = s.get("brightness")
            rows.append((ci, si, start, end, float(s.get("motion") or 0.0), float(s.get("sharpness") or 0.5),
                         0.5 if brightness is None else float(brightness)))
            sig = s.get("signature")
            sigs.append(sig if sig is not None and len(sig) == SIGNATURE_LEN else _signature(s))
    if not rows:
        raise RenderError("none of the clips has a usable scene")
    table = np.asarray(rows, dtype=np.float64)
    brightness = table[:, 6]
    # Well exposed = brightness within 0.2..0.8; falls off linearly to 0 at black and white.
    bright_score = np.clip(1.0 - np.maximum(0.0, np.abs(brightness - 0.5) - 0.3) / 0.2, 0.0, 1.0)
    return _Candidates(
        clip=table[:, 0].astype(np.int64), scene=table[:, 1].astype(np.int64), start=table[:, 2], end=table[:, 3],
        motion_rank=_rank(table[:, 4]), sharp_rank=_rank(table[:, 5]), bright_score=bright_score,
        signature=np.asarray(sigs, dtype=np.float64).reshape(len(rows), SIGNATURE_LEN),
        sources=[name for name, _, _ in clips], clips=clips, timing={})


def _in_point(cand: _Candidates, c: int, length: float, used: list[tuple[float, float]]) -> float:
    """Start of the most active window of ``length`` in scene ``c``, on the clip's frame grid,
    avoiding windows already used from this scene."""
    ci = int(cand.clip[c])
    if ci not in cand.timing:
        _, features, arrays = cand.clips[ci]
        cand.timing[ci] = _clip_timing(features, arrays or {})
    ft, mt, mv, fps, kt = cand.timing[ci]
    start, end = float(cand.start[c]), float(cand.end[c])
    latest = end - length
    if ft is not None:
        lo = int(np.searchsorted(ft, start - 1e-6))
        hi = int(np.searchsorted(ft, latest + 1e-6))
        starts = ft[lo:hi]
    else:
        starts = start + np.arange(int(math.floor((latest - start) * fps + 1e-6)) + 1) / fps
    if len(starts) == 0:
        return start
    if len(starts) > 256:  # plenty of resolution; keeps long scenes cheap
        keys = kt[(kt >= start - 1e-6) & (kt <= latest + 1e-6)] if kt is not None else np.zeros(0)
        starts = np.union1d(starts[np.linspace(0, len(starts) - 1, 256).round().astype(np.int64)], keys)
    activity = np.zeros(len(starts))
    if mv is not None and len(mv) > 1:
        csum = np.concatenate([[0.0], np.cumsum(mv)])
        a = np.searchsorted(mt, starts)
        b = np.searchsorted(mt, starts + length)
        n = np.maximum(b - a, 1)
        activity = (csum[b] - csum[a]) / n
        span = activity.max() - activity.min()
        activity = (activity - activity.min()) / span if span > 0 else np.zeros(len(starts))
    overlap = np.zeros(len(starts))
    for u0, u1 in used:
        overlap += np.clip(np.minimum(starts + length, u1) - np.maximum(starts, u0), 0.0, None) / length
    # Rendering decodes from the keyframe before the in-point: among windows about as active,
    # prefer one that starts on or just after a keyframe (long-GOP camera files).
    preroll = np.zeros(len(starts))
    if kt is not None:
        before = kt[np.clip(np.searchsorted(kt, starts + 1e-6) - 1, 0, len(kt) - 1)]
        preroll = np.clip((starts - before) / PREROLL_SCALE, 0.0, 1.0)
    best = int(np.argmax(activity - 2.0 * overlap - W_PREROLL * preroll))
    return float(starts[best])


# --- planning ---------------------------------------------------------------------------------


def plan_edit(
    clips: Sequence[Clip],
    music: tuple,
    *,
    duration: float,
    style: str,
    fps: int,
    width: int,
    height: int,
    seed: int,
    aspect: str = "auto",
    folder: str = "",
    title: str | None = None,
) -> EditList:
    """Plan a preview. ``clips``: ``(source_name, features, arrays)`` per video, in a stable order;
    ``music``: ``(path_name, features, arrays)``. Same inputs and seed give the same edit."""
    if style not in BEATS_PER_CUT:
        raise ValueError(f"unknown style {style!r}")
    if not clips:
        raise RenderError("no clip to make a preview from")
    warnings: list[str] = []
    music_name, music_features, music_arrays = music
    m = _music(music_features, music_arrays or {}, warnings)
    out_w, out_h, aspect = output_size(aspect, [f for _, f, _ in clips], width, height)
    k0, k_end = _start_and_end(m, float(duration), warnings)
    beats = m.beats
    t0 = float(beats[k0])
    is_down = np.zeros(len(beats), dtype=bool)
    is_down[[_nearest_beat(beats, d) for d in m.downbeats]] = True
    allowed = _allowed_starts(is_down, m.stride)
    allowed[k_end] = True

    def snap(i: int) -> int:
        # The next beat a shot may start on (the preview's end always may).
        return i + int(np.argmax(allowed[i:])) if i < k_end else k_end

    def on_grid(t: float) -> float:
        # Absolute beat time -> nearest output frame: cut times never accumulate rounding.
        return round(round((t - t0) * fps) / fps, 6)

    cand = _candidates(clips)
    n = len(cand.start)
    uses = np.zeros(n, dtype=np.int64)
    used_windows: dict[int, list[tuple[float, float]]] = {}
    source_uses = np.zeros(len(cand.sources), dtype=np.int64)
    n_sources_with_footage = len(np.unique(cand.clip))
    rng = np.random.default_rng(seed)
    avail = cand.end - cand.start
    sig_scale = float(np.max(np.linalg.norm(cand.signature - cand.signature.mean(0), axis=1))) * 2 or 1.0

    cuts: list[Cut] = []
    prev: int | None = None
    k = k0
    stopped = False
    while k < k_end:
        level = _level_at(m, float(beats[k]))
        n_beats = beats_per_cut(BEATS_PER_CUT[style][level], m.bpb)
        # A long shot that starts off the bar (after a section change) ends on the next downbeat,
        # so cuts get back onto the bar.
        nk = min(k + n_beats, k_end)
        if n_beats >= m.bpb and not is_down[k]:
            nxt = np.flatnonzero(is_down[k + 1:nk])
            if len(nxt):
                nk = k + 1 + int(nxt[0])
        nk = snap(nk)
        while nk < k_end and on_grid(beats[nk]) - on_grid(beats[k]) < MIN_SHOT - 1e-9:
            nk = snap(nk + 1)
        # Never leave a tail too short to be a shot: fold it into this one.
        if 0 < on_grid(beats[k_end]) - on_grid(beats[nk]) < MIN_SHOT - 1e-9:
            nk = k_end
        if on_grid(beats[nk]) - on_grid(beats[k]) < MIN_SHOT - 1e-9:
            break  # only a sliver of music left (can only happen at the very end)

        choice = None
        # Too little footage for this slot: try shorter slots (fewer beats) before giving up.
        for end_k in [e for e in _shorter(k, nk, beats, on_grid) if allowed[e]]:
            rec_in, rec_out = on_grid(beats[k]), on_grid(beats[end_k])
            length = rec_out - rec_in
            energy = _energy_between(m, float(beats[k]), float(beats[end_k]))
            jitter = rng.random(n)
            score = (W_SHARP * cand.sharp_rank + W_BRIGHT * cand.bright_score
                     + W_MOTION * (1.0 - np.abs(cand.motion_rank - energy)) + W_JITTER * jitter)
            if prev is not None:
                dist = np.linalg.norm(cand.signature - cand.signature[prev], axis=1) / sig_scale
                score = score + W_VARIETY * np.clip(dist, 0.0, 1.0)
            if source_uses.sum():
                score = score + W_BALANCE * (1.0 - source_uses[cand.clip] / source_uses.max())
            quality = score.copy()
            score = score + W_UNUSED * (uses == 0)
            ok = (avail >= length - 1e-6) & (uses < REUSE_CAP)
            if prev is not None:
                # Never the same source twice in a row; with a single clip, at least another scene.
                ok &= (cand.clip != cand.clip[prev]) if n_sources_with_footage > 1 else (np.arange(n) != prev)
            if ok.any():
                best = int(np.argmax(np.where(ok, score, -np.inf)))
                choice = (best, end_k, rec_in, rec_out, float(quality[best]))
                break
        if choice is None:
            stopped = True
            break
        best, nk, rec_in, rec_out, quality = choice
        length = rec_out - rec_in
        src_in = _in_point(cand, best, length, used_windows.get(best, []))
        src_in = round(src_in, 6)
        src_out = round(min(src_in + length, float(cand.end[best])), 6)
        used_windows.setdefault(best, []).append((src_in, src_out))
        uses[best] += 1
        source_uses[cand.clip[best]] += 1
        cuts.append(Cut(index=len(cuts), record_in=rec_in, record_out=rec_out, source=cand.sources[cand.clip[best]],
                        source_in=src_in, source_out=src_out, scene=int(cand.scene[best]), beat=int(k - k0),
                        score=round(quality / (W_SHARP + W_BRIGHT + W_MOTION + W_VARIETY + W_BALANCE + W_JITTER), 4)))
        prev = best
        k = nk

    if not cuts:
        raise RenderError("the clips are too short for a preview: no scene lasts a single shot "
                          f"({MIN_SHOT:g} s at least)")
    if n_sources_with_footage == 1:
        warnings.append("only one clip: consecutive shots come from the same source")
    end = cuts[-1].record_out
    if stopped:
        warnings.append(f"not enough footage for {on_grid(beats[k_end]):.1f} s without reusing a scene more than "
                        f"{REUSE_CAP} times: the preview is {end:.1f} s")
    # The music fades out over the last bar.
    period = float(np.median(np.diff(beats)))
    fade = round(min(period * m.bpb, end), 6)
    for w in warnings:
        log.warning("%s: %s", folder or "preview", w)
    return EditList(
        folder=folder, fps=int(fps), width=out_w, height=out_h, duration=end, music_path=music_name,
        music_offset=round(t0, 6), tempo=round(float(m.tempo), 3), fade_start=round(end - fade, 6),
        fade_duration=fade, first_beat=int(k0), cuts=cuts, warnings=warnings, title=title, style=style,
        aspect=aspect, seed=int(seed))


def beats_per_cut(n: int, bpb: int) -> int:
    """The table's beats per shot in the music's own bars: its 4, 8 and 16 are 1, 2 and 4 bars
    (a 3/4 bar is 3 beats, a 6/8 bar 2 dotted quarters); 1 and 2 stay beats."""
    return n if n < 4 else max(1, (n // 4) * bpb)


def _allowed_starts(is_down: np.ndarray, stride: str) -> np.ndarray:
    """Which beats a shot may start on: all of them, every other beat counted from each
    downbeat, or the downbeats only."""
    if stride == "beat":
        return np.ones(len(is_down), dtype=bool)
    if stride == "bar" or not is_down.any():
        return is_down.copy() if is_down.any() else np.ones(len(is_down), dtype=bool)
    # Beats since the last downbeat, vectorised: index minus the index of the last downbeat.
    idx = np.arange(len(is_down))
    last_down = np.maximum.accumulate(np.where(is_down, idx, 0))
    return (idx - last_down) % 2 == 0


def _shorter(k: int, nk: int, beats: np.ndarray, on_grid) -> list[int]:
    """Slot ends to try, longest first: the planned end, then halves while >= MIN_SHOT."""
    ends = [nk]
    n = nk - k
    while n > 1:
        n //= 2
        if on_grid(beats[k + n]) - on_grid(beats[k]) < MIN_SHOT - 1e-9:
            break
        ends.append(k + n)
    return ends
