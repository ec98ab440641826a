"""What is kept of decoded frames: per-frame statistics for the features, HSV planes and block colours
for scoring, and the Detection result every strategy returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from montaged.media import video as mv
from montaged.analysis.video.score import content_scores, hsv_planes


SHARP_WIDTH = 512
BATCH = 32  # frames per numpy batch: bounds the per-pixel temporaries
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


def _coarse(bgrp: np.ndarray) -> np.ndarray:
    """Mean colour of a 9x16 grid of blocks, (3, 9, 16) float32: a picture's layout of colours."""
    c, h, w = bgrp.shape
    hh, ww = h - h % 9, w - w % 16
    return bgrp[:, :hh, :ww].reshape(c, 9, hh // 9, 16, ww // 16).mean(axis=(2, 4), dtype=np.float32)
