"""Video analysis: scenes (PySceneDetect-compatible cuts), motion, sharpness, brightness, colour.

Scene detection reproduces PySceneDetect's ``ContentDetector`` (threshold 27, ``min_scene_len``
15 frames, merge-mode flash filter). The score of frame *i* is the mean absolute difference of
the hue, saturation and value planes (OpenCV's 8-bit HSV, same integer arithmetic, bit-exact) of
frames *i-1* and *i*, each downscaled so that its longer side is 256 pixels (PySceneDetect's
``compute_downscale_factor``), averaged over the three planes with equal weights.

What differs from PySceneDetect is *which* frames are decoded. Two fast strategies:

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
15 frames), reproduced by :func:`flash_filter_merge`. Then montaged parts from PySceneDetect on
one point: a cut whose picture comes back within ``FLASH_FRAMES`` frames (a camera flash, a
strobe, a few frames of something else) is no new shot. It is dropped and listed in
``features["flashes"]`` (:func:`drop_flashes`).

``exact`` (opt-in, ``analyze --scenes exact``): PySceneDetect itself (its PyAV backend, OpenCV
downscale and ContentDetector), the reference the fast strategies are tested against frame by
frame. It needs the ``exact`` extra and decodes every frame at full size.

The package, one job per module: ``score`` (the metric and the flash rules), ``candidates``
(what the packet index says, nothing decoded), ``frames`` (what is kept of decoded frames, and
the :class:`Detection` every strategy returns), ``full``, ``sparse`` and ``exact`` (the
strategies), ``features`` (per-scene features), and this module (choosing a strategy, the entry
point).

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

import numpy as np

from montaged.analysis import Analysis, Progress
from montaged.errors import MediaError
from montaged.media import MediaInfo
from montaged.media import video as mv

log = logging.getLogger("montaged.analysis.video")

# The package used to be one module: every name it had is still importable from here.
from montaged.analysis.video.score import (  # noqa: F401
    FLASH_FRAMES, FlashTracker, MIN_SCENE_LEN, THRESHOLD, content_scores, drop_flashes, is_flash,
    flash_filter_merge, hsv_planes,
)
from montaged.analysis.video.candidates import (  # noqa: F401
    ANCHOR_SPACING, Group, INTRA_COST, LIKELY_CUT, MERGE_GAP,
    SPIKE_B_INTRA_FRACTION, SPIKE_B_RATIO, SPIKE_INTRA_FRACTION, SPIKE_RATIO, SPIKE_STRONG,
    SPIKE_STRONG_FRACTION, SPIKE_WINDOW, SUSTAIN_FRAMES, SUSTAIN_RATIO, anchor_schedule,
    candidate_windows, intra_candidates, keyframe_grid, likely_cut, max_b_run,
    size_spikes, sparse_estimate, sustained_change, window_groups,
)
from montaged.analysis.video.frames import (  # noqa: F401
    BATCH, Detection, SHARP_WIDTH, frame_stats, laplacian_variance,
    signature_counts,
)
from montaged.analysis.video.full import (  # noqa: F401
    FEATURE_SPACING, detect_full,
)
from montaged.analysis.video.sparse import (  # noqa: F401
    COARSE_GATE, PROXY_MARGIN, SEGMENT_SECONDS, detect_sparse,
)
from montaged.analysis.video.exact import (  # noqa: F401
    detect_exact,
)
from montaged.analysis.video.features import (  # noqa: F401
    BEST_WINDOW, MOTION_CEIL, MOTION_FLOOR, SMALL_SHARP_SCALE, best_window,
    motion_series, scene_features, sharpness_score,
)
from montaged.analysis.video.features import _ensure_scene_pictures
from montaged.analysis.video.frames import _Frames  # noqa: F401  (tests build detections)

FULL_BELOW_FRAMES = 60  # shorter files are simply decoded in full
FULL_IF_FRACTION = 0.85  # sparse is abandoned when it would decode this share of the frames
STRATEGIES = ("auto", "sparse", "full", "exact")


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
