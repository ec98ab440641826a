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


def is_flash(c: int, above: list[int], hsv: dict[int, np.ndarray], frames: int) -> bool:
    """Is the cut at ``c`` one end of a flash: does the picture come back across it?

    Way in: the picture before ``c`` comes back at an above-threshold frame up to ``frames``
    later. Way out: ``c`` shows again the picture from before an above-threshold frame up to
    ``frames`` earlier (PySceneDetect's merge filter puts the cut there after an earlier flash).
    Pictures not known (not decoded): not a flash.
    """
    pairs = [(c - 1, r) for r in above if c < r <= c + frames]
    pairs += [(a - 1, c) for a in above if c - frames <= a < c]
    pairs = [(x, y) for x, y in pairs if x in hsv and y in hsv]
    if not pairs:
        return False
    scores = content_scores(np.stack([hsv[x] for x, _ in pairs]), np.stack([hsv[y] for _, y in pairs]))
    return float(scores.min()) < THRESHOLD


def drop_flashes(cuts: list[int], above, hsv: dict[int, np.ndarray],
                 frames: int | None = None) -> tuple[list[int], list[int]]:
    """Split ``cuts`` into (cuts, flashes): a cut whose picture comes back within ``frames``
    frames is a camera flash or a strobe, not a new shot (see :func:`is_flash`).

    PySceneDetect reports such a frame as a cut (its merge filter keeps one of the two
    above-threshold frames, into and out of the flash). montaged follows the footage instead.
    Where a picture is unknown (not decoded), the cut stays: PySceneDetect's answer.
    """
    frames = FLASH_FRAMES if frames is None else frames
    above = sorted(int(a) for a in above)
    flashes = [c for c in cuts if is_flash(c, above, hsv, frames)]
    return [c for c in cuts if c not in flashes], flashes


class FlashTracker:
    """The pictures around above-threshold frames, kept only until the flash question of each
    is settled, so memory does not grow with the number of cuts in a long file."""

    def __init__(self, frames: int = FLASH_FRAMES) -> None:
        self.frames = frames
        self.hsv: dict[int, np.ndarray] = {}
        self.above: set[int] = set()  # above-threshold frames still near enough to matter
        self.pending: set[int] = set()  # ... and those not settled yet
        self.flashes: set[int] = set()  # above-threshold frames that are one end of a flash

    def add(self, i: int, picture: np.ndarray, before: np.ndarray | None) -> None:
        """Frame ``i`` scored over the threshold: its picture, and the one before it."""
        i = int(i)
        self.above.add(i)
        self.pending.add(i)
        self.hsv[i] = picture.copy()  # not a view that pins a whole batch
        if before is not None and i - 1 not in self.hsv:
            self.hsv[i - 1] = before.copy()

    def settle(self, upto: float) -> None:
        """Decide every above-threshold frame whose neighbourhood (``frames`` either way) has
        been scored by now (frames up to ``upto``), and forget what is no longer needed."""
        above = sorted(self.above)
        done = [c for c in sorted(self.pending) if c + self.frames <= upto]
        self.flashes.update(c for c in done if is_flash(c, above, self.hsv, self.frames))
        self.pending.difference_update(done)
        keep_from = min(self.pending, default=upto) - self.frames - 1
        self.hsv = {i: v for i, v in self.hsv.items() if i >= keep_from}
        self.above = {a for a in self.above if a >= keep_from}

    def split(self, cuts: list[int]) -> tuple[list[int], list[int]]:
        """(cuts, flashes) once everything is scored."""
        self.settle(float("inf"))
        return [c for c in cuts if c not in self.flashes], [c for c in cuts if c in self.flashes]
