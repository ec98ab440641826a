"""The exact strategy: PySceneDetect itself, the reference the others are checked against."""

from __future__ import annotations

import numpy as np

from montaged.analysis import Progress
from montaged.errors import MediaError
from montaged.media import video as mv
from montaged.analysis.video.frames import Detection, _Frames


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
