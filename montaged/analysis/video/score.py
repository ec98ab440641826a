"""ContentDetector's metric (OpenCV's 8-bit HSV, bit-exact), its flash filter, and montaged's flash rule."""

from __future__ import annotations

import numpy as np


THRESHOLD = 27.0  # ContentDetector default
MIN_SCENE_LEN = 15  # frames, ContentDetector default
# A cut whose picture returns within this many frames is a flash (see drop_flashes): a camera
# flash or a strobe lights one or two frames; 0.2 s at 30 fps leaves room for a slow strobe.
FLASH_FRAMES = 6
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


def returns_within(c: int, above: list[int], hsv: dict[int, np.ndarray], frames: int) -> bool:
    """Does the picture before above-threshold frame ``c`` come back at an above-threshold frame
    within ``frames`` frames after it (the way back out of a flash)? Unknown pictures: no."""
    back = [r for r in above if c < r <= c + frames and r in hsv]
    if c - 1 not in hsv or not back:
        return False
    scores = content_scores(np.stack([hsv[c - 1]] * len(back)), np.stack([hsv[r] for r in back]))
    return float(scores.min()) < THRESHOLD


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
    flashes = [c for c in cuts if returns_within(c, above, hsv, frames)]
    return [c for c in cuts if c not in flashes], flashes


class FlashTracker:
    """The pictures around above-threshold frames, kept only until the flash question of each
    is settled, so memory does not grow with the number of cuts in a long file."""

    def __init__(self, frames: int = FLASH_FRAMES) -> None:
        self.frames = frames
        self.hsv: dict[int, np.ndarray] = {}
        self.above: set[int] = set()
        self.returning: set[int] = set()  # above-threshold frames whose picture came back

    def add(self, i: int, picture: np.ndarray, before: np.ndarray | None) -> None:
        """Frame ``i`` scored over the threshold: its picture, and the one before it."""
        self.above.add(int(i))
        self.hsv[int(i)] = picture.copy()  # not a view that pins a whole batch
        if before is not None and i - 1 not in self.hsv:
            self.hsv[int(i) - 1] = before.copy()

    def settle(self, upto: float) -> None:
        """Decide every above-threshold frame whose way back (up to ``frames`` later) has been
        scored by now (frames up to ``upto``), and forget the pictures no longer needed."""
        above = sorted(self.above)
        done = [c for c in above if c + self.frames <= upto]
        self.returning.update(c for c in done if returns_within(c, above, self.hsv, self.frames))
        self.above.difference_update(done)
        keep_from = min(self.above, default=upto) - self.frames - 1
        self.hsv = {i: v for i, v in self.hsv.items() if i >= keep_from}

    def split(self, cuts: list[int]) -> tuple[list[int], list[int]]:
        """(cuts, flashes) once everything is scored."""
        self.settle(float("inf"))
        flashes = [c for c in cuts if c in self.returning]
        return [c for c in cuts if c not in self.returning], flashes
