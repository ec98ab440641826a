"""Analysis entry point: a pure function from a path to features.

Workers run :func:`analyze_path` in another process (or on a Dask worker). It never touches the
database: it returns an :class:`Analysis`, and the daemon's main process stores it.

``features`` is a plain dict (msgpack- and JSON-serialisable: str, int, float, bool, None, lists,
dicts) shaped like the contract's ``montaged analyze --json`` object minus ``path`` and
``digest``. ``arrays`` holds the dense series (per frame, per keyframe, per 100 ms of music) that
are stored as ``.npy`` files and memory-mapped when read back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # numpy is imported where arrays are made, not by `montaged status`
    import numpy as np

# Bump when the analysis output changes shape or meaning, so stored features are recomputed.
ANALYSIS_VERSION = 3  # 2: video flashes and keyframe cuts; 3: music meter and tempo octave

Progress = Callable[[float], None]
"""Called by long analyses with the fraction done (0..1). Must be cheap and never raise."""


@dataclass
class Analysis:
    kind: str  # "video" | "audio"
    features: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _no_progress(_fraction: float) -> None:
    """Progress sink for callers that do not report progress."""


def analyze_path(path: str, progress: Progress | None = None, *, scenes: str = "auto") -> Analysis:
    """Probe ``path`` and run the video or the music analysis on it.

    ``scenes`` picks the scene detection strategy of a video: ``auto`` (the default), ``sparse``,
    ``full`` or ``exact`` (PySceneDetect itself; needs the ``exact`` extra).

    Raises :class:`montaged.errors.MediaError` with a user-facing message for anything that is
    not usable media.
    """
    from montaged import media

    progress = progress or _no_progress
    info = media.probe(path)
    if info.kind == "video":
        from montaged.analysis.video import analyze_video

        return analyze_video(path, info, progress, strategy=scenes)
    from montaged.analysis.audio import analyze_audio

    return analyze_audio(path, info, progress)
