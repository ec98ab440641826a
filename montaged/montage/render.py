"""Render an :class:`~montaged.montage.plan.EditList` to ``preview.mp4`` with PyAV, in-process.

How the two cores are used: the cuts are split into contiguous *segments* of about equal frame
counts; spawned processes each decode their cuts and encode their segment with identical x264
settings (so every segment has the same SPS/PPS), while the main process decodes, fades and
AAC-encodes the music. The segments and the music are then joined by remuxing their packets
(video timestamps shifted, nothing re-encoded) into one ``+faststart`` MP4, written under a
temporary name in the output folder and ``os.replace``d.

Frame accuracy: each cut seeks to the keyframe before its in-point and decodes forward. Output
frame ``j`` of a cut shows the source frame nearest to ``source_in + j / fps`` (the latest frame
at or before that time plus half an output frame), so a 25 fps clip in a 30 fps preview repeats
frames evenly, and a cut that ends at a scene boundary never shows the next shot's first frame.

Pictures: rotation (display matrix) and pixel aspect are applied; a clip of the other
orientation is fitted inside the frame over a blurred, darkened copy of itself.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from montaged.errors import MediaError, RenderError
from montaged.lifeline import end_with_parent
from montaged.lock import process_exists
from montaged.media.probe import open_input
from montaged.montage.plan import EditList

log = logging.getLogger("montaged.montage.render")

AUDIO_RATE = 48000
AUDIO_BITRATE = 160_000
AAC_FRAME = 1024
THUMB_HEIGHT = 108
# Segments per render process: more than one gives the pool something to balance with when
# one segment's sources are slower to decode, and gives finer progress.
SEGMENTS_PER_PROCESS = 2
# Below this many output frames (15 s at 30 fps), ``processes=0`` renders in this process.
MIN_PARALLEL_FRAMES = 450
# Black in limited-range YUV: what the letterbox shows when there is nothing to blur.
_BLACK = (16, 128, 128)
_BLUR_SIZE = (32, 18)  # the fill is this small, then scaled up: a cheap, strong blur
_BLUR_DARKEN = 0.55
# Pictures shrunk below this scale are averaged (swscale's AREA) rather than interpolated: for a
# 1080p -> 360p step AREA is ~40% cheaper than BILINEAR (which reads only 2x2 of every 3x3
# pixels), aliases less, and leaves less sensor noise for x264 to spend bits and time on.
_AREA_BELOW = 0.75
# A source at least this many times the output's size is decoded without deblocking: ~15% of a
# 1080p H.264 decode. Block edges left in reference frames do drift into the frames predicted
# from them, but at a third of the size (AREA scaling averages 3x3 pixels) they are not visible
# in a preview; the full-quality path for editing is the edit list, not this file.
_FAST_DECODE_FACTOR = 2
# Before the in-point, frames nothing refers to (most B-frames) are not decoded at all. Frames
# up to this long before it are decoded anyway: output frame 0 may show the latest frame at or
# before the in-point, and a source's clock may be off by a frame.
_PREROLL_MARGIN = 0.1

Progress = Callable[[float], None]


def _no_progress(_fraction: float) -> None:
    """Progress sink when nobody listens."""


# --- jobs passed to render processes (plain data: they are pickled) ----------------------------


@dataclass(frozen=True)
class Shot:
    cut: int  # index of the cut in the edit list
    path: str  # the file to decode (the clip, or its proxy)
    source_in: float  # seconds from the clip's first frame
    frames: int  # output frames


@dataclass(frozen=True)
class SegmentJob:
    index: int
    shots: tuple[Shot, ...]
    first_frame: int  # output frame index where the segment starts
    path: str  # where to write the encoded segment
    width: int
    height: int
    fps: int
    crf: int
    preset: str
    threads: int  # decoder and encoder threads inside this process
    clip_audio: bool  # also decode the clips' own sound


@dataclass
class SegmentResult:
    index: int
    frames: int
    thumbnails: dict[int, np.ndarray]  # cut index -> RGB thumbnail of its middle frame
    audio: np.ndarray | None  # (2, n) float32 at AUDIO_RATE: the clips' own sound, or None
    seconds: float


@dataclass
class RenderResult:
    path: Path
    frames: int
    duration: float
    thumbnails: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    processes: int = 1


# --- pictures ---------------------------------------------------------------------------------


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    """A writable (height, width) view of plane ``i`` without copying."""
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


class Fitter:
    """Turns decoded frames of one source into output frames of the preview's size.

    Each scaling step has its own ``VideoReformatter``: ``VideoFrame.reformat`` builds a new
    swscale context on every call, which cost more than the scaling itself (2.4 ms instead of
    1.0 ms for a 1080p frame to 640x360, 1.9 ms instead of 0.15 ms for the blurred backdrop).
    """

    def __init__(self, width: int, height: int, sar: float, rotation: int, out_w: int, out_h: int):
        self.out_w, self.out_h = out_w, out_h
        self.rotation = rotation % 360
        disp_w, disp_h = width * sar, height
        if self.rotation in (90, 270):
            disp_w, disp_h = disp_h, disp_w
        scale = min(out_w / disp_w, out_h / disp_h)
        self.interp = "AREA" if scale < _AREA_BELOW else "BILINEAR"
        fit_w, fit_h = min(out_w, _even(disp_w * scale)), min(out_h, _even(disp_h * scale))
        # Within a few pixels of the frame: stretch imperceptibly rather than draw thin bars.
        self.full = abs(fit_w - out_w) <= 4 and abs(fit_h - out_h) <= 4
        if self.full:
            fit_w, fit_h = out_w, out_h
        self.fit_w, self.fit_h = fit_w, fit_h
        # Size to scale the coded picture to, before it is rotated.
        self.pre_w, self.pre_h = (fit_h, fit_w) if self.rotation in (90, 270) else (fit_w, fit_h)
        self.x0, self.y0 = ((out_w - fit_w) // 2) & ~1, ((out_h - fit_h) // 2) & ~1
        self._scale, self._shrink, self._grow = VideoReformatter(), VideoReformatter(), VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.full and self.rotation == 0:
            if frame.width == self.out_w and frame.height == self.out_h and frame.format.name == "yuv420p":
                return frame  # a proxy at the preview's size: nothing to convert
            return self._scale.reformat(frame, self.out_w, self.out_h, "yuv420p", interpolation=self.interp)
        small = self._scale.reformat(frame, self.pre_w, self.pre_h, "yuv420p", interpolation=self.interp)
        planes = [_plane(small, i) for i in range(3)]
        if self.rotation:
            k = {90: -1, 180: 2, 270: 1}[self.rotation]  # np.rot90 turns counter-clockwise
            planes = [np.rot90(p, k) for p in planes]
        if self.full:
            out = av.VideoFrame(self.out_w, self.out_h, "yuv420p")
            for i, p in enumerate(planes):
                _plane(out, i)[:] = p
            return out
        out = self._background(planes)
        x0, y0 = self.x0, self.y0
        _plane(out, 0)[y0:y0 + self.fit_h, x0:x0 + self.fit_w] = planes[0]
        for i in (1, 2):
            _plane(out, i)[y0 // 2:y0 // 2 + self.fit_h // 2, x0 // 2:x0 // 2 + self.fit_w // 2] = planes[i]
        return out

    def _background(self, planes: list[np.ndarray]) -> av.VideoFrame:
        """The picture itself, cropped to fill the frame, shrunk to a few pixels and scaled back
        up: a strong blur for the price of two tiny rescales."""
        fh, fw = planes[0].shape
        target = self.out_w / self.out_h
        if fw / fh > target:  # crop the sides
            cw, ch = _even(fh * target), fh
        else:  # crop top and bottom
            cw, ch = fw, _even(fw / target)
        cw, ch = min(cw, fw - fw % 2), min(ch, fh - fh % 2)
        x, y = ((fw - cw) // 2) & ~1, ((fh - ch) // 2) & ~1
        crop = av.VideoFrame(cw, ch, "yuv420p")
        _plane(crop, 0)[:] = planes[0][y:y + ch, x:x + cw]
        for i in (1, 2):
            _plane(crop, i)[:] = planes[i][y // 2:y // 2 + ch // 2, x // 2:x // 2 + cw // 2]
        tiny = self._shrink.reformat(crop, *_BLUR_SIZE, "yuv420p", interpolation="AREA")
        luma = _plane(tiny, 0)
        luma[:] = (16 + (luma.astype(np.float32) - 16) * _BLUR_DARKEN).astype(np.uint8)
        return self._grow.reformat(tiny, self.out_w, self.out_h, "yuv420p", interpolation="BICUBIC")


# --- sources ----------------------------------------------------------------------------------


def video_stream(container: av.container.InputContainer):
    """The picture stream: the largest one that is not cover art."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        return None
    return max(streams, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def first_frame_time(container, stream) -> float:
    """Time of the first video frame: what the analysis counts source times from. The smallest
    pts of the first packets, as media.probe computes it (B-frames reorder the first pts).
    Leaves the container's read position moved: seek before decoding."""
    tb = stream.time_base or Fraction(1, 90000)
    pts = []
    for packet in container.demux(stream):
        if packet.pts is not None:
            pts.append(packet.pts)
        if len(pts) >= 16:
            break
    if pts:
        return float(min(pts) * tb)
    return float(stream.start_time * tb) if stream.start_time is not None else 0.0


class Source:
    """An open clip that hands out frames at output times, seeking to keyframes."""

    def __init__(self, path: str, threads: int, out_size: tuple[int, int] | None = None):
        self.path = path
        self.name = os.path.basename(path)
        try:
            # Without FFmpeg's stream probing, which decodes pictures to learn what the
            # header says (~80 ms for a 1080p clip, in every render process that opens it).
            self.container = open_input(path)
        except (av.FFmpegError, OSError) as exc:
            raise RenderError(f"cannot read clip {self.name}: {exc}") from None
        self.stream = video_stream(self.container)
        if self.stream is None:
            self.container.close()
            raise RenderError(f"clip has no picture: {self.name}")
        self.stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        self.stream.thread_count = threads
        cc = self.stream.codec_context
        if out_size and min(cc.width or 0, cc.height or 0) >= _FAST_DECODE_FACTOR * min(out_size):
            cc.options = {**cc.options, "skip_loop_filter": "all"}  # see _FAST_DECODE_FACTOR
        self.tb = self.stream.time_base or Fraction(1, 90000)
        self.start = self._first_pts_time()
        cc = self.stream.codec_context
        sar = self.stream.sample_aspect_ratio or cc.sample_aspect_ratio
        self.sar = float(sar) if sar and 0.1 <= float(sar) <= 10 else 1.0
        self.fitter: Fitter | None = None
        self.rotation = 0

    def _first_pts_time(self) -> float:
        return first_frame_time(self.container, self.stream)

    def close(self) -> None:
        self.container.close()

    def _decoded(self, preroll_until: float = -math.inf):
        """Decoded frames from the demuxer's position on. Packets shown before
        ``preroll_until`` (seconds) are decoded only if later frames refer to them."""
        ctx = self.stream.codec_context
        skip_before = preroll_until - _PREROLL_MARGIN
        try:
            # The demuxer ends with an empty packet that drains the decoder (and, unlike
            # decode(None), gives the last frames their time base).
            for packet in self.container.demux(self.stream):
                # Read when the packet is handed to a decoder thread, so it applies per packet.
                ctx.skip_frame = ("NONREF" if packet.pts is not None and packet.pts * self.tb < skip_before
                                  else "DEFAULT")
                for frame in ctx.decode(packet):
                    if frame.pts is not None:
                        yield frame
        except av.error.EOFError:
            return
        except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
            log.warning("%s: decoding stopped at damaged data: %s", self.name, exc)

    def _seek(self, t: float) -> None:
        self.container.seek(max(0, int(math.floor(t / self.tb))), stream=self.stream, backward=True, any_frame=False)

    def frames(self, source_in: float, n: int, fps: int):
        """Yield ``n`` decoded frames: for output frame j, the source frame nearest to
        ``source_in + j / fps`` that is not later than half an output frame after it."""
        t0 = self.start + source_in
        tol = 0.5 / fps
        back = 0.0
        for attempt in range(4):
            self._seek(t0 - back)
            gen = self._decoded(preroll_until=t0)
            nxt = next(gen, None)
            # Some files seek past the keyframe asked for: back off and try again.
            if nxt is None or nxt.time <= t0 + tol or t0 - back <= self.start:
                break
            back = (back or 1.0) * 4
        if nxt is None:
            raise RenderError(f"cannot decode clip {self.name} at {source_in:.3f} s")
        if self.fitter is None:
            self.rotation = (int(round(-(nxt.rotation or 0) / 90.0)) * 90) % 360
        cur = None
        for j in range(n):
            t = t0 + j / fps + tol
            while nxt is not None and nxt.time <= t:
                cur, nxt = nxt, next(gen, None)
            if cur is None:  # the clip starts after the in-point (rounding at the first frame)
                cur, nxt = nxt, next(gen, None)
            if cur is None:
                raise RenderError(f"clip {self.name} ends before {source_in + j / fps:.3f} s")
            yield cur

    def fit(self, out_w: int, out_h: int) -> Fitter:
        if self.fitter is None:
            cc = self.stream.codec_context
            self.fitter = Fitter(cc.width, cc.height, self.sar, self.rotation, out_w, out_h)
        return self.fitter


# --- audio ------------------------------------------------------------------------------------


def decode_stereo(path: str, start: float, duration: float, rate: int = AUDIO_RATE,
                  origin: str = "container") -> np.ndarray:
    """(2, round(duration * rate)) float32 of ``path``'s audio from media time ``start``.

    ``origin="container"``: times count from the container's start time (the clock the music
    analysis uses); ``"video"``: from the first video frame (the clock of clip scene times).
    Silence where the file has no sound.
    """
    n = int(round(duration * rate))
    out = np.zeros((2, n), np.float32)
    name = os.path.basename(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise RenderError(f"cannot read {name}: {exc}") from None
    with container:
        streams = [s for s in container.streams.audio if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            return out
        stream = streams[0]
        picture = video_stream(container) if origin == "video" else None
        if picture is not None:
            zero = first_frame_time(container, picture)
        else:
            zero = container.start_time / 1e6 if container.start_time is not None else 0.0
        t0 = zero + start
        container.seek(max(0, int((t0 - 0.5) * 1e6)), backward=True, any_frame=False)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        pos: int | None = None  # output sample index of the next resampled sample
        try:
            for frame in container.decode(stream):
                if pos is None:
                    ft = frame.time if frame.time is not None else t0
                    pos = int(round((ft - t0) * rate))
                for r in resampler.resample(frame):
                    pos = _place(out, r, pos)
                if pos >= n:
                    break
            else:
                for r in resampler.resample(None):
                    pos = _place(out, r, pos if pos is not None else 0)
        except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
            log.warning("%s: audio decoding stopped at damaged data: %s", name, exc)
    return out


def _place(out: np.ndarray, frame: av.AudioFrame, pos: int) -> int:
    data = frame.to_ndarray()  # (2, samples) for fltp stereo
    m = data.shape[1]
    a, b = max(pos, 0), min(pos + m, out.shape[1])
    if b > a:
        out[:, a:b] = data[:, a - pos:b - pos]
    return pos + m


def fade_out(audio: np.ndarray, start: float, duration: float, rate: int = AUDIO_RATE) -> None:
    """Fade to silence from ``start`` over ``duration`` seconds (raised cosine), in place."""
    a = int(round(start * rate))
    n = audio.shape[1] - a
    if n <= 0 or duration <= 0:
        return
    x = np.minimum(np.arange(n, dtype=np.float32) / np.float32(duration * rate), 1.0)
    audio[:, a:] *= 0.5 * (1.0 + np.cos(np.pi * x))


# --- segments (run in render processes) -------------------------------------------------------


def render_segment(job: SegmentJob) -> SegmentResult:
    """Decode, fit and encode one run of cuts to ``job.path``. Runs in a spawned process."""
    t_start = time.perf_counter()
    sources: dict[str, Source] = {}
    thumbs: dict[int, np.ndarray] = {}
    total = sum(s.frames for s in job.shots)
    audio = np.zeros((2, int(round(total / job.fps * AUDIO_RATE))), np.float32) if job.clip_audio else None
    try:
        out = av.open(job.path, "w", format="mp4")
    except (av.FFmpegError, OSError) as exc:
        raise RenderError(f"cannot write {os.path.dirname(job.path)}: {_reason(exc)}") from None
    try:
        stream = add_video_stream(out, job.width, job.height, job.fps, job.crf, job.preset, job.threads)
        n = 0
        frame_tb = Fraction(1, job.fps)
        for shot in job.shots:
            src = sources.get(shot.path)
            if src is None:
                src = sources[shot.path] = Source(shot.path, job.threads, (job.width, job.height))
            last_in = last_out = None
            for j, frame in enumerate(src.frames(shot.source_in, shot.frames, job.fps)):
                if frame is not last_in:  # a repeated source frame (25 -> 30 fps) is fitted once
                    last_in, last_out = frame, src.fit(job.width, job.height)(frame)
                last_out.pts = n
                # reformat() keeps the source's time base; the stream's changes when the muxer
                # starts (mp4: 1/15360). Frames are counted in output frames.
                last_out.time_base = frame_tb
                if j == shot.frames // 2:
                    thumbs[shot.cut] = thumbnail(last_out)
                for packet in stream.encode(last_out):
                    out.mux(packet)
                n += 1
            if audio is not None:
                a = int(round((n - shot.frames) / job.fps * AUDIO_RATE))
                piece = decode_stereo(shot.path, shot.source_in, shot.frames / job.fps, origin="video")
                audio[:, a:a + piece.shape[1]] = piece[:, : audio.shape[1] - a]
        for packet in stream.encode(None):
            out.mux(packet)
        out.close()
    except (av.FFmpegError, OSError) as exc:
        out_close_quietly(out)
        raise RenderError(f"cannot write the preview: {_reason(exc)}") from None
    except BaseException:
        out_close_quietly(out)
        raise
    finally:
        for src in sources.values():
            src.close()
    return SegmentResult(job.index, n, thumbs, audio, time.perf_counter() - t_start)


def out_close_quietly(container) -> None:
    try:
        container.close()
    except (av.FFmpegError, OSError) as exc:  # already failing: the first error is the one to report
        log.debug("closing a failed output: %s", exc)


def thumbnail(frame: av.VideoFrame, height: int = THUMB_HEIGHT) -> np.ndarray:
    width = _even(frame.width * height / frame.height)
    return frame.reformat(width, height, "rgb24", interpolation="AREA").to_ndarray()


def add_video_stream(out, width: int, height: int, fps: int, crf: int, preset: str, threads: int):
    """The one place the x264 settings are made: every segment must get identical ones, or the
    joined stream would carry mismatched SPS/PPS."""
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.time_base = Fraction(1, fps)
    stream.codec_context.thread_count = threads
    stream.options = {"crf": str(crf), "preset": preset, "g": str(2 * fps)}
    return stream


def _reason(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    if errno is not None and errno > 0:
        return os.strerror(errno)
    return getattr(exc, "strerror", None) or str(exc)


# --- orchestration ----------------------------------------------------------------------------


def _split(shots: list[Shot], parts: int) -> list[list[Shot]]:
    """Contiguous runs of shots with about equal frame counts."""
    total = sum(s.frames for s in shots)
    parts = max(1, min(parts, len(shots)))
    target = total / parts
    runs: list[list[Shot]] = [[]]
    done = 0
    for s in shots:
        if runs[-1] and done + s.frames / 2 > target * len(runs) and len(runs) < parts:
            runs.append([])
        runs[-1].append(s)
        done += s.frames
    return runs


def _remove_stale_work(out_dir: Path, name: str) -> None:
    """Remove work folders of renders whose process is gone (killed with -9, power loss): they
    are hidden, so nobody mistakes them for output, but they should not pile up."""
    for work in out_dir.glob(f".{name}.*.tmp"):
        parts = work.name[len(name) + 2:].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        if pid is None or pid == os.getpid() or process_exists(pid):
            continue  # not ours to judge, or still rendering
        log.info("removing %s, left behind by an interrupted render", work)
        shutil.rmtree(work, ignore_errors=True)


# Render processes are kept for the next preview: starting an interpreter and importing PyAV and
# numpy costs ~0.4 s of CPU in each, which every preview would wait for. Idle, they cost memory
# only (~40 MB each).
_pool: tuple[int, ProcessPoolExecutor] | None = None


def _segment_pool(n: int) -> ProcessPoolExecutor:
    global _pool
    if _pool is not None and _pool[0] != n:
        _discard_segment_pool()
    if _pool is None:
        # end_with_parent: kept processes outlive renders, and must not outlive the process
        # that keeps them (a render worker killed with its daemon).
        _pool = (n, ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=end_with_parent))
    return _pool[1]


def _discard_segment_pool() -> None:
    global _pool
    if _pool is not None:
        pool, _pool = _pool[1], None
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(n: int, fn: Callable, items: list) -> list[Future]:
    """``fn(item)`` for every item in the kept pool of ``n`` processes."""
    try:
        pool = _segment_pool(n)
        return [pool.submit(fn, item) for item in items]
    except BrokenProcessPool:
        # A kept process died since the last preview (the OOM killer, a kill -9): new ones.
        _discard_segment_pool()
        pool = _segment_pool(n)
        return [pool.submit(fn, item) for item in items]


def _ready(_item=None) -> int:
    return os.getpid()


def start_render_processes(processes: int = 0) -> None:
    """Start the processes that render long previews now, in the background, rather than when
    the first one is asked for (the daemon's render worker calls this before each render, so
    only its first preview ever waits for them)."""
    n = _processes(processes, MIN_PARALLEL_FRAMES)
    if n > 1:
        _submit(n, _ready, list(range(n)))  # one submission per missing process: each starts one


def _processes(requested: int, frames: int) -> int:
    """Render processes: ``requested``, or with 0 the CPU count, except for short previews,
    where starting interpreters (about half a second of CPU each) costs more than it saves."""
    if multiprocessing.current_process().daemon:
        return 1  # a daemonic worker (a multiprocessing.Pool child) may not start processes
    if requested:
        return max(1, requested)
    return 1 if frames < MIN_PARALLEL_FRAMES else max(1, os.cpu_count() or 1)


def render(edit: EditList, out_path: str | os.PathLike, *, folder: str | os.PathLike | None = None,
           crf: int = 23, preset: str = "superfast", processes: int = 0, clip_audio: float = 0.0,
           proxies: Mapping[str, str | os.PathLike] | None = None, progress: Progress | None = None) -> RenderResult:
    """Render ``edit`` to ``out_path`` (written atomically). Sources are ``folder / cut.source``
    (``folder`` defaults to ``edit.folder``) or their proxy when ``proxies`` has one.

    Raises :class:`RenderError` with the reason when the output cannot be written (no partial
    file is left) or a source cannot be read.
    """
    t_start = time.perf_counter()
    progress = progress or _no_progress
    out_path = Path(out_path)
    folder = Path(folder if folder is not None else edit.folder)
    proxies = dict(proxies or {})
    if not edit.cuts:
        raise RenderError("nothing to render: the edit list has no cuts")
    shots = []
    for cut in edit.cuts:
        a, b = edit.frame_range(cut)
        path = Path(proxies[cut.source]) if cut.source in proxies else folder / cut.source
        if not path.is_file():
            raise RenderError(f"clip not found: {cut.source}")
        shots.append(Shot(cut.index, str(path), cut.source_in, b - a))
    music_path = folder / edit.music_path
    if not music_path.is_file():
        raise RenderError(f"music not found: {edit.music_path}")
    total_frames = sum(s.frames for s in shots)

    out_dir = out_path.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_work(out_dir, out_path.name)
        work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.{os.getpid()}.", suffix=".tmp", dir=out_dir))
    except OSError as exc:
        raise RenderError(f"cannot write to {out_dir}: {_reason(exc)}") from None
    n_proc = min(_processes(processes, total_frames), len(shots))
    runs = _split(shots, n_proc * SEGMENTS_PER_PROCESS if n_proc > 1 else 1)
    threads = max(1, (os.cpu_count() or 1) // n_proc)
    jobs, first = [], 0
    for i, run in enumerate(runs):
        jobs.append(SegmentJob(i, tuple(run), first, str(work / f"segment{i:03d}.mp4"), edit.width, edit.height,
                               edit.fps, crf, preset, threads, clip_audio > 0))
        first += sum(s.frames for s in run)
    tmp = work / out_path.name
    audio_path = work / "music.m4a"
    try:
        results = _run_segments(jobs, n_proc, edit, music_path, audio_path, clip_audio, progress)
        _join(tmp, [j.path for j in jobs], audio_path, edit.fps)
        os.replace(tmp, out_path)
    except OSError as exc:
        raise RenderError(f"cannot write the preview to {out_dir}: {_reason(exc)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(1.0)
    thumbs: dict[int, np.ndarray] = {}
    for r in results:
        thumbs.update(r.thumbnails)
    seconds = time.perf_counter() - t_start
    log.info("rendered %s: %d frames (%.1f s) in %.2f s with %d process(es)", out_path, total_frames,
             total_frames / edit.fps, seconds, n_proc)
    return RenderResult(out_path, total_frames, total_frames / edit.fps, thumbs, seconds, n_proc)


def _music(edit: EditList, music_path: Path) -> np.ndarray:
    audio = decode_stereo(str(music_path), edit.music_offset, edit.duration)
    fade_out(audio, edit.fade_start, edit.fade_duration)
    return audio


def _mix(music: np.ndarray, jobs: list[SegmentJob], results: list[SegmentResult], level: float, fps: int) -> None:
    for job, res in zip(jobs, results):
        a = int(round(job.first_frame / fps * AUDIO_RATE))
        piece = res.audio[:, : music.shape[1] - a]
        music[:, a:a + piece.shape[1]] += np.float32(level) * piece
    np.clip(music, -1.0, 1.0, out=music)


def _run_segments(jobs: list[SegmentJob], n_proc: int, edit: EditList, music_path: Path, audio_path: Path,
                  clip_audio: float, progress: Progress) -> list[SegmentResult]:
    """Render the segments (in ``n_proc`` processes) and, meanwhile in this process, decode,
    fade and encode the music to ``audio_path``."""
    total = sum(sum(s.frames for s in j.shots) for j in jobs)
    results: dict[int, SegmentResult] = {}

    def collect(res: SegmentResult) -> None:
        log.debug("segment %d: %d frames in %.2f s", res.index, res.frames, res.seconds)
        results[res.index] = res
        progress(0.95 * sum(r.frames for r in results.values()) / total)

    if n_proc <= 1:
        music = _music(edit, music_path)
        for job in jobs:
            collect(render_segment(job))
    else:
        pending = set(_submit(n_proc, render_segment, jobs))
        try:
            music = _music(edit, music_path)
            if clip_audio <= 0:  # the music does not depend on the segments: encode it now
                encode_audio_file(audio_path, music)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    collect(f.result())
        except BaseException:
            # Segments still running write into the work folder the caller removes: wait for
            # them. The next render starts fresh processes (these may be broken).
            _discard_segment_pool()
            raise
    ordered = [results[j.index] for j in jobs]
    if clip_audio > 0:
        _mix(music, jobs, ordered, clip_audio, edit.fps)
    if clip_audio > 0 or n_proc <= 1:
        encode_audio_file(audio_path, music)
    return ordered


def encode_audio_file(path: Path, audio: np.ndarray) -> None:
    """(2, n) float32 at AUDIO_RATE -> AAC in an MP4 container, for remuxing into the preview.

    FFmpeg's native AAC encoder is slow (twoloop: ~0.06 CPU-seconds per second of music here,
    a quarter of a 360p preview's CPU). The ``fast`` coder without intensity stereo, mid/side
    and noise substitution takes about half that (measured 0.032); at 160 kb/s stereo the
    difference is not audible on a preview."""
    try:
        out = av.open(str(path), "w", format="mp4")
    except (av.FFmpegError, OSError) as exc:
        raise RenderError(f"cannot write the preview: {_reason(exc)}") from None
    try:
        stream = out.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        stream.bit_rate = AUDIO_BITRATE
        stream.options = {"aac_coder": "fast", "aac_is": "0", "aac_ms": "0", "aac_pns": "0"}
        tb = Fraction(1, AUDIO_RATE)
        for s in range(0, audio.shape[1], AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, s:s + AAC_FRAME]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, s, tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        out.close()
    except (av.FFmpegError, OSError) as exc:
        out_close_quietly(out)
        raise RenderError(f"cannot write the preview: {_reason(exc)}") from None


def _join(path: Path, segments: list[str], audio_path: Path, fps: int) -> None:
    """Remux the segments' video packets back to back, and the encoded music, into one MP4."""
    try:
        out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    except (av.FFmpegError, OSError) as exc:
        raise RenderError(f"cannot write the preview: {_reason(exc)}") from None
    inputs = []
    try:
        inputs = [av.open(p) for p in segments]
        audio_in = av.open(str(audio_path))
        inputs.append(audio_in)
        template = inputs[0].streams.video[0]
        vstream = out.add_stream_from_template(template)
        astream = out.add_stream_from_template(audio_in.streams.audio[0])
        extradata = template.codec_context.extradata
        audio_packets = (p for p in audio_in.demux(audio_in.streams.audio[0]) if p.dts is not None)
        pending_audio = next(audio_packets, None)
        offset = 0  # output frames before this segment
        for seg in inputs[:-1]:
            st = seg.streams.video[0]
            if st.codec_context.extradata != extradata:
                raise RenderError("render segments were encoded with different settings")
            shift = int(round(Fraction(offset, fps) / st.time_base))
            count = 0
            for packet in seg.demux(st):
                if packet.dts is None:
                    continue
                packet.pts += shift
                packet.dts += shift
                packet.stream = vstream
                out.mux(packet)
                count += 1
            offset += count
            # Interleave: the music up to the end of this segment.
            until = Fraction(offset, fps)
            while pending_audio is not None and pending_audio.dts * pending_audio.time_base < until:
                pending_audio.stream = astream
                out.mux(pending_audio)
                pending_audio = next(audio_packets, None)
        while pending_audio is not None:
            pending_audio.stream = astream
            out.mux(pending_audio)
            pending_audio = next(audio_packets, None)
        out.close()
    except (av.FFmpegError, OSError) as exc:
        out_close_quietly(out)
        raise RenderError(f"cannot write the preview: {_reason(exc)}") from None
    finally:
        for c in inputs:
            c.close()


# --- proxies ----------------------------------------------------------------------------------


def make_proxy(src: str | os.PathLike, dst: str | os.PathLike, height: int = 360, *, gop: int = 12,
               crf: int = 20, preset: str = "superfast") -> Path:
    """A small, fast-to-seek copy of ``src`` for rendering: ``height`` lines, square pixels,
    rotation applied, short GOP without B-frames, and the same frame times relative to the
    first frame (VFR kept), so edit-list times address the same pictures. Written atomically.
    """
    src, dst = Path(src), Path(dst)
    source = Source(str(src), threads=os.cpu_count() or 1, out_size=(height, height))
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        source._seek(source.start)
        gen = source._decoded()
        first = next(gen, None)
        if first is None:
            raise MediaError(f"not a media file (no decodable video frame): {src.name}")
        source.rotation = (int(round(-(first.rotation or 0) / 90.0)) * 90) % 360
        cc = source.stream.codec_context
        disp_w, disp_h = cc.width * source.sar, cc.height
        if source.rotation in (90, 270):
            disp_w, disp_h = disp_h, disp_w
        out_h = min(_even(height), _even(disp_h))
        out_w = _even(disp_w * out_h / disp_h)
        fitter = Fitter(cc.width, cc.height, source.sar, source.rotation, out_w, out_h)
        out = av.open(str(tmp), "w", format="mp4")
        try:
            stream = out.add_stream("libx264", rate=source.stream.average_rate or 30)
            stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
            # Keep the source's clock (VFR frames keep their exact times): the encoder must count
            # in it too, or close pts would be rounded onto the same tick.
            stream.time_base = source.tb
            stream.codec_context.time_base = source.tb
            stream.options = {"crf": str(crf), "preset": preset, "g": str(gop), "bf": "0"}
            base = int(round(source.start / source.tb))  # proxy time 0 = the clip's first frame
            frame = first
            while frame is not None:
                small = fitter(frame)
                small.pts = frame.pts - base
                small.time_base = source.tb
                for packet in stream.encode(small):
                    out.mux(packet)
                frame = next(gen, None)
            for packet in stream.encode(None):
                out.mux(packet)
            out.close()
        except BaseException:
            out_close_quietly(out)
            raise
        os.replace(tmp, dst)
    except (av.FFmpegError, OSError) as exc:
        raise RenderError(f"cannot make a proxy of {src.name}: {_reason(exc)}") from None
    finally:
        source.close()
        try:
            tmp.unlink(missing_ok=True)
        except OSError as exc:  # a read-only folder: nothing was written there
            log.debug("could not remove %s: %s", tmp, exc)
    return dst
