"""PyAV helpers: the one place that knows container quirks.

``probe`` and ``MediaInfo`` (media/probe.py) say what a file is; media/video.py decodes video
(packet index, keyframes, ranges, small frames); media/audio.py decodes audio.
"""

from montaged.media.probe import MediaInfo, probe

__all__ = ["MediaInfo", "probe"]
