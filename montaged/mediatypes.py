"""Which files montaged looks at, by file name.

The watcher only queues files whose extension says video or audio: sidecars (.xmp, .thm, .srt),
thumbnails and documents dropped next to the footage must not turn into failed jobs. Whether a
file *really* is media is decided by probing it; a `.mp4` full of random bytes fails with a clear
"not a media file" error.
"""

from __future__ import annotations

from pathlib import PurePath

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mxf", ".3gp", ".mpg", ".mpeg", ".wmv", ".flv"}
)
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".opus", ".aif", ".aiff", ".wma", ".alac"}
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def suffix(path: str | PurePath) -> str:
    return PurePath(path).suffix.lower()


def is_video(path: str | PurePath) -> bool:
    return suffix(path) in VIDEO_EXTENSIONS


def is_audio(path: str | PurePath) -> bool:
    return suffix(path) in AUDIO_EXTENSIONS


def is_media(path: str | PurePath) -> bool:
    return suffix(path) in MEDIA_EXTENSIONS
