"""The full strategy: every frame decoded once, in order, and scored, as PySceneDetect does."""

from __future__ import annotations

import logging

import numpy as np

from montaged.analysis import Progress
from montaged.media import video as mv
from montaged.analysis.video.frames import BATCH, Detection, _Frames, _sizes
from montaged.analysis.video.score import (
    FlashTracker, THRESHOLD, content_scores, flash_filter_merge, hsv_planes,
)

log = logging.getLogger("montaged.analysis.video")


FEATURE_SPACING = 0.5  # seconds between frames kept for features in full mode


def detect_full(vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int,
                progress: Progress) -> Detection:
    """Decode every frame once, in order, and score it: PySceneDetect's loop, cheaper."""
    n = len(index)
    small, sharp = _sizes(width, height)
    pos_of_pts = {int(p): i for i, p in enumerate(index.pts)}
    fps = (n - 1) / max(float(index.times[-1] - index.times[0]), 1e-9) if n > 1 else 30.0
    keep_every = max(1, int(round(FEATURE_SPACING * fps)))
    frames = _Frames()
    flashes = FlashTracker()
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
        # The pictures on both sides of every above-threshold frame, for the flash rule.
        for j, p in enumerate(batch_pos):
            if not np.isnan(scores[p]) and scores[p] >= THRESHOLD:
                flashes.add(p, hsv[j], hsv[j - 1] if j > 0 else prev_hsv)
        flashes.settle(batch_pos[-1])
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
    cuts, dropped = flashes.split(flash_filter_merge(above, n))
    return Detection(cuts, frames, exact, "full", decoded, dropped)
