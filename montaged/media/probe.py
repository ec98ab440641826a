"""probe(path) -> MediaInfo: what a file is, from its headers and its first frames.

Probing is cheap (headers, the first few seconds of packets, one decoded frame) and strict: a
file that cannot become a working analysis is refused here with a :class:`MediaError` whose
message names the file and says what is wrong in plain words:

- empty file, random bytes, text, anything FFmpeg cannot open or decode -> ``not a media file``
- a still image (JPEG, PNG, WebP, single-picture formats) -> ``not a video or audio file (still
  image)``
- header values no camera produces (frame larger than 16384x16384, more than 1000 fps, longer
  than 48 hours) -> refused *before* any frame is decoded, so a crafted header cannot make the
  worker allocate gigabytes.

Cover art (an ``attached_pic`` stream in an MP3 or M4A) does not make a file video.

Frame rate and VFR come from packet timestamps (pts), never from "frame index x nominal fps":
phones record variable frame rate, and analysis must place cuts at the times frames are shown.

Rotation is the clockwise angle a player turns the picture (the display matrix; what the legacy
``rotate`` tag said): 0, 90, 180 or 270. ``width``/``height`` are the coded size;
``display_width``/``display_height`` apply the sample aspect ratio and then the rotation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from montaged.errors import MediaError

log = logging.getLogger("montaged.media.probe")

MAX_PIXELS = 16384 * 16384
MAX_SIDE = 65536
# Smaller pictures cannot be scaled to the analysis sizes (FFmpeg refuses a 0-pixel side) and
# hold nothing to cut or rate: refused with a message that says so.
MIN_SIDE = 16
MAX_FPS = 1000.0
MAX_DURATION = 48 * 3600.0

# Demuxers that mean "a picture, not a video" whatever the extension says.
_IMAGE_FORMATS = {"image2", "webp", "gif", "apng", "ico", "bmp"}
# Video "codecs" FFmpeg derives from text (ANSI art, tty): a .txt file is not footage.
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf", "text", "tty"}
# Codecs that usually carry single pictures (cover art, thumbnails, stills).
_IMAGE_CODECS = {"mjpeg", "png", "bmp", "webp", "tiff", "gif", "jpeg2000", "jpegls", "ljpeg", "qoi",
                 "pgm", "ppm", "pbm", "pam", "sgi", "targa", "dds", "exr", "hdr", "jpegxl", "photocd"}

# The first picture decoded by the last probe, for the analysis that nearly always follows in the
# same process (at 1080p an intra picture costs as much as the rest of a quick probe):
# ((path, size, mtime_ns, stream index), pts, frame). One entry; taken once.
_first_frame: tuple | None = None


def take_first_frame(path: str, stream_index: int):
    """(pts, av.VideoFrame) of the first frame the last probe of ``path`` decoded, if the file
    has not changed since; the cache is emptied either way."""
    global _first_frame
    entry, _first_frame = _first_frame, None
    if entry is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if entry[0] != (os.path.abspath(path), st.st_size, st.st_mtime_ns, stream_index):
        return None
    return entry[1], entry[2]


# Packets read to estimate the frame rate and detect VFR: a few seconds, independent of length.
_RATE_PACKETS = 240
# Packets tried before declaring the first frame undecodable (long-GOP files may open on a
# non-key packet after an edit; corrupt heads need a few tries).
_DECODE_PACKETS = 400


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # "video" | "audio"
    duration: float  # seconds
    fps: float  # mean frames per second from pts (0.0 for audio)
    vfr: bool  # frame durations vary beyond time-base rounding
    width: int  # coded size
    height: int
    display_width: int  # after sample aspect ratio and rotation
    display_height: int
    rotation: int  # clockwise degrees for display: 0, 90, 180, 270
    sar: float  # sample (pixel) aspect ratio, 1.0 = square pixels
    codec: str  # video codec for video files, audio codec for audio files
    bit_rate: int  # container bit rate, bits/s (0 if unknown)
    has_audio: bool
    audio_codec: str | None
    sample_rate: int  # 0 if no audio
    channels: int  # 0 if no audio
    start_time: float  # pts of the first video frame (or audio sample), seconds
    frames: int  # estimated frame count (0 for audio)
    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    video_stream: int | None = None  # stream index used for analysis
    audio_stream: int | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _name(path: str) -> str:
    return os.path.basename(path)


def _usable_video_streams(container: av.container.InputContainer) -> list:
    streams = []
    for s in container.streams.video:
        if s.disposition & av.stream.Disposition.attached_pic:
            continue  # cover art
        if s.codec_context.name in _TEXT_CODECS:
            continue
        streams.append(s)
    return streams


# Image formats that may hold an animation: a clip when they have more than one frame (an
# animated GIF is video to PySceneDetect too), a still otherwise.
_ANIMATED_FORMATS = {"gif", "apng", "webp"}


def _has_two_frames(container: av.container.InputContainer, stream) -> bool:
    """Whether ``stream`` holds more than one picture (demuxes two packets at most, then rewinds)."""
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0
            if count >= 2:
                break
        container.seek(0, stream=stream)
    except av.FFmpegError:
        return False
    return count >= 2


def _is_still(container: av.container.InputContainer, stream) -> bool:
    fmt = container.format.name
    if fmt in _ANIMATED_FORMATS:
        return not _has_two_frames(container, stream)
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        return True
    if stream.disposition & av.stream.Disposition.still_image:
        return True
    # An image codec with a single frame (e.g. a JPEG in a .mov) is a still, not a clip.
    return stream.codec_context.name in _IMAGE_CODECS and stream.frames <= 1 and not (
        stream.duration and stream.time_base and stream.duration * stream.time_base > 0.5)


def _rate_of(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def check_sane(name: str, width: int, height: int, fps: float, duration: float) -> None:
    """Refuse header values no real recording has, before anything is decoded or allocated."""
    if width <= 0 or height <= 0:
        raise MediaError(f"not a media file (no picture size): {name}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise MediaError(f"frame size {width}x{height} is absurd (limit 16384x16384): {name}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise MediaError(f"frame size {width}x{height} is too small to analyse "
                         f"(at least {MIN_SIDE}x{MIN_SIDE}): {name}")
    if not math.isfinite(fps) or fps > MAX_FPS:
        raise MediaError(f"frame rate {fps:g} fps is absurd (limit {MAX_FPS:g}): {name}")
    if not math.isfinite(duration) or duration > MAX_DURATION:
        raise MediaError(f"duration {duration:.0f} s is absurd (limit 48 h): {name}")


def frame_rate_from_pts(pts: np.ndarray, time_base: Fraction) -> tuple[float, bool]:
    """(mean fps, vfr) from presentation timestamps (any order, in ``time_base`` ticks).

    A stream is VFR when frame durations differ by more than the rounding of the time base can
    explain (two ticks, and 2% of the typical duration): 30 fps stored in milliseconds
    (33, 33, 34, ...) is constant, a phone's 1/30 s frames mixed with 1/24 s frames is not.
    """
    pts = np.unique(np.asarray(pts, dtype=np.int64))
    if len(pts) < 2:
        return 0.0, False
    d = np.diff(pts).astype(np.float64)
    median = float(np.median(d))
    tb = float(time_base)
    # A few odd durations (a dropped frame, frames missing before a truncation) do not make a
    # stream variable: more than 5% of them must stray from the typical one.
    off = np.abs(d - median) > max(2.0, 0.02 * median)
    vfr = bool(np.mean(off) > 0.05)
    if vfr:
        fps = (len(pts) - 1) / ((pts[-1] - pts[0]) * tb)
    else:
        fps = 1.0 / (float(np.mean(d[~off])) * tb)
    return float(fps), vfr


_STANDARD_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 48.0, 50.0, 60000 / 1001, 60.0,
                   100.0, 120000 / 1001, 120.0, 240.0)


def _snap_fps(fps: float) -> float:
    """The nearest standard rate when within 0.1% (29.9700 -> 30000/1001 exactly)."""
    best = min(_STANDARD_RATES, key=lambda r: abs(fps - r))
    return best if abs(fps - best) <= best * 0.001 else fps


def _scan_head(container, stream, want_pts: int) -> tuple[np.ndarray, object | None]:
    """pts of the first ``want_pts`` packets of ``stream`` and its first decoded frame.

    One demux pass: packets are only decoded until the first frame comes out (one keyframe), the
    rest are just read for their timestamps.
    """
    pts: list[int] = []
    first = None
    tried = 0
    # Only validity and orientation are read from this picture: skip deblocking, no frame-thread
    # latency.
    stream.thread_type = "SLICE"
    if stream.codec_context.name in ("h264", "hevc"):
        stream.codec_context.options = {"skip_loop_filter": "all"}
    for packet in container.demux(stream):
        if packet.pts is not None:
            pts.append(packet.pts)
        if first is None and tried < _DECODE_PACKETS:
            tried += 1
            try:
                frames = packet.decode()
                if not frames and packet.is_keyframe:
                    # A decoder holding pictures back for B-frame reordering would need two
                    # more packets (at 1080p, ~60 ms of decoding) before it lets the keyframe
                    # out; draining it lets the keyframe out now.
                    frames = stream.codec_context.decode(None)
                    if not frames:
                        stream.codec_context.flush_buffers()  # drained empty: can decode again
            except av.FFmpegError as exc:
                log.debug("head decode error in stream %d: %s", stream.index, exc)
                frames = []
            if frames:
                first = frames[0]
        if first is not None and len(pts) >= want_pts:
            break
        if first is None and tried >= _DECODE_PACKETS:
            break
    if first is None:
        try:
            frames = stream.decode(None)  # flush: a short file may hold its only frame back
        except av.FFmpegError:
            frames = []
        first = frames[0] if frames else None
    return np.array(pts, dtype=np.int64), first


def open_input(path: str):
    """``av.open`` without FFmpeg's stream probing when the container's header says enough.

    ``avformat_find_stream_info`` decodes frames to fill in what headers already say (at 1080p,
    as long as decoding a few pictures). Its decoders are told to skip every frame and read at
    most 32 bytes; formats whose streams only appear by probing (MPEG-TS) refuse that, and files
    whose header lacks the picture size are reopened the normal way.
    """
    try:
        container = av.open(path, metadata_errors="replace", options={"probesize": "32"},
                            stream_options=[{"skip_frame": "all"}] * 64)
    except ValueError:
        return av.open(path, metadata_errors="replace")
    if any(s.codec_context.width <= 0 for s in container.streams.video) or not container.streams:
        container.close()
        return av.open(path, metadata_errors="replace")
    return container


def probe(path: str) -> MediaInfo:
    """Describe ``path`` or raise :class:`MediaError` with a message for users."""
    name = _name(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MediaError(f"file not found: {name}") from None
    except OSError as exc:
        raise MediaError(f"cannot read {name}: {exc.strerror}") from None
    if not os.path.isfile(path):
        raise MediaError(f"not a media file (not a regular file): {name}")
    if st.st_size == 0:
        raise MediaError(f"not a media file (empty): {name}")
    try:
        container = open_input(path)
    except av.FFmpegError as exc:
        log.debug("cannot open %s: %s", path, exc)
        raise MediaError(f"not a media file: {name}") from None
    except PermissionError:
        raise MediaError(f"cannot read {name}: permission denied") from None
    with container:
        return _probe_open(container, path, name)


def _probe_open(container, path: str, name: str) -> MediaInfo:
    fmt = container.format.name
    if fmt in ("tty",):
        raise MediaError(f"not a media file: {name}")
    videos = _usable_video_streams(container)
    audios = list(container.streams.audio)
    if videos and all(_is_still(container, s) for s in videos) and not audios:
        raise MediaError(f"not a video or audio file (still image): {name}")
    videos = [s for s in videos if not _is_still(container, s)]
    if not videos and not audios:
        raise MediaError(f"not a media file: {name}")

    container_duration = container.duration / av.time_base if container.duration else 0.0
    bit_rate = int(container.bit_rate or 0)
    audio = audios[0] if audios else None
    audio_fields = dict(
        has_audio=audio is not None,
        audio_codec=audio.codec.canonical_name if audio else None,
        sample_rate=int(audio.codec_context.sample_rate or 0) if audio else 0,
        channels=int(audio.codec_context.channels or 0) if audio else 0,
        audio_stream=audio.index if audio else None,
    )

    if not videos:
        return _probe_audio(container, audio, name, fmt, container_duration, bit_rate, audio_fields)

    # Prefer the largest picture when a file has several video streams (a camera's proxy track).
    video = max(videos, key=lambda s: s.codec_context.width * s.codec_context.height)
    cc = video.codec_context
    width, height = int(cc.width), int(cc.height)
    tb = video.time_base or Fraction(1, 90000)
    stream_duration = float(video.duration * tb) if video.duration else 0.0
    duration = stream_duration or container_duration
    header_fps = _rate_of(video)
    check_sane(name, width, height, header_fps, duration)

    pts, first = _scan_head(container, video, _RATE_PACKETS)
    fps, vfr = frame_rate_from_pts(pts, tb)
    if fps <= 0:
        fps = header_fps
    fps = _snap_fps(fps) if not vfr else fps
    check_sane(name, width, height, fps, duration)
    if fps <= 0:
        raise MediaError(f"not a media file (no frame rate): {name}")

    if first is None:
        raise MediaError(f"not a media file (no decodable video frame): {name}")
    global _first_frame
    try:
        st = os.stat(path)
        _first_frame = ((os.path.abspath(path), st.st_size, st.st_mtime_ns, video.index),
                        first.pts, first)
    except OSError:
        _first_frame = None
    rotation = int(round(-(first.rotation or 0))) % 360
    rotation = (int(round(rotation / 90.0)) * 90) % 360

    sar_frac = video.sample_aspect_ratio or cc.sample_aspect_ratio
    sar = float(sar_frac) if sar_frac and sar_frac > 0 else 1.0
    if not (0.1 <= sar <= 10.0):
        sar = 1.0
    display_width, display_height = int(round(width * sar)), height
    if rotation in (90, 270):
        display_width, display_height = display_height, display_width

    if "matroska" in fmt and len(pts):
        # Matroska stores the *end* timestamp as its duration: a clip whose first frame is at
        # 1.5 s and that lasts 1 s says 2.5 s.
        duration = max(0.0, duration - float(np.min(pts) * tb))
    if len(pts):
        start_time = float(np.min(pts) * tb)
    elif video.start_time is not None:
        start_time = float(video.start_time * tb)
    else:
        start_time = 0.0
    frames = int(video.frames) if video.frames else int(round(duration * fps))
    return MediaInfo(
        kind="video", duration=float(duration), fps=float(fps), vfr=vfr, width=width, height=height,
        display_width=display_width, display_height=display_height, rotation=rotation, sar=sar,
        codec=video.codec.canonical_name, bit_rate=bit_rate, start_time=start_time, frames=frames, container=fmt,
        video_stream=video.index, **audio_fields,
    )


def _probe_audio(container, audio, name: str, fmt: str, container_duration: float, bit_rate: int,
                 audio_fields: dict) -> MediaInfo:
    tb = audio.time_base or Fraction(1, audio.codec_context.sample_rate or 1)
    duration = float(audio.duration * tb) if audio.duration else container_duration
    if "matroska" in fmt and audio.start_time:
        duration = max(0.0, duration - float(audio.start_time * tb))
    if not math.isfinite(duration) or duration > MAX_DURATION:
        raise MediaError(f"duration {duration:.0f} s is absurd (limit 48 h): {name}")
    if audio_fields["sample_rate"] <= 0 or audio_fields["channels"] <= 0:
        raise MediaError(f"not a media file (no audio format): {name}")
    _, first = _scan_head(container, audio, 0)
    if first is None:
        raise MediaError(f"not a media file (no decodable audio): {name}")
    start_time = float(audio.start_time * tb) if audio.start_time is not None else 0.0
    return MediaInfo(
        kind="audio", duration=duration, fps=0.0, vfr=False, width=0, height=0, display_width=0,
        display_height=0, rotation=0, sar=1.0, codec=audio.codec.canonical_name, bit_rate=bit_rate,
        start_time=start_time, frames=0, container=fmt, video_stream=None, **audio_fields,
    )


@dataclass(frozen=True)
class SourceTiming:
    """What an edit list needs of a source beyond its features: how long it is and the
    timecode of its first frame (a camera's ``tmcd`` track, or a ``timecode`` tag)."""

    duration: float  # seconds (0.0 if the container does not say)
    timecode: str | None  # as the file has it, e.g. "01:02:03:04" or "01:00:00;00" (drop frame)
    rate: float  # frames per second the timecode counts (the video's rate; 0.0 for audio)


def _timecode_tag(*tag_sets) -> str | None:
    for tags in tag_sets:
        for key, value in (tags or {}).items():
            if key.lower() == "timecode" and isinstance(value, str) and value.strip():
                return value.strip()
    return None


def source_timing(path: str) -> SourceTiming:
    """Duration and start timecode of ``path``, from its headers only (nothing is decoded).

    The timecode is looked up on the video stream (FFmpeg shows a ``tmcd`` track's start there),
    then on the other streams (the ``tmcd`` data stream itself, Matroska's ``TIMECODE`` tag),
    then on the container. Opened as :func:`open_input` opens (no frame decoded): milliseconds
    per source, even for camera originals. Raises :class:`MediaError` when it cannot be opened."""
    name = _name(path)
    try:
        container = open_input(path)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    with container:
        videos = [s for s in _usable_video_streams(container) if not _is_still(container, s)]
        others = [s for s in container.streams if s not in videos]
        duration = container.duration / av.time_base if container.duration else 0.0
        if not duration:
            for s in container.streams:
                if s.duration and s.time_base:
                    duration = max(duration, float(s.duration * s.time_base))
        timecode = _timecode_tag(*(s.metadata for s in videos), *(s.metadata for s in others), container.metadata)
        return SourceTiming(duration=float(duration), timecode=timecode,
                            rate=_rate_of(videos[0]) if videos else 0.0)
