"""Video analysis: scenes (PySceneDetect-compatible cuts), motion, sharpness, brightness, colour.

Scene detection reproduces PySceneDetect's ``ContentDetector`` (threshold 27, ``min_scene_len``
15 frames, merge-mode flash filter). The score of frame *i* is the mean absolute difference of
the hue, saturation and value planes (OpenCV's 8-bit HSV, same integer arithmetic, bit-exact) of
frames *i-1* and *i*, each downscaled so that its longer side is 256 pixels (PySceneDetect's
``compute_downscale_factor``), averaged over the three planes with equal weights.

What differs from PySceneDetect is *which* frames are decoded. Two strategies:

``sparse`` (long files, the usual case)
    1. **Packet index** (``media.video.scan_packets``): pts, size, keyframe flag and picture type
       of every frame, read from the container and a few header bits; nothing is decoded.
    2. **Candidates**: intra pictures an encoder placed off its keyframe grid (its own scene-cut
       decision) and *size spikes* (a P/B frame that could not be predicted from the frames
       before it is several times larger than its neighbours of the same type).
    3. **Anchors**: intra frames decoded alone at the 256-pixel size, one every
       ``ANCHOR_SPACING`` seconds plus the intra frames around every candidate.
    4. Each candidate is settled from the anchors around it: a difference far above the
       threshold is a cut; far below, or a little below with the layout of colours unchanged
       (9x16 block means: a pan or noise, not a new shot), is no cut; anything else is decoded
       frame by frame from its keyframe and scored exactly. A spike whose exact frame is
       ambiguous (it follows a run of B-frames) can only be ruled out that way (anchors not
       clearly different, layout unchanged: a burst of motion or noise); so can several
       spikes close together after which the frames stay large (a pan speeding up), but not
       ones after which they shrink back (a flash in and out, or a cut and a cut back: those
       are always decoded).
    5. A change between neighbouring anchors that nothing explains (a cut that fell on a regular
       keyframe) is narrowed down by decoding the keyframes in between. Between two neighbouring
       ones, the frame before the later keyframe is decoded first, with only the reference
       frames it needs: still the earlier shot, and above the threshold against the keyframe,
       is a cut exactly on the keyframe. Otherwise every frame between them is scored exactly.

    A window less than 15 frames after a cut is skipped when nothing follows it: the flash
    filter would merge it into that cut whatever its score.

``full`` (short files, or when the index shows so many candidates that sparse would decode most
frames anyway): every frame is decoded once, in order, and scored, as PySceneDetect does but
with FFmpeg doing the downscale.

Either way the above-threshold frames go through PySceneDetect's ``FlashFilter`` (merge mode,
15 frames), reproduced by :func:`flash_filter_merge`.

Features (``Analysis.features``), scores all 0..1:

- ``motion``: per frame, the compressed size of the frame divided by the size of the intra
  frames around it (the share of the picture that had to be sent again), smoothed over 0.3 s
  and log-scaled: ``log10(ratio / 0.005) / 2`` clipped, so 0.005 (a locked-off shot) -> 0,
  0.05 -> 0.5, 0.5 -> 1. Compressed bits also pay for sensor noise, so a noisy static shot
  scores above a clean one. A scene's ``motion`` is the mean over its frames.
- ``sharpness``: variance of the 4-neighbour Laplacian of luma at 512 pixels wide (of the
  scene's decoded frames), as ``log10(1 + var) / 3.5`` clipped: 10 -> 0.30 (soft),
  100 -> 0.57, 1000 -> 0.86 (crisp).
- ``brightness``: mean Rec. 601 luma / 255.
- ``contrast``: standard deviation of luma / 80, clipped (flat grey 0, typical scenes 0.3-0.8).
- ``colorfulness``: Hasler & Suesstrunk's M / 120, clipped (greys 0, vivid footage 0.6-1).
- ``signature``: 16 floats summing to 1: 12 hue bins of the coloured pixels (S > 38 and
  V > 25 of 255) and 4 value bins of the grey ones, over the scene's decoded frames.
- ``best_in``: start (seconds from the first frame) of the ``BEST_WINDOW``-second window (or
  the whole scene if shorter) with the highest mean motion.

Arrays (``Analysis.arrays``), in display order:

- ``frame_times`` float64: pts of every frame in seconds, relative to the first frame.
- ``motion`` float32: the per-frame motion score (same length as ``frame_times``).
- ``packet_sizes`` int32: compressed size of every frame, bytes.
- ``keyframe_times`` float64: pts of the keyframes, relative to the first frame.
- ``decoded_frames`` int32: indices of the frames kept for features (and, in sparse mode,
  every frame that was decoded).
- ``score_frames`` int32 and ``scores`` float32: the frames whose ContentDetector score was
  computed exactly, and the scores.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from montaged.analysis import Analysis, Progress
from montaged.errors import MediaError
from montaged.media import MediaInfo
from montaged.media import video as mv

log = logging.getLogger("montaged.analysis.video")

THRESHOLD = 27.0  # ContentDetector default
MIN_SCENE_LEN = 15  # frames, ContentDetector default
# A cut whose picture returns within this many frames is a flash (see drop_flashes): a camera
# flash or a strobe lights one or two frames; 0.2 s at 30 fps leaves room for a slow strobe.
FLASH_FRAMES = 6
# Anchors are up to a GOP away from a cut, so shot drift (a pan) can move their difference by
# this much either way: within the margin, decode and score exactly.
PROXY_MARGIN = 12.0
ANCHOR_SPACING = 4.0  # seconds between anchors where nothing happens
SPIKE_RATIO = 1.4  # P frame size / median of the previous SPIKE_WINDOW P frames ...
SPIKE_INTRA_FRACTION = 0.2  # ... and / the size of the intra frames around it,
SPIKE_STRONG = 3.0  # ... or the jump alone is this large (VP9 codes cuts from golden frames)
SPIKE_STRONG_FRACTION = 0.1  # ... and still this fraction of an intra frame (not a few bytes)
SPIKE_B_RATIO = 2.2  # B frame size / median of the previous SPIKE_WINDOW B frames ...
SPIKE_B_INTRA_FRACTION = 0.1  # ... and / the size of the intra frames around it
SPIKE_WINDOW = 2
# Neighbouring anchors whose 16x9 block colours differ less than this are the same shot even if
# their pixels differ a lot (a pan moves every pixel, not the colours of the regions).
COARSE_GATE = 20.0
MERGE_GAP = 15  # frames: spike windows closer than this in one GOP are decoded as one span
SUSTAIN_FRAMES = 3  # P frames before and after a group of spikes compared by sustained_change
SUSTAIN_RATIO = 1.5
# A predicted frame this large next to the intra frames is nearly always a cut (measured on the
# bench clips: cuts 0.23-1.1 of a keyframe, motion or noise spikes 0.15-0.56).
LIKELY_CUT = 0.6
FULL_BELOW_FRAMES = 60  # shorter files are simply decoded in full
FULL_IF_FRACTION = 0.85  # sparse is abandoned when it would decode this share of the frames
INTRA_COST = 4.0  # decoding an intra picture costs about this many predicted ones
# Motion = log10(ratio / MOTION_FLOOR) / log10(MOTION_CEIL / MOTION_FLOOR), clipped to 0..1,
# where ratio = predicted frame size / intra frame size: 0.005 (a locked-off shot) -> 0,
# 0.05 -> 0.5, 0.5 (half the picture re-sent every frame) -> 1.
MOTION_FLOOR = 0.005
MOTION_CEIL = 0.5
BEST_WINDOW = 2.0
SHARP_WIDTH = 512
# Laplacian variance grows as a picture is downscaled (detail gets denser); used only for a
# scene with no decoded picture at SHARP_WIDTH, to bring the small picture's value to that scale.
SMALL_SHARP_SCALE = 0.5
FEATURE_SPACING = 0.5  # seconds between frames kept for features in full mode
SEGMENT_SECONDS = 60.0  # sparse mode works through long files in stretches this long
BATCH = 32  # frames per numpy batch: bounds the per-pixel temporaries


# --------------------------------------------------------------------------------------------
# ContentDetector's metric


_SHIFT = 12
_I = np.arange(256, dtype=np.int64)
_SDIV = np.zeros(256, np.int64)
_SDIV[1:] = np.round((255 << _SHIFT) / _I[1:]).astype(np.int64)
_HDIV = np.zeros(256, np.int32)
_HDIV[1:] = np.round((180 << _SHIFT) / (6.0 * _I[1:])).astype(np.int32)
# Saturation for every (V, V - min) pair, with OpenCV's rounding: one table lookup per pixel.
_SLUT = ((_I[None, :] * _SDIV[_I[:, None]] + (1 << (_SHIFT - 1))) >> _SHIFT).clip(0, 255).astype(np.uint8).ravel()


def hsv_planes(bgrp: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit ``COLOR_BGR2HSV``, bit-exact, on planar frames.

    ``bgrp``: (n, 3, h, w) uint8 with planes B, G, R. Returns (n, 3, h*w) uint8 with planes
    H (0..179), S, V. Planar input keeps every numpy operation on contiguous memory.
    """
    n = bgrp.shape[0]
    flat = bgrp.reshape(n, 3, -1)
    b, g, r = flat[:, 0], flat[:, 1], flat[:, 2]
    v = np.maximum(np.maximum(b, g), r)
    diff = v - np.minimum(np.minimum(b, g), r)
    s = np.take(_SLUT, (v.astype(np.uint16) << 8) | diff)
    vr = v == r
    vg = (v == g) & ~vr
    b32, g32, r32, d32 = (x.astype(np.int32) for x in (b, g, r, diff))
    num = np.where(vr, g32 - b32, np.where(vg, b32 - r32 + 2 * d32, r32 - g32 + 4 * d32))
    h = (num * np.take(_HDIV, diff) + (1 << (_SHIFT - 1))) >> _SHIFT
    h += np.where(h < 0, 180, 0).astype(np.int32)
    return np.stack([h.astype(np.uint8), s, v], axis=1)


def content_scores(hsv_a: np.ndarray, hsv_b: np.ndarray) -> np.ndarray:
    """ContentDetector's ``content_val`` for matching frames of two (n, 3, p) HSV stacks:
    the mean over H, S and V of the mean absolute pixel difference."""
    d = np.abs(hsv_a.astype(np.int16) - hsv_b.astype(np.int16))
    return d.mean(axis=2).mean(axis=1)


def flash_filter_merge(above, n_frames: int, length: int = MIN_SCENE_LEN) -> list[int]:
    """PySceneDetect's ``FlashFilter`` in MERGE mode, driven by the above-threshold frames only.

    Equivalent to feeding every frame 0..n-1 in order with ``above_threshold = i in above``:
    between two above-threshold frames the filter only acts when a pending merge is released,
    which can only happen exactly ``length`` frames after the last above-threshold frame.
    """
    cuts: list[int] = []
    last_above = 0
    merge_enabled = merge_triggered = False
    merge_start = 0
    for t in sorted(int(a) for a in above if 0 < a < n_frames):
        if merge_triggered:
            release = last_above + length
            if release < t and last_above - merge_start >= length:
                merge_triggered = False
                cuts.append(last_above)
        min_length_met = (t - last_above) >= length
        last_above = t
        if merge_triggered:
            continue
        if min_length_met:
            merge_enabled = True
            cuts.append(t)
        elif merge_enabled:
            merge_triggered = True
            merge_start = t
    if merge_triggered and last_above + length < n_frames and last_above - merge_start >= length:
        cuts.append(last_above)
    return cuts


def drop_flashes(cuts: list[int], above, hsv: dict[int, np.ndarray],
                 frames: int | None = None) -> tuple[list[int], list[int]]:
    """Split ``cuts`` into (cuts, flashes): a cut whose picture comes back within ``frames``
    frames is a camera flash or a strobe, not a new shot.

    PySceneDetect reports such a frame as a cut (its merge filter keeps the first of the two
    above-threshold frames, into and out of the flash). montaged follows the footage instead:
    the frame before the cut and an above-threshold frame just after it (the way back) are
    compared, and if they are the same picture (score under the threshold) the cut goes.
    Where a picture is unknown (not decoded), the cut stays: PySceneDetect's answer.
    """
    frames = FLASH_FRAMES if frames is None else frames
    above = sorted(int(a) for a in above)
    kept, flashes = [], []
    for c in cuts:
        back = [r for r in above if c < r <= c + frames and r in hsv]
        if c - 1 in hsv and back and float(content_scores(
                np.stack([hsv[c - 1]] * len(back)), np.stack([hsv[r] for r in back])).min()) < THRESHOLD:
            flashes.append(c)
        else:
            kept.append(c)
    return kept, flashes


# --------------------------------------------------------------------------------------------
# Candidates from the packet index


def _median_of_previous(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the ``window`` values before each position (NaN for the first one)."""
    n = len(values)
    padded = np.concatenate([np.full(window, np.nan), values.astype(np.float64)])
    view = np.lib.stride_tricks.sliding_window_view(padded, window)[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows at the start
        return np.nanmedian(view, axis=1)


def _spikes_of_type(size: np.ndarray, sel: np.ndarray, intra_ref: np.ndarray, ratio: float,
                    fraction: float) -> np.ndarray:
    """Frames of ``sel`` (one picture type) that jump above the previous ones of that type."""
    if len(sel) < 2:
        return np.zeros(0, dtype=np.int64)
    s = size[sel]
    before = _median_of_previous(s, SPIKE_WINDOW)
    with np.errstate(invalid="ignore"):
        hit = ((s >= ratio * before) & (s >= fraction * intra_ref[sel])) | (
            (s >= SPIKE_STRONG * before) & (s >= SPIKE_STRONG_FRACTION * intra_ref[sel]))
    hit &= ~np.isnan(before)
    return sel[hit].astype(np.int64)


def size_spikes(index: mv.PacketIndex) -> tuple[np.ndarray, np.ndarray]:
    """(P spikes, B spikes): display indices of predicted frames much larger than the frames of
    their type before them.

    The first frame after a cut cannot be predicted from the frames before it, so it is coded
    mostly intra. If the cut falls on a B frame, the next P frame still has to be predicted
    from the old shot, so a cut shows as a P spike at or just after it; the B frames of the new
    shot are often larger too (their only good reference is that P frame).
    """
    size = index.size.astype(np.float64)
    intra_idx = np.flatnonzero(index.intra)
    empty = np.zeros(0, dtype=np.int64)
    if len(intra_idx) == 0:
        return empty, empty
    intra_ref = np.interp(np.arange(len(size)), intra_idx, size[intra_idx])
    # Codecs without parsed picture types (VP9, ...) have only intra and "other" frames.
    has_types = bool(np.any(index.ptype[~index.intra] != mv.UNKNOWN))
    if not has_types:
        return _spikes_of_type(size, np.flatnonzero(~index.intra), intra_ref, SPIKE_RATIO,
                               SPIKE_INTRA_FRACTION), empty
    p = _spikes_of_type(size, np.flatnonzero((index.ptype == mv.P_FRAME) & ~index.intra),
                        intra_ref, SPIKE_RATIO, SPIKE_INTRA_FRACTION)
    b = _spikes_of_type(size, np.flatnonzero(index.ptype == mv.B_FRAME), intra_ref,
                        SPIKE_B_RATIO, SPIKE_B_INTRA_FRACTION)
    return p, b


def keyframe_grid(index: mv.PacketIndex) -> int | None:
    """The encoder's regular keyframe interval in frames, or None if it has none.

    The most common keyframe distance, if at least half of the distances are within one frame
    of it (x264 alternates 29 and 30 with B-frames) and none is longer; an encoder that only
    places keyframes at scene changes has no grid, and then every keyframe is a candidate.
    """
    keys = index.keyframes
    if len(keys) < 4:
        return None
    d = np.diff(keys)
    values, counts = np.unique(d, return_counts=True)
    grid = int(values[np.argmax(counts)])
    # An encoder's keyframe interval is a maximum: a longer gap means there is no grid.
    if np.mean(np.abs(d - grid) <= 1) < 0.5 or d.max() > grid + 1:
        return None
    return grid


def intra_candidates(index: mv.PacketIndex) -> np.ndarray:
    """Intra frames an encoder placed off its keyframe grid: its scene-change decisions."""
    intra = np.flatnonzero(index.intra)[1:]
    if len(intra) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = index.keyframes
    grid = keyframe_grid(index)
    if grid is None:
        return intra.astype(np.int64)
    prev_key = keys[np.maximum(np.searchsorted(keys, intra, side="left") - 1, 0)]
    off = ~index.key[intra] | (intra - prev_key < grid - 1)
    return intra[off].astype(np.int64)


def candidate_windows(index: mv.PacketIndex) -> np.ndarray:
    """(lo, hi) display ranges that may hold a cut, from the packet index alone.

    An off-grid intra frame c gives (c, c): encoders put the I picture on the cut itself (or
    (b, c) when B frames b..c-1 are stored after it and may show the new shot). A P spike s
    gives (p + 1, s) where p is the reference frame (I or P) shown before s: the cut is s or one
    of the B frames between p and s.
    """
    intra_c = intra_candidates(index)
    p_spikes, b_spikes = size_spikes(index)
    refs = np.flatnonzero(index.intra | (index.ptype == mv.P_FRAME) | (index.ptype == mv.UNKNOWN))
    spike_w = np.zeros((0, 2), dtype=np.int64)
    if len(p_spikes):
        prev_ref = refs[np.maximum(np.searchsorted(refs, p_spikes, side="left") - 1, 0)]
        lo = np.maximum(np.minimum(prev_ref + 1, p_spikes), 1)
        spike_w = np.stack([lo, p_spikes], axis=1)
    if len(b_spikes):
        # A large B frame: the cut is in its run of B frames or on the P frame that ends it.
        prev_ref = refs[np.maximum(np.searchsorted(refs, b_spikes, side="left") - 1, 0)]
        nxt = np.searchsorted(refs, b_spikes, side="right")
        next_ref = np.where(nxt < len(refs), refs[np.minimum(nxt, len(refs) - 1)], b_spikes)
        spike_w = np.concatenate([spike_w, np.stack([np.maximum(prev_ref + 1, 1), next_ref], axis=1)])
    # B frames shown just before an I frame but stored after it (open GOP: MPEG-4 Part 2,
    # non-IDR I frames) can belong to the new shot: the cut is then in that run.
    intra_lo = intra_c.copy()
    for j, c in enumerate(intra_c.tolist()):
        lo = c
        while lo - 1 > 0 and index.ptype[lo - 1] == mv.B_FRAME and \
                index.decode_order[lo - 1] > index.decode_order[c]:
            lo -= 1
        intra_lo[j] = lo
    intra_w = np.stack([intra_lo, intra_c], axis=1) if len(intra_c) else np.zeros((0, 2), np.int64)
    windows = np.concatenate([intra_w, spike_w]).astype(np.int64)
    if len(windows) == 0:
        return windows
    windows = np.unique(windows, axis=0)
    return windows[np.argsort(windows[:, 1], kind="stable")]


def max_b_run(index: mv.PacketIndex) -> int:
    """Longest run of consecutive B pictures in display order (0 without B-frames)."""
    b = (index.ptype == mv.B_FRAME).astype(np.int8)
    if not b.any():
        return 0
    edges = np.diff(np.concatenate([[0], b, [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


# --------------------------------------------------------------------------------------------
# Decoded frames


# Per-frame statistics kept for the scene features (pictures are not kept: a long file in full
# mode would need hundreds of megabytes for them).
_ST_LUMA, _ST_LUMA_STD, _ST_COLOR, _ST_SHARP, _ST_SHARP_SMALL, _ST_HIST = 0, 1, 2, 3, 4, 5
_N_STATS = 5 + 16


def frame_stats(bgrp: np.ndarray, hsv: np.ndarray, grays=None) -> np.ndarray:
    """(n, 21) float64 per frame: mean luma, luma std, colourfulness M, Laplacian variance at
    SHARP_WIDTH (NaN without the grey rendition), Laplacian variance at the small size, and the
    16 signature bins (pixel counts)."""
    n = bgrp.shape[0]
    x = bgrp.reshape(n, 3, -1).astype(np.float32)
    b, g, r = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    rg = r - g
    yb = 0.5 * (r + g) - b
    out = np.empty((n, _N_STATS), dtype=np.float64)
    out[:, _ST_LUMA] = y.mean(axis=1)
    out[:, _ST_LUMA_STD] = y.std(axis=1)
    out[:, _ST_COLOR] = np.hypot(rg.std(axis=1), yb.std(axis=1)) + 0.3 * np.hypot(
        rg.mean(axis=1), yb.mean(axis=1))
    out[:, _ST_SHARP] = np.nan
    if grays is not None:
        for j, gray in enumerate(grays):
            if gray is not None:
                out[j, _ST_SHARP] = laplacian_variance(gray[None])[0]
    out[:, _ST_SHARP_SMALL] = laplacian_variance(y.reshape(n, bgrp.shape[2], bgrp.shape[3]))
    out[:, _ST_HIST:] = signature_counts(hsv)
    return out


def signature_counts(hsv: np.ndarray) -> np.ndarray:
    """(n, 16) pixel counts: 12 hue bins of coloured pixels, 4 value bins of grey ones."""
    h = hsv[:, 0].astype(np.int32)
    s = hsv[:, 1]
    v = hsv[:, 2].astype(np.int32)
    coloured = (s > 38) & (v > 25)
    # One bincount over (frame, bin) pairs: bins 0..11 hue, 12..15 grey value.
    bins = np.where(coloured, (h * 12) // 180, 12 + v // 64)
    flat = bins + 16 * np.arange(len(hsv))[:, None]
    return np.bincount(flat.ravel(), minlength=16 * len(hsv)).reshape(len(hsv), 16)


def laplacian_variance(gray: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each of (n, h, w) luma frames."""
    g = gray.astype(np.float32)
    lap = g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(axis=1)


@dataclass
class _Frames:
    """What is known about decoded frames, by display index."""

    stats: dict[int, np.ndarray] = field(default_factory=dict)  # frame_stats rows
    hsv: dict[int, np.ndarray] = field(default_factory=dict)  # (3, p) uint8, sparse mode only
    coarse: dict[int, np.ndarray] = field(default_factory=dict)  # 9x16 block colours, sparse
    errors: int = 0

    def add(self, indices, images: np.ndarray, grays=None, *, keep_hsv: bool = True,
            hsv: np.ndarray | None = None) -> None:
        # In chunks: the per-pixel temporaries of a few hundred frames at once would take
        # hundreds of megabytes.
        for c in range(0, len(indices), BATCH):
            sl = slice(c, c + BATCH)
            chunk_hsv = hsv_planes(images[sl]) if hsv is None else hsv[sl]
            stats = frame_stats(images[sl], chunk_hsv, None if grays is None else grays[sl])
            for j, i in enumerate(indices[sl]):
                i = int(i)
                self.stats[i] = stats[j]
                if keep_hsv:
                    self.hsv[i] = chunk_hsv[j].copy()  # not a view that pins the whole chunk
                    self.coarse[i] = _coarse(images[c + j])

    def scores(self, pairs: list[tuple[int, int]]) -> np.ndarray:
        out = np.zeros(len(pairs))
        for c in range(0, len(pairs), BATCH):
            chunk = pairs[c:c + BATCH]
            a = np.stack([self.hsv[p] for p, _ in chunk])
            b = np.stack([self.hsv[q] for _, q in chunk])
            out[c:c + len(chunk)] = content_scores(a, b)
        return out

    def forget_pixels(self, indices) -> None:
        """Drop the HSV planes of frames no longer needed as neighbours (stats stay)."""
        for i in indices:
            self.hsv.pop(int(i), None)
            self.coarse.pop(int(i), None)


@dataclass
class Detection:
    """What the detector found and what it looked at."""

    cuts: list[int]
    frames: _Frames
    exact: dict[int, float]  # frame -> exact ContentDetector score
    strategy: str
    decoded: int  # frames decoded (including ones not kept)
    flashes: list[int] = field(default_factory=list)  # cuts PySceneDetect reports, dropped as flashes


def _sizes(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    small = mv.small_size(width, height)
    sw = min(SHARP_WIDTH, width)
    sw -= sw % 2
    sh = max(2, int(round(height * sw / width / 2)) * 2)
    return small, (sw, sh)


# --------------------------------------------------------------------------------------------
# Full strategy


def detect_full(vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int,
                progress: Progress) -> Detection:
    """Decode every frame once, in order, and score it: PySceneDetect's loop, cheaper."""
    n = len(index)
    small, sharp = _sizes(width, height)
    pos_of_pts = {int(p): i for i, p in enumerate(index.pts)}
    fps = (n - 1) / max(float(index.times[-1] - index.times[0]), 1e-9) if n > 1 else 30.0
    keep_every = max(1, int(round(FEATURE_SPACING * fps)))
    frames = _Frames()
    scores = np.full(n, np.nan)
    errors = [0]
    reader = vf.frames(index, size=small, fmt="bgrp", extra=(sharp, "gray"), errors=errors,
                       want_extra=lambda pts: pos_of_pts.get(pts, 1) % keep_every == 0)
    prev_hsv: np.ndarray | None = None
    batch_pos: list[int] = []
    batch_img: list[np.ndarray] = []
    batch_gray: list[np.ndarray | None] = []
    decoded = 0

    def flush() -> None:
        nonlocal prev_hsv
        if not batch_pos:
            return
        imgs = np.stack(batch_img)
        hsv = hsv_planes(imgs)
        pos = np.asarray(batch_pos)
        prev = np.concatenate([prev_hsv[None], hsv[:-1]]) if prev_hsv is not None else hsv[:-1]
        cur_pos = pos if prev_hsv is not None else pos[1:]
        if len(cur_pos):
            # Like PySceneDetect, compare with the previous *decoded* frame, even across a frame
            # the decoder dropped.
            scores[cur_pos] = content_scores(prev, hsv[len(hsv) - len(cur_pos):])
        # The pictures on both sides of every above-threshold frame: drop_flashes compares them.
        for j, p in enumerate(batch_pos):
            if not np.isnan(scores[p]) and scores[p] >= THRESHOLD:
                frames.hsv[p] = hsv[j].copy()
                before = hsv[j - 1] if j > 0 else prev_hsv
                if before is not None and p - 1 not in frames.hsv:
                    frames.hsv[p - 1] = before.copy()
        # Keep pictures for features: the regular samples and every frame that might start a
        # scene (its score is over the threshold).
        keep = [j for j, p in enumerate(batch_pos)
                if p % keep_every == 0 or (not np.isnan(scores[p]) and scores[p] >= THRESHOLD)]
        if keep:
            frames.add([batch_pos[j] for j in keep], imgs[keep], [batch_gray[j] for j in keep],
                       keep_hsv=False, hsv=hsv[keep])
        prev_hsv = hsv[-1]
        batch_pos.clear()
        batch_img.clear()
        batch_gray.clear()

    for pts, img, gray in reader:
        p = pos_of_pts.get(int(pts)) if pts is not None else None
        if p is None:
            continue
        decoded += 1
        batch_pos.append(p)
        batch_img.append(img)
        batch_gray.append(gray)
        if len(batch_pos) >= BATCH:
            flush()
            progress(0.1 + 0.8 * decoded / n)
    flush()
    frames.errors = errors[0]
    if decoded < n:
        log.info("%s: %d of %d indexed frames decoded", vf.path, decoded, n)
    above = np.flatnonzero(scores >= THRESHOLD)
    exact = {int(i): float(scores[i]) for i in np.flatnonzero(~np.isnan(scores))}
    cuts, flashes = drop_flashes(flash_filter_merge(above, n), above, frames.hsv)
    frames.hsv.clear()
    return Detection(cuts, frames, exact, "full", decoded, flashes)


# --------------------------------------------------------------------------------------------
# Sparse strategy


class _Sparse:
    """State of one sparse detection: what is decoded and what is scored."""

    def __init__(self, vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int) -> None:
        self.vf, self.index = vf, index
        self.small, self.sharp = _sizes(width, height)
        self.frames = _Frames()
        self.exact: dict[int, float] = {}
        self.decoded = 0
        self.intra = np.flatnonzero(index.intra)
        self.intra_set = set(int(i) for i in self.intra)
        # HSV planes of frames scored over the threshold and of the frames before them, kept
        # past forget_pixels for drop_flashes (a few per cut).
        self.flash_pixels: dict[int, np.ndarray] = {}

    def decode_intra(self, wanted) -> None:
        wanted = sorted({int(i) for i in wanted} - set(self.frames.hsv))
        for c in range(0, len(wanted), BATCH):  # bounded pictures in flight
            got = self.vf.decode_intra(self.index, wanted[c:c + BATCH], size=self.small,
                                       fmt="bgrp", extra={"gray": (self.sharp, "gray")})
            self.decoded += len(got.indices)
            self.frames.errors += got.errors
            self.frames.add(got.indices, got.images, got.extra["gray"])

    def decode_exact(self, first: int, last: int) -> None:
        """Decode frames first-1..last and score every frame of first..last exactly.

        The intra frames the decoder passes on the way (the GOP's keyframe at least) are kept
        as anchors too: they cost nothing more here, and a separate intra decode later would.
        """
        first = max(1, int(first))
        last = min(len(self.index) - 1, int(last))
        if last < first or self.covered(first, last):
            return
        keys = self.index.keyframes
        key = int(keys[np.searchsorted(keys, first - 1, side="right") - 1]) if len(keys) else 0
        on_the_way = [int(i) for i in self.intra[(self.intra >= key) & (self.intra < first - 1)]
                      if int(i) not in self.frames.hsv]
        keep = on_the_way + list(range(first - 1, last + 1))
        got = self.vf.decode_span(self.index, first - 1, last, keep=keep, size=self.small,
                                  fmt="bgrp", extra={"gray": (self.sharp, "gray")},
                                  extra_for=set(on_the_way))
        self.decoded += len(got.indices)
        self.frames.errors += got.errors
        self.frames.add(got.indices, got.images, got.extra.get("gray"))
        have = set(int(i) for i in got.indices)
        pairs = [(i - 1, i) for i in range(first, last + 1) if i in have and i - 1 in have]
        for (_, i), s in zip(pairs, self.frames.scores(pairs)):
            self.exact[i] = float(s)
            if s >= THRESHOLD:  # drop_flashes compares the pictures around it
                self.flash_pixels[i] = self.frames.hsv[i].copy()
                self.flash_pixels[i - 1] = self.frames.hsv[i - 1].copy()
        # Scored: only the intra frames and the span's ends can still serve as neighbours.
        self.frames.forget_pixels([i for i in have if i not in self.intra_set
                                   and i not in (first - 1, last)])

    def cut_on_keyframe(self, a: int, b: int) -> bool:
        """Settle a change between neighbouring anchors ``a`` and keyframe ``b`` (no candidate
        between them) as a cut on ``b`` itself, decoding only the reference frames.

        The frame shown just before ``b`` is decoded with the references it needs (most
        B-frames skipped: about half the GOP). If it is still the shot of ``a`` (the test step
        2 applies to anchors) and differs from ``b`` by the threshold, the cut is exactly on
        ``b``. Otherwise (or if that frame is a B-frame nothing refers to) the caller decodes
        the whole stretch.
        """
        index = self.index
        p = b - 1
        if p <= a or not index.key[b] or index.ptype[p] != mv.P_FRAME:
            return False
        got = self.vf.decode_span(index, p, p, keep=[p], size=self.small, fmt="bgrp")
        self.decoded += len(got.indices)
        self.frames.errors += got.errors
        if p not in got.indices.tolist():
            return False
        self.frames.add(got.indices, got.images)
        same_shot = (float(self.frames.scores([(a, p)])[0]) < THRESHOLD - PROXY_MARGIN
                     or self.layout_change(a, p) < COARSE_GATE)
        score = float(self.frames.scores([(p, b)])[0])
        if not same_shot or score < THRESHOLD:
            return False
        self.exact[b] = score
        return True

    def covered(self, first: int, last: int) -> bool:
        return all(i in self.exact for i in range(first, last + 1))

    def layout_change(self, a: int, b: int) -> float:
        """Mean difference of the 9x16 block colours of decoded frames a and b."""
        return float(np.abs(self.frames.coarse[a] - self.frames.coarse[b]).mean())

    def anchors(self) -> np.ndarray:
        return np.array(sorted(i for i in self.frames.hsv if i in self.intra_set), dtype=np.int64)


def anchor_schedule(index: mv.PacketIndex, windows: np.ndarray, spacing: float,
                    first: int = 0, last: int | None = None) -> np.ndarray:
    """Intra frames to decode first (within display frames first..last): around every
    candidate window the intra frame before it and the one at or after its end; the first and
    the last intra frame; and, in every ``spacing``-second slot that still has no anchor, its
    first intra frame."""
    intra = np.flatnonzero(index.intra)
    intra = intra[(intra >= first) & (intra <= (len(index) if last is None else last))]
    if len(intra) == 0:
        return intra.astype(np.int64)
    chosen = {int(intra[0]), int(intra[-1])}
    if len(windows):
        before = np.searchsorted(intra, windows[:, 0], side="left") - 1
        chosen.update(intra[before[before >= 0]].tolist())
        after = np.searchsorted(intra, windows[:, 1], side="left")
        chosen.update(intra[after[after < len(intra)]].tolist())
    times = index.times
    slot_of = lambda frames: np.floor((times[frames] - times[0]) / spacing).astype(np.int64)  # noqa: E731
    covered = set(slot_of(np.array(sorted(chosen), dtype=np.int64)).tolist())
    slots = slot_of(intra)
    _, first_of_slot = np.unique(slots, return_index=True)
    chosen.update(int(intra[j]) for j in first_of_slot if int(slots[j]) not in covered)
    return np.array(sorted(chosen), dtype=np.int64)


class Group(NamedTuple):
    """A unit of work: candidate windows lo..hi (display frames)."""

    lo: int
    hi: int
    single: bool  # one frame whose position is known: may be accepted or rejected from anchors
    spikes: int  # size-spike windows merged into it (0 for an intra window)


def window_groups(index: mv.PacketIndex, windows: np.ndarray) -> list[Group]:
    """Candidate windows as units of work.

    An intra window stands alone. Spike windows close together after the same intra frame are
    merged into one span (decoding them one by one would decode the start of the GOP again and
    again).
    """
    if len(windows) == 0:
        return []
    intra = np.flatnonzero(index.intra)
    is_intra = index.intra[windows[:, 0]] & (windows[:, 0] == windows[:, 1])
    bucket = np.searchsorted(intra, windows[:, 0], side="right") - 1
    groups: list[Group] = []
    current: list[int] | None = None  # [lo, hi, count, bucket]
    for (lo, hi), intra_w, bk in zip(windows.tolist(), is_intra.tolist(), bucket.tolist()):
        if intra_w:
            groups.append(Group(lo, hi, True, 0))
            current = None
            continue
        if (current is not None and current[3] == bk and groups and groups[-1].lo == current[0]
                and lo - current[1] <= MERGE_GAP):
            current[1] = max(current[1], hi)
            current[2] += 1
            groups[-1] = Group(current[0], current[1], False, current[2])
        else:
            current = [lo, hi, 1, bk]
            groups.append(Group(lo, hi, lo == hi, 1))
    return groups


def likely_cut(index: mv.PacketIndex, group: Group) -> bool:
    """Is a frame of ``group`` at least LIKELY_CUT times the size of the intra frames around
    it? (A cost hint only: whichever way it goes, the group is settled exactly.)"""
    intra = np.flatnonzero(index.intra)
    if len(intra) == 0:
        return False
    span = np.arange(group.lo, group.hi + 1)
    intra_size = np.interp(span, intra, index.size[intra].astype(np.float64))
    return bool(np.any(index.size[span] >= LIKELY_CUT * intra_size))


def sustained_change(index: mv.PacketIndex, group: Group) -> bool:
    """Do the predicted frames after ``group`` stay SUSTAIN_RATIO times larger than those
    before it?

    Several size spikes close together are a flash (a few frames of another picture, then the
    shot again: the frames after it are predicted as cheaply as before) or a cut and a cut back,
    unless the frames after them stay large: then the picture kept changing more than before
    (a pan speeding up, noise rising), which the frames around the group can rule on.
    """
    pred = np.flatnonzero(index.ptype == mv.P_FRAME)
    pred = pred[~index.intra[pred]]
    before, after = pred[pred < group.lo][-SUSTAIN_FRAMES:], pred[pred > group.hi][:SUSTAIN_FRAMES]
    if len(before) < SUSTAIN_FRAMES or len(after) < SUSTAIN_FRAMES:
        return False
    return bool(np.median(index.size[after]) >= SUSTAIN_RATIO * np.median(index.size[before]))


def sparse_estimate(index: mv.PacketIndex, windows: np.ndarray) -> float:
    """Rough decode cost of the sparse strategy, in predicted-frame units (for choosing)."""
    anchors = anchor_schedule(index, windows, ANCHOR_SPACING)
    cost = INTRA_COST * len(anchors)
    # Groups that cannot be settled from anchors are decoded from their keyframe.
    # Groups that cannot be settled from anchors are decoded from their keyframe; spans in one
    # GOP share one pass (the span decoder continues forward), so each GOP costs up to its last.
    exact = [(g.lo, g.hi) for g in window_groups(index, windows) if not g.single]
    if exact:
        span = np.array(exact, dtype=np.int64)
        keys = index.keyframes
        start = keys[np.maximum(np.searchsorted(keys, span[:, 0], side="right") - 1, 0)]
        for key in np.unique(start):
            cost += float(span[start == key, 1].max() - key + 1)
    return cost


def _coarse(bgrp: np.ndarray) -> np.ndarray:
    """Mean colour of a 9x16 grid of blocks, (3, 9, 16) float32: a picture's layout of colours."""
    c, h, w = bgrp.shape
    hh, ww = h - h % 9, w - w % 16
    return bgrp[:, :hh, :ww].reshape(c, 9, hh // 9, 16, ww // 16).mean(axis=(2, 4), dtype=np.float32)


def _segments(index: mv.PacketIndex, seconds: float) -> list[tuple[int, int]]:
    """(first, last) display ranges of about ``seconds`` each, cut at keyframes; neighbours share
    their boundary keyframe (it is the last anchor of one and the first of the next)."""
    keys = index.keyframes
    intra = np.flatnonzero(index.intra)
    times = index.times
    bounds = [int(intra[0])]
    for k in keys.tolist():
        if times[k] - times[bounds[-1]] >= seconds:
            bounds.append(int(k))
    if bounds[-1] != int(intra[-1]):
        bounds.append(int(intra[-1]))
    if len(bounds) == 1:
        return [(bounds[0], bounds[0])]
    return list(zip(bounds[:-1], bounds[1:]))


def detect_sparse(vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int,
                  progress: Progress, windows: np.ndarray | None = None) -> Detection:
    """Decode anchors and the GOPs that need it (see the module docstring).

    The file is worked through in segments of ``SEGMENT_SECONDS`` (cut at keyframes): the
    pictures a segment decoded are dropped when it is done, so memory does not grow with the
    length of the file.
    """
    n = len(index)
    st = _Sparse(vf, index, width, height)
    if windows is None:
        windows = candidate_windows(index)
    groups = window_groups(index, windows)
    # A window starting less than MIN_SCENE_LEN frames after an intra candidate (an encoder's
    # first P frames after a scene-cut I frame are often large) can only matter if that
    # candidate is not a cut: the flash filter merges a lone above-threshold frame that close
    # after a cut into it. Such windows wait until the candidate is settled.
    intra_hits = np.array([g.hi for g in groups if index.intra[g.hi]], dtype=np.int64)
    shadowed = [bool(np.any((intra_hits < lo) & (lo < intra_hits + MIN_SCENE_LEN)))
                for lo, *_ in groups]
    accepted: set[int] = set()
    unsettled = set(range(len(groups)))
    segments = _segments(index, SEGMENT_SECONDS)
    for k, (seg_first, seg_last) in enumerate(segments):
        mine = [g for g, (_, hi, *_) in enumerate(groups)
                if (seg_first < hi <= seg_last) or (k == 0 and hi <= seg_first)
                or (k == len(segments) - 1 and hi > seg_last)]
        _sparse_segment(st, index, groups, mine, shadowed, accepted, unsettled, windows,
                        seg_first, seg_last)
        # Done with this stretch: keep only its last anchor's pixels, for the next segment.
        st.frames.forget_pixels([i for i in st.frames.hsv if i < seg_last])
        progress(0.1 + 0.75 * (k + 1) / len(segments))
    above = accepted | {i for i, v in st.exact.items() if v >= THRESHOLD}
    cuts, flashes = drop_flashes(flash_filter_merge(above, n), above, st.flash_pixels)
    return Detection(cuts, st.frames, st.exact, "sparse", st.decoded, flashes)


def _sparse_segment(st: "_Sparse", index: mv.PacketIndex, groups, mine: list[int],
                    shadowed: list[bool], accepted: set[int], unsettled: set[int],
                    windows: np.ndarray, seg_first: int, seg_last: int) -> None:
    # Windows that will be decoded frame by frame anyway go first: their spans decode the
    # keyframes before them, which then need no decoding of their own as anchors. Those are
    # several spikes close together after which the frames shrink back (a flash in and out, or
    # a cut and a cut back), and spikes almost as large as a keyframe (LIKELY_CUT of it: nearly
    # always a cut; checking them against anchors first would decode their keyframe twice).
    # The latter not when another group shares their GOP: the spans of one GOP are decoded in
    # order by one continuing decoder, and one taken out of turn makes the others start over.
    keys = index.keyframes
    gop_of = {g: int(np.searchsorted(keys, groups[g].lo, side="right")) for g in mine}
    shared = {k for k, count in Counter(gop_of.values()).items() if count > 1}
    for g in mine:
        if shadowed[g] or groups[g].single:
            continue
        if (groups[g].spikes > 1 and not sustained_change(index, groups[g])) or (
                gop_of[g] not in shared and likely_cut(index, groups[g])):
            st.decode_exact(groups[g].lo, groups[g].hi)
    seg_windows = np.array([(groups[g].lo, groups[g].hi) for g in mine], dtype=np.int64).reshape(-1, 2)
    st.decode_intra(anchor_schedule(index, seg_windows, ANCHOR_SPACING, seg_first, seg_last))

    # 1. Candidate windows, in order: settled from the decoded frames around them, or decoded
    #    and scored. A proxy is only trusted when nothing else unsettled (and no accepted cut)
    #    lies between the two frames it compares; frames decoded for earlier windows count as
    #    neighbours too. Several spikes in one GOP are decoded as one span.
    for g in mine:
        lo, hi, single, _spikes = groups[g]
        unsettled.discard(g)
        if shadowed[g]:
            cut_before = [c for c in accepted | {i for i, v in st.exact.items() if v >= THRESHOLD}
                          if c < lo < c + MIN_SCENE_LEN]
            # ...and nothing after it close enough to chain with it into a longer run.
            follower = any(groups[o].lo < hi + MIN_SCENE_LEN for o in unsettled)
            if cut_before and not follower:
                continue
        have = np.array(sorted(st.frames.hsv), dtype=np.int64)
        pos_a = int(np.searchsorted(have, lo, side="left")) - 1
        a = int(have[pos_a]) if pos_a >= 0 else None
        # The frame after: the window's own intra frame, or the first intra frame after it.
        after = have[(have >= hi) & np.isin(have, st.intra)]
        b = int(after[0]) if len(after) else None
        clear = a is not None and b is not None and not any(
            groups[o].hi > a and groups[o].lo <= b for o in unsettled) and not any(
            a < c <= b for c in accepted)
        if not clear:
            st.decode_exact(lo, hi)
            continue
        proxy = float(st.frames.scores([(a, b)])[0])
        if not single:
            # One size spike whose exact frame is unknown (B frames before it), or several
            # that leave the frame sizes up (see sustained_change): the frames around them can
            # only say "no cut". They do when they are not clearly different pictures and the
            # layout of colours stayed (motion or noise made the spikes: the same test as for
            # the anchors in step 2). Otherwise decode and score.
            if (groups[g].spikes > 1 and not sustained_change(index, groups[g])) or \
                    proxy >= THRESHOLD + PROXY_MARGIN or st.layout_change(a, b) >= COARSE_GATE:
                st.decode_exact(lo, hi)
            continue
        if proxy >= THRESHOLD + PROXY_MARGIN:
            if b == hi:
                accepted.add(hi)
            else:
                # The anchors differ, but the change may lie anywhere in (a, b], a cut on the
                # keyframe b included: only the window's own picture can say it is at hi.
                st.decode_exact(lo, hi)
        elif proxy >= THRESHOLD:
            st.decode_exact(lo, hi)
        elif proxy >= THRESHOLD - PROXY_MARGIN and st.layout_change(a, b) >= COARSE_GATE:
            # Below the threshold but close, and the picture's layout of colours moved: too
            # close to call from frames this far apart.
            st.decode_exact(lo, hi)

    # 2. Changes between neighbouring anchors that nothing explains yet: a cut on a regular
    #    keyframe (or one that left no spike). Bisect with the intra frames in between; between
    #    two neighbouring intra frames, score every frame exactly.
    pair_score: dict[tuple[int, int], tuple[float, float]] = {}
    for _round in range(64):
        anc = st.anchors()
        anc = anc[(anc >= seg_first) & (anc <= seg_last)]
        pairs = [(int(a), int(b)) for a, b in zip(anc[:-1], anc[1:])]
        new = [p for p in pairs if p not in pair_score]
        for p, sc in zip(new, st.frames.scores(new).tolist()):
            pair_score[p] = (sc, st.layout_change(*p))
        todo_intra: list[int] = []
        todo_exact: list[tuple[int, int]] = []
        for a, b in pairs:
            score, layout = pair_score[(a, b)]
            if score < THRESHOLD - PROXY_MARGIN or layout < COARSE_GATE:
                continue
            if st.covered(a + 1, b):
                continue
            known = [c for c in accepted | {i for i, sc in st.exact.items() if sc >= THRESHOLD}
                     if a < c <= b]
            if known:
                # A cut between the anchors explains their difference only if the picture after
                # it is still the shot of b: another cut may lie after it (on b itself, say).
                after = [i for i in st.frames.hsv if max(known) <= i < b]
                if not after:
                    continue  # accepted on b's own picture, or nothing to compare: as before
                e = max(after)
                if (float(st.frames.scores([(e, b)])[0]) < THRESHOLD - PROXY_MARGIN
                        or st.layout_change(e, b) < COARSE_GATE):
                    continue
                a = e
            between = st.intra[(st.intra > a) & (st.intra < b)]
            if len(between):
                todo_intra.append(int(between[len(between) // 2]))
            else:
                todo_exact.append((a + 1, b))
        if not todo_intra and not todo_exact:
            break
        st.decode_intra(todo_intra)
        for first, last in todo_exact:
            if not st.cut_on_keyframe(first - 1, last):
                st.decode_exact(first, last)


STRATEGIES = ("auto", "sparse", "full", "exact")


def detect_exact(vf: mv.VideoFile, index: mv.PacketIndex, progress: Progress) -> Detection:
    """PySceneDetect itself: its PyAV backend, its downscale, its ContentDetector with its
    defaults and its flash filter. The reference the fast strategies are checked against.

    Its frames are mapped to montaged's by time (PySceneDetect numbers the frames of a
    variable-frame-rate file from time x average rate). Flashes are left as PySceneDetect reports
    them. scenedetect needs OpenCV (the GUI build, and ~0.8 s to import), so it is an extra.
    """
    try:
        from scenedetect import ContentDetector, SceneManager, StatsManager, open_video
    except ImportError:
        raise MediaError("the exact scene strategy needs PySceneDetect: "
                         "pip install 'montaged[exact]'") from None
    stats = StatsManager()
    manager = SceneManager(stats_manager=stats)
    manager.add_detector(ContentDetector())
    video = open_video(vf.path, backend="pyav")
    total = max(len(index), 1)
    manager.detect_scenes(video, callback=lambda _img, tc: progress(0.1 + 0.8 * min(tc.frame_num / total, 1.0)))
    times = index.times - index.times[0]
    half = 0.5 * float(np.median(np.diff(times))) if len(times) > 1 else 0.0

    def frame_at(seconds: float) -> int:
        return int(np.clip(np.searchsorted(times, seconds - half), 0, len(times) - 1))

    cuts = [frame_at(start.seconds) for start, _end in manager.get_scene_list()[1:]]
    exact = {}
    for tc_frame in range(1, video.frame_number + 1):
        tc = video.base_timecode + tc_frame
        metric = stats.get_metrics(tc, ["content_val"])[0]
        if metric is not None:
            exact[frame_at(tc.seconds)] = float(metric)
    return Detection(sorted(set(c for c in cuts if c > 0)), _Frames(), exact, "exact", video.frame_number)


def detect_cuts(vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int,
                progress: Progress | None = None, strategy: str = "auto") -> Detection:
    """Cut frames (first frame of each new shot) as PySceneDetect's ContentDetector finds them.

    ``strategy``: "auto" (sparse unless the file is short or sparse would decode most of it),
    "sparse", "full", or "exact" (PySceneDetect itself, see :func:`detect_exact`).
    """
    progress = progress or (lambda _f: None)
    n = len(index)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if strategy == "exact":
        return detect_exact(vf, index, progress)
    windows = None
    if strategy == "auto":
        strategy = "sparse"
        if n <= FULL_BELOW_FRAMES:
            strategy = "full"
        else:
            windows = candidate_windows(index)
            if sparse_estimate(index, windows) > FULL_IF_FRACTION * n:
                strategy = "full"
    log.debug("%s: %d frames, %s strategy", vf.path, n, strategy)
    if strategy == "full":
        return detect_full(vf, index, width, height, progress)
    return detect_sparse(vf, index, width, height, progress, windows)


# --------------------------------------------------------------------------------------------
# Features


def motion_series(index: mv.PacketIndex, fps: float) -> np.ndarray:
    """Per-frame motion score 0..1 from compressed sizes (see the module docstring)."""
    n = len(index)
    intra = np.flatnonzero(index.intra)
    others = np.flatnonzero(~index.intra)
    if n == 0 or len(intra) == 0 or len(others) == 0:
        return np.zeros(n, dtype=np.float32)
    size = index.size.astype(np.float64)
    ratio = size / np.maximum(np.interp(np.arange(n), intra, size[intra]), 1.0)
    # Intra frames say nothing about motion: take the value of the frames around them.
    ratio[intra] = np.interp(intra, others, ratio[others])
    win = max(1, int(round(0.3 * (fps or 30.0))))
    padded = np.pad(ratio, (win // 2, win - 1 - win // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(win) / win, mode="valid")
    scaled = np.log10(np.maximum(smooth, 1e-6) / MOTION_FLOOR) / np.log10(MOTION_CEIL / MOTION_FLOOR)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def sharpness_score(laplacian_var: float) -> float:
    """Laplacian variance -> 0..1: log10(1 + var) / 3.5, clipped (10 -> 0.30, 1000 -> 0.86)."""
    return float(np.clip(np.log10(1.0 + laplacian_var) / 3.5, 0, 1))


def best_window(times: np.ndarray, motion: np.ndarray, start: int, end: int, window: float) -> float:
    """Start time of the most active ``window``-second stretch of frames start..end-1."""
    t = times[start:end]
    if len(t) == 0:
        return float(times[min(start, len(times) - 1)]) if len(times) else 0.0
    if t[-1] - t[0] <= window:
        return float(t[0])
    m = motion[start:end].astype(np.float64)
    csum = np.concatenate([[0.0], np.cumsum(m)])
    first = np.arange(len(t))
    stop = np.searchsorted(t, t + window, side="left")  # exclusive end of each window
    means = (csum[stop] - csum[first]) / np.maximum(stop - first, 1)
    means[stop >= len(t)] = -1.0  # windows that run past the scene
    return float(t[int(np.argmax(means))])


def scene_features(det: Detection, index: mv.PacketIndex, motion: np.ndarray, times: np.ndarray,
                   duration: float) -> list[dict]:
    n = len(index)
    bounds = [0] + [int(c) for c in det.cuts] + [n]
    decoded = np.array(sorted(det.frames.stats), dtype=np.int64)
    table = np.stack([det.frames.stats[int(i)] for i in decoded])
    scenes = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        rows = (decoded >= s) & (decoded < e)
        if not rows.any():  # nothing decodable in the scene (damage): the nearest picture
            rows = np.zeros(len(decoded), dtype=bool)
            rows[int(np.argmin(np.abs(decoded - s)))] = True
        st = table[rows]
        sharp_var = st[:, _ST_SHARP]
        if np.all(np.isnan(sharp_var)):  # no larger rendition: the small picture's, rescaled
            sharp_var = st[:, _ST_SHARP_SMALL] * SMALL_SHARP_SCALE
        hist = st[:, _ST_HIST:].sum(axis=0)
        total = hist.sum()
        scenes.append({
            "start": round(float(times[s]), 6),
            "end": round(float(times[e]) if e < n else duration, 6),
            "start_frame": int(s), "end_frame": int(e),
            "motion": round(float(motion[s:e].mean()), 4),
            "sharpness": round(sharpness_score(float(np.nanmean(sharp_var))), 4),
            "brightness": round(float(st[:, _ST_LUMA].mean() / 255.0), 4),
            "contrast": round(float(np.clip(st[:, _ST_LUMA_STD].mean() / 80.0, 0, 1)), 4),
            "colorfulness": round(float(np.clip(st[:, _ST_COLOR].mean() / 120.0, 0, 1)), 4),
            "signature": [round(float(x), 5) for x in (hist / total if total else hist)],
            "best_in": round(best_window(times, motion, s, e, BEST_WINDOW), 6),
        })
    return scenes


def _ensure_scene_pictures(det: Detection, vf: mv.VideoFile, index: mv.PacketIndex, width: int,
                           height: int) -> None:
    """Every scene needs a decoded picture for its colour features; decode one where missing."""
    n = len(index)
    bounds = [0] + [int(c) for c in det.cuts] + [n]
    have = np.array(sorted(det.frames.stats), dtype=np.int64)
    missing = [(s, e) for s, e in zip(bounds[:-1], bounds[1:]) if not np.any((have >= s) & (have < e))]
    if not missing:
        return
    small, sharp = _sizes(width, height)
    intra_wanted, spans = [], []
    for s, e in missing:
        intra_in = np.flatnonzero(index.intra[s:e])
        (intra_wanted.append(s + int(intra_in[0])) if len(intra_in) else spans.append(s))
    if intra_wanted:
        got = vf.decode_intra(index, intra_wanted, size=small, fmt="bgrp",
                              extra={"gray": (sharp, "gray")})
        det.frames.errors += got.errors
        det.frames.add(got.indices, got.images, got.extra["gray"])
    for s in spans:
        got = vf.decode_span(index, s, s, size=small, fmt="bgrp")
        det.frames.errors += got.errors
        det.frames.add(got.indices, got.images)


# --------------------------------------------------------------------------------------------
# Entry point


def analyze_video(path: str, info: MediaInfo, progress: Progress, *, strategy: str = "auto") -> Analysis:
    """Scenes and per-scene features of a video file (see the module docstring)."""
    with mv.VideoFile(path, info.video_stream) as vf:
        return _analyze(vf, info, progress, strategy)


def _analyze(vf: mv.VideoFile, info: MediaInfo, progress: Progress, strategy: str) -> Analysis:
    path = vf.path
    index = vf.scan()
    progress(0.1)
    intra = np.flatnonzero(index.intra)
    if len(intra) == 0:
        raise MediaError(f"no decodable keyframe: {os.path.basename(path)}")
    if intra[0] > 0:
        # Frames before the first keyframe cannot be decoded (a file cut out of a stream):
        # PySceneDetect counts from the first frame the decoder returns, and so do we.
        index = _drop_head(index, int(intra[0]))
    n = len(index)
    det = detect_cuts(vf, index, info.width, info.height, progress, strategy)
    _ensure_scene_pictures(det, vf, index, info.width, info.height)
    progress(0.95)

    t0 = float(index.times[0])
    times = index.times - t0
    frame_dur = float(np.median(np.diff(times))) if n > 1 else (1.0 / info.fps if info.fps else 0.0)
    duration = float(times[-1] + frame_dur)
    motion = motion_series(index, info.fps)
    scenes = scene_features(det, index, motion, times, duration)

    truncated = bool(index.truncated)
    if det.strategy == "full" and det.decoded < n - 2:
        truncated = True  # the index promised frames the decoder could not produce
    features = {
        "kind": "video", "duration": round(duration, 6), "fps": info.fps, "vfr": info.vfr,
        "width": info.width, "height": info.height, "display_width": info.display_width,
        "display_height": info.display_height, "rotation": info.rotation, "sar": info.sar,
        "codec": info.codec, "has_audio": info.has_audio, "start_time": round(t0, 6),
        "frames": n, "truncated": truncated,
        "corrupt_frames": int(index.corrupt + det.frames.errors),
        "flashes": [int(f) for f in det.flashes],
        "scenes": scenes,
    }
    score_frames = np.array(sorted(det.exact), dtype=np.int32)
    arrays = {
        "frame_times": times.astype(np.float64),
        "motion": motion,
        "packet_sizes": index.size.astype(np.int32),
        "keyframe_times": times[index.keyframes].astype(np.float64),
        "decoded_frames": np.array(sorted(det.frames.stats), dtype=np.int32),
        "score_frames": score_frames,
        "scores": np.array([det.exact[int(i)] for i in score_frames], dtype=np.float32),
    }
    progress(1.0)
    log.info("%s: %d frames, %d scenes, %s strategy; decoded %d intra, %d in spans, %d in full "
             "(%.0f%% of the frames), %d seeks", path, n, len(scenes), det.strategy,
             vf.work["intra"], vf.work["span"], vf.work["full"],
             100.0 * (vf.work["intra"] + vf.work["span"] + vf.work["full"]) / max(n, 1),
             vf.work["seeks"])
    return Analysis(kind="video", features=features, arrays=arrays)


def _drop_head(index: mv.PacketIndex, first: int) -> mv.PacketIndex:
    """The index without its first ``first`` frames (undecodable leading frames)."""
    sl = slice(first, None)
    return mv.PacketIndex(
        pts=index.pts[sl], dts=index.dts[sl], size=index.size[sl], key=index.key[sl],
        ptype=index.ptype[sl], decode_order=index.decode_order[sl], time_base=index.time_base,
        corrupt=index.corrupt + first, truncated=index.truncated,
        stream_index=index.stream_index, codec=index.codec)
