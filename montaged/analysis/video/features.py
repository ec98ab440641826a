"""Per-scene features from the packet index (motion) and the decoded frames (sharpness, colour)."""

from __future__ import annotations

import numpy as np

from montaged.media import video as mv
from montaged.analysis.video.frames import (
    Detection, _ST_COLOR, _ST_HIST, _ST_LUMA, _ST_LUMA_STD, _ST_SHARP, _ST_SHARP_SMALL, _sizes,
)


# Motion = log10(ratio / MOTION_FLOOR) / log10(MOTION_CEIL / MOTION_FLOOR), clipped to 0..1,
# where ratio = predicted frame size / intra frame size: 0.005 (a locked-off shot) -> 0,
# 0.05 -> 0.5, 0.5 (half the picture re-sent every frame) -> 1.
MOTION_FLOOR = 0.005
MOTION_CEIL = 0.5
BEST_WINDOW = 2.0
# Laplacian variance grows as a picture is downscaled (detail gets denser); used only for a
# scene with no decoded picture at SHARP_WIDTH, to bring the small picture's value to that scale.
SMALL_SHARP_SCALE = 0.5


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
