"""Beat grid -> cut list: which shot plays on which beats. Pure numpy, seeded, reproducible.

The timeline starts on a downbeat after the music's quiet intro and ends on a phrase boundary
near the requested duration; bars and phrases follow the analysed meter (3 beats a bar in a
waltz), and a beat grid the analysis is unsure of is only cut on its stronger pulse. Every cut
starts exactly on a beat: cut times are the *absolute* beat times (minus the music offset)
rounded to the output frame grid, never sums of durations, so rounding errors cannot
accumulate into drift. How many beats a shot lasts follows the style
and the loudness of the section it falls in (short shots in the drop, long ones in a breakdown).

For every slot, all candidate scenes of all clips are scored in one vectorised pass:
quality (sharp, well exposed), motion matched to the music's energy, never the same source twice
in a row, visual variety against the previous shot (signature distance), and a small seeded
jitter so another seed gives another edit. A scene offers as many windows as its length allows:
what is counted is which seconds of it were shown, not how often the scene was picked, so a
scene with an unseen stretch as long as the slot always comes before footage already shown,
and once everything was shown, windows repeat, least seen first. A scene must be at least as
long as its slot, so no segment ever crosses a detected cut; the in-point is the most active
unseen window of the scene.
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

# Score weights; they trade off against each other among the scenes a slot may take. Whether a
# scene still has an unseen window as long as the slot is no weight but a tier: such scenes
# always come first (see plan_edit).
W_SHARP, W_BRIGHT, W_MOTION, W_VARIETY, W_SHARE, W_JITTER = 0.25, 0.15, 0.25, 0.20, 0.60, 0.20
# Screen time follows the footage: a clip gets up to W_SHARE for being a whole slot behind its
# share of the footage (and loses as much for being a slot ahead). A clip not shown yet gets up
# to W_NEW_CLIP more, as much as there are such clips for the slots left, so that every clip
# appears when there are slots enough.
W_NEW_CLIP = 1.0
# Repeats (no unseen window left anywhere): minus this much per time the scene was shown on
# average, so the least seen scenes repeat first.
W_SEEN = 2.0
# In-point choice: a window loses this much for every stretch of unseen footage it leaves beside
# it in its scene (between it and the seen footage or the scene's ends), twice for one too short
# for another shot of this length, scaled by how tight the footage is (the music left to fill
# over the unseen footage left).
W_PACK = 1.0
# Dark in-points. Per-frame brightness is not stored, so what is known stands in for it: the
# first FADE_GUARD seconds of a source (where a fade from black, an exposure still settling or
# the shake of the record button are), the frames around a flash the analysis found (it lists
# them in features["flashes"]: FLASH_BEFORE frames before one to FLASH_AFTER after it), and
# scenes darker than BLACK_LEVEL (a lens cap, a pocket). A window starting there loses W_DARK
# (more than any difference in activity, less than showing a frame twice); a scene with no
# other window loses W_DARK_SCENE, the last of the goals.
FADE_GUARD, FLASH_BEFORE, FLASH_AFTER, BLACK_LEVEL = 1.0, 2, 1, 0.1
W_DARK, W_DARK_SCENE = 1.5, 0.3
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
    black: np.ndarray  # bool: the scene is darker than BLACK_LEVEL
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
        black=brightness < BLACK_LEVEL, sources=[name for name, _, _ in clips], clips=clips, timing={})


def _frame_grid(cand: _Candidates, ci: int) -> tuple:
    if ci not in cand.timing:
        _, features, arrays = cand.clips[ci]
        cand.timing[ci] = _clip_timing(features, arrays or {})
    return cand.timing[ci]


def _snap_up(ft: np.ndarray | None, fps: float, t: np.ndarray) -> np.ndarray:
    """The first frame at or after each time ``t`` (the clip's own frame grid)."""
    if ft is not None:
        return ft[np.clip(np.searchsorted(ft, t - 1e-6), 0, len(ft) - 1)]
    return np.ceil(t * fps - 1e-6) / fps


def _gaps(cand: _Candidates, c: int, used: np.ndarray) -> np.ndarray:
    """The unseen stretches ``(start, end)`` of scene ``c``, each start on the frame grid, given
    the windows ``used`` ((k, 2) seconds) already shown from it."""
    ft, _, _, fps, _ = _frame_grid(cand, int(cand.clip[c]))
    start, end = float(cand.start[c]), float(cand.end[c])
    if len(used) == 0:
        return np.array([[start, end]])
    u = used[np.argsort(used[:, 0])]
    covered_to = np.maximum.accumulate(u[:, 1])
    g0 = np.concatenate([[start], covered_to])
    g1 = np.concatenate([u[:, 0], [end]])
    g0 = np.maximum(_snap_up(ft, fps, g0), g0)
    keep = g1 - g0 > 1e-6
    return np.stack([g0[keep], g1[keep]], axis=1) if keep.any() else np.zeros((0, 2))


def _dark_starts(cand: _Candidates, ci: int, starts: np.ndarray) -> np.ndarray:
    """Which in-points ``starts`` of clip ``ci`` open on a fade from black or near a flash."""
    ft, _, _, fps, _ = _frame_grid(cand, ci)
    dark = starts < FADE_GUARD - 1e-6
    flashes = np.asarray(cand.clips[ci][1].get("flashes") or [], dtype=np.int64)
    if len(flashes):
        if ft is not None:
            flashes = flashes[(flashes >= 0) & (flashes < len(ft))]
            lo, hi = ft[np.maximum(flashes - FLASH_BEFORE, 0)], ft[np.minimum(flashes + FLASH_AFTER, len(ft) - 1)]
        else:
            lo, hi = (flashes - FLASH_BEFORE) / fps, (flashes + FLASH_AFTER) / fps
        dark |= ((starts[:, None] >= lo[None, :] - 1e-6) & (starts[:, None] <= hi[None, :] + 1e-6)).any(axis=1)
    return dark


def _in_point(cand: _Candidates, c: int, length: float, used: np.ndarray, fresh: bool, tight: float) -> float:
    """Start of the window of ``length`` in scene ``c``, on the clip's frame grid. ``fresh``: one
    that shows nothing of the windows ``used`` already ((k, 2) seconds), the most active of
    them, packed against seen footage when footage is ``tight`` (0..1); otherwise the least
    seen one."""
    ft, mt, mv, fps, kt = _frame_grid(cand, int(cand.clip[c]))
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
    gaps = _gaps(cand, c, used)
    if len(starts) > 256:  # plenty of resolution; keeps long scenes cheap
        keys = kt[(kt >= start - 1e-6) & (kt <= latest + 1e-6)] if kt is not None else np.zeros(0)
        starts = np.union1d(starts[np.linspace(0, len(starts) - 1, 256).round().astype(np.int64)], keys)
        if len(gaps):
            # The first and the last window of every unseen stretch, so that one that fits exactly is found.
            last = gaps[:, 1] - length
            if ft is not None:
                last = ft[np.clip(np.searchsorted(ft, last + 1e-6) - 1, 0, len(ft) - 1)]
            else:
                last = np.floor(last * fps + 1e-6) / fps
            edges = np.concatenate([gaps[:, 0], last])
            starts = np.union1d(starts, edges[(edges >= start - 1e-6) & (edges <= latest + 1e-6)])
    activity = np.zeros(len(starts))
    if mv is not None and len(mv) > 1:
        csum = np.concatenate([[0.0], np.cumsum(mv)])
        a = np.searchsorted(mt, starts)
        b = np.searchsorted(mt, starts + length)
        n = np.maximum(b - a, 1)
        activity = (csum[b] - csum[a]) / n
        span = activity.max() - activity.min()
        activity = (activity - activity.min()) / span if span > 0 else np.zeros(len(starts))
    # How many times each window's frames were shown, on average (0: a fresh window).
    overlap = np.zeros(len(starts))
    if len(used):
        ends = starts + length
        overlap = (np.clip(np.minimum(ends[:, None], used[None, :, 1]) - np.maximum(starts[:, None], used[None, :, 0]),
                           0.0, None).sum(axis=1) / length)
    # Rendering decodes from the keyframe before the in-point: among windows about as active,
    # prefer one that starts on or just after a keyframe (long-GOP camera files).
    preroll = np.zeros(len(starts))
    if kt is not None:
        before = kt[np.clip(np.searchsorted(kt, starts + 1e-6) - 1, 0, len(kt) - 1)]
        preroll = np.clip((starts - before) / PREROLL_SCALE, 0.0, 1.0)
    value = activity - W_PREROLL * preroll - W_DARK * _dark_starts(cand, int(cand.clip[c]), starts)
    if fresh and len(gaps):
        # Unseen footage left on either side of the window, inside its stretch: a stretch
        # shorter than the slot is likely never shown.
        g = np.clip(np.searchsorted(gaps[:, 0], starts + 1e-6) - 1, 0, len(gaps) - 1)
        left = starts - gaps[g, 0]
        right = gaps[g, 1] - (starts + length)
        # Every stretch left counts, and one shorter than the shot twice: at tight footage, windows
        # line up against each other instead of leaving slivers.
        waste = ((left > 1e-6).astype(float) + (right > 1e-6)
                 + ((left > 1e-6) & (left < length)) + ((right > 1e-6) & (right < length)))
        value = np.where(overlap < 1e-6, value - W_PACK * tight * waste, -np.inf)
        if np.isfinite(value).any():
            return float(starts[int(np.argmax(value))])
    return float(starts[int(np.argmax(value - W_SEEN * overlap))])


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
    avail = cand.end - cand.start
    used_windows: dict[int, list[tuple[float, float]]] = {}
    free = avail.copy()  # the longest unseen stretch of every scene
    unseen = avail.copy()  # seconds of every scene never shown
    seen = np.zeros(n)  # seconds shown of every scene, counted as often as shown
    n_src = len(cand.sources)
    share = np.bincount(cand.clip, weights=avail, minlength=n_src) / float(avail.sum())
    screen = np.zeros(n_src)  # seconds on screen of every clip
    n_sources_with_footage = len(np.unique(cand.clip))
    rng = np.random.default_rng(seed)
    sig_scale = float(np.max(np.linalg.norm(cand.signature - cand.signature.mean(0), axis=1))) * 2 or 1.0
    t_end = on_grid(beats[k_end])

    def scores(k: int, end_k: int, prev: int | None) -> np.ndarray:
        rec_in, length = on_grid(beats[k]), on_grid(beats[end_k]) - on_grid(beats[k])
        energy = _energy_between(m, float(beats[k]), float(beats[end_k]))
        score = (W_SHARP * cand.sharp_rank + W_BRIGHT * cand.bright_score
                 + W_MOTION * (1.0 - np.abs(cand.motion_rank - energy)) + W_JITTER * rng.random(n))
        if prev is not None:
            dist = np.linalg.norm(cand.signature - cand.signature[prev], axis=1) / sig_scale
            score = score + W_VARIETY * np.clip(dist, 0.0, 1.0)
        # A black scene, or one whose every window would open in the first FADE_GUARD s of its source.
        score = score - W_DARK_SCENE * (cand.black | (cand.end - np.maximum(cand.start, FADE_GUARD) < length - 1e-6))
        behind = np.clip((share * (rec_in + length) - screen) / length, -1.0, 1.0)
        unshown = (screen == 0) & (share > 0)
        slots_left = max(1.0, (t_end - rec_in) / length)
        behind = behind + W_NEW_CLIP / W_SHARE * unshown * min(1.0, unshown.sum() / slots_left)
        return score + W_SHARE * behind[cand.clip]

    def neighbours_ok(prev: int | None, fits: np.ndarray) -> np.ndarray:
        if prev is None:
            return np.ones(n, dtype=bool)
        if n_sources_with_footage > 1:
            return cand.clip != cand.clip[prev]  # never the same source twice in a row
        # A single clip: another scene; the same one (another window) only if no other fits.
        other = np.arange(n) != prev
        return other if (fits & other).any() else np.ones(n, dtype=bool)

    cuts: list[Cut] = []
    prev: int | None = None
    k = k0
    stopped = None
    repeated = 0.0  # seconds of the preview that show footage a second time
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

        # The slot and, when no scene has that much unseen footage, shorter ones (fewer beats):
        # first the longest that an unseen window fills; only then the longest any window fills,
        # least seen first.
        ends = [e for e in _shorter(k, nk, beats, on_grid) if allowed[e]]
        choice = None
        for fresh in (True, False):
            for end_k in ends:
                rec_in, rec_out = on_grid(beats[k]), on_grid(beats[end_k])
                length = rec_out - rec_in
                fits = avail >= length - 1e-6
                ok = fits & neighbours_ok(prev, fits)
                if fresh:
                    ok &= free >= length - 1e-6
                if not ok.any():
                    continue
                quality = scores(k, end_k, prev)
                score = quality if fresh else quality - W_SEEN * seen / avail
                best = int(np.argmax(np.where(ok, score, -np.inf)))
                choice = (best, end_k, rec_in, rec_out, float(quality[best]), fresh)
                break
            if choice is not None:
                break
        if choice is None:
            length = on_grid(beats[ends[-1]]) - on_grid(beats[k])
            fits = avail >= length - 1e-6
            stopped = (f"no scene lasts the next shot ({length:.1f} s)" if not fits.any() else
                       f"only {cand.sources[cand.clip[prev]]} has a scene as long as the next shot ({length:.1f} s), "
                       "and a shot never follows one from its own source")
            break
        best, nk, rec_in, rec_out, quality, fresh = choice
        length = rec_out - rec_in
        used = np.asarray(used_windows.get(best, []), dtype=np.float64).reshape(-1, 2)
        tight = min(1.0, (t_end - rec_in) / max(float(unseen.sum()), 1e-6))
        src_in = round(_in_point(cand, best, length, used, fresh, tight), 6)
        src_out = round(min(src_in + length, float(cand.end[best])), 6)
        if len(used):
            repeated += float(np.clip(np.minimum(src_out, used[:, 1]) - np.maximum(src_in, used[:, 0]), 0.0, None).sum())
        used_windows.setdefault(best, []).append((src_in, src_out))
        gaps = _gaps(cand, best, np.asarray(used_windows[best]))
        free[best] = float((gaps[:, 1] - gaps[:, 0]).max()) if len(gaps) else 0.0
        unseen[best] = float((gaps[:, 1] - gaps[:, 0]).sum()) if len(gaps) else 0.0
        seen[best] += src_out - src_in
        screen[cand.clip[best]] += rec_out - rec_in
        cuts.append(Cut(index=len(cuts), record_in=rec_in, record_out=rec_out, source=cand.sources[cand.clip[best]],
                        source_in=src_in, source_out=src_out, scene=int(cand.scene[best]), beat=int(k - k0),
                        score=round(quality / (W_SHARP + W_BRIGHT + W_MOTION + W_VARIETY + W_SHARE + W_JITTER), 4)))
        prev = best
        k = nk

    if not cuts:
        raise RenderError("the clips are too short for a preview: no scene lasts a single shot "
                          f"({MIN_SHOT:g} s at least)")
    if n_sources_with_footage == 1:
        warnings.append("only one clip: consecutive shots come from the same source")
    end = cuts[-1].record_out
    if repeated > 1e-3:
        footage = float(avail.sum())
        why = (f"the footage is short ({footage:.1f} s of scenes)" if footage < end + 1e-6 else
               "the unseen footage left was in stretches shorter than the shots, or in the previous shot's source")
        warnings.append(f"{repeated:.1f} s of the {end:.1f} s preview show footage a second time (the least seen "
                        f"first): {why}")
    if stopped:
        warnings.append(f"the preview is {end:.1f} s, {t_end - end:.1f} s shorter than the {t_end:.1f} s planned: "
                        + stopped)
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
