"""Video decoding helpers on PyAV: packet index, intra frames, GOP spans, small frames.

The analysis decodes as little as it can, so :class:`VideoFile` is built around three costs:

- :meth:`VideoFile.scan` demuxes the whole stream *without decoding*: pts, size, keyframe flag
  and (H.264, HEVC, MPEG-4 Part 2: from a few header bits) the picture type of every frame.
  Nearly free (tens of milliseconds per minute of 1080p): the map the scene detector plans with.
- :meth:`VideoFile.decode_intra` decodes chosen intra pictures alone: their packets are
  collected first, then fed as one batch to a frame-threaded decoder (intra pictures do not
  depend on each other, so both cores work) with the loop filter off (nothing is predicted from
  these pictures here, so deblocking would only cost time).
- :meth:`VideoFile.decode_span` decodes every frame of a range, starting at the keyframe before
  it, and converts only the frames asked for.

One container is opened per file and reused (opening runs FFmpeg's stream probing, which
decodes a frame: at 1080p that costs as much as decoding a few pictures).

Frames come back as small numpy arrays: a cached ``VideoReformatter`` lets FFmpeg's C code
scale and convert, so no full-size RGB picture is ever built in Python.

Damaged input: a truncated file is decoded up to the damage (``PacketIndex.truncated``);
packets the demuxer flags corrupt or the decoder rejects are skipped and counted.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

from montaged.errors import MediaError
from montaged.media.probe import open_input, take_first_frame

log = logging.getLogger("montaged.media.video")

# swscale filter for the small pictures. FAST_BILINEAR costs a quarter of BILINEAR at 1080p and,
# like OpenCV's INTER_LINEAR that PySceneDetect resizes with, does not average away sensor noise,
# so scores stay closest to PySceneDetect's.
SCALE_INTERPOLATION = "FAST_BILINEAR"

# Picture types in PacketIndex.ptype.
UNKNOWN, I_FRAME, P_FRAME, B_FRAME = 0, 1, 2, 3


@dataclass
class PacketIndex:
    """Every frame of a video stream, in *display* order (sorted by pts).

    ``index i`` is the frame number as PySceneDetect counts it: 0 is the first frame shown.
    """

    pts: np.ndarray  # int64, time_base ticks
    dts: np.ndarray  # int64 (pts when the container has none)
    size: np.ndarray  # int32, bytes of the compressed frame
    key: np.ndarray  # bool, a random-access point (IDR / keyframe)
    ptype: np.ndarray  # int8: UNKNOWN, I_FRAME, P_FRAME, B_FRAME (parsed from the bitstream)
    decode_order: np.ndarray  # int32, position of each frame in the file (decode order)
    time_base: Fraction
    corrupt: int  # packets flagged corrupt by the demuxer (kept out of the index)
    truncated: bool  # the file ends before its index says it should
    stream_index: int
    codec: str

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def times(self) -> np.ndarray:
        """Presentation time of every frame in seconds (float64, absolute pts)."""
        return self.pts.astype(np.float64) * float(self.time_base)

    @property
    def keyframes(self) -> np.ndarray:
        """Display indices of the keyframes."""
        return np.flatnonzero(self.key)

    def pts_position(self) -> dict[int, int]:
        """pts -> display index (built once, cached)."""
        cache = self.__dict__.get("_pts_position")
        if cache is None:
            cache = {int(p): i for i, p in enumerate(self.pts.tolist())}
            self.__dict__["_pts_position"] = cache
        return cache

    @property
    def intra(self) -> np.ndarray:
        """Bool per frame: coded without reference to other frames (keyframe or I picture)."""
        return self.key | (self.ptype == I_FRAME)


# --------------------------------------------------------------------------------------------
# Picture type from the first bytes of a packet (no decoding)


def _read_ue(data: bytes, bitpos: int) -> tuple[int, int]:
    """Exp-Golomb ue(v) at ``bitpos``; returns (value, new bitpos). Raises IndexError at the end."""
    zeros = 0
    while not (data[bitpos >> 3] >> (7 - (bitpos & 7))) & 1:
        zeros += 1
        bitpos += 1
        if zeros > 31:
            raise IndexError("bad exp-golomb code")
    bitpos += 1
    value = 0
    for _ in range(zeros):
        value = (value << 1) | ((data[bitpos >> 3] >> (7 - (bitpos & 7))) & 1)
        bitpos += 1
    return (1 << zeros) - 1 + value, bitpos


def _unescape(rbsp) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00) from the start of a NAL payload."""
    return bytes(rbsp).replace(b"\x00\x00\x03", b"\x00\x00")


# Only the first NAL units of a packet matter (parameter sets, SEI, then the first slice); the
# picture data after them is never copied.
_HEAD = 4096


def _nal_units(data: memoryview, length_size: int) -> Iterable[memoryview]:
    """First bytes of each NAL unit of one packet: length-prefixed (MP4/MKV) or Annex B."""
    if length_size:
        pos, end = 0, len(data)
        while pos + length_size <= end:
            n = int.from_bytes(data[pos:pos + length_size], "big")
            pos += length_size
            if n <= 0 or pos + n > end:
                return
            yield data[pos:pos + min(n, 32)]
            pos += n
    else:
        head = bytes(data[:_HEAD])
        pos = head.find(b"\x00\x00\x01")
        while pos >= 0:
            nxt = head.find(b"\x00\x00\x01", pos + 3)
            yield memoryview(head)[pos + 3:(nxt if nxt >= 0 else len(head))][:32]
            pos = nxt


def _h264_type(data: bytes, length_size: int) -> int:
    for nal in _nal_units(data, length_size):
        if not nal:
            continue
        nal_type = nal[0] & 0x1F
        if nal_type in (1, 5):
            if nal_type == 5:
                return I_FRAME
            try:
                body = _unescape(nal[1:16])
                _, pos = _read_ue(body, 0)  # first_mb_in_slice
                slice_type, _ = _read_ue(body, pos)
            except IndexError:
                return UNKNOWN
            return {0: P_FRAME, 1: B_FRAME, 2: I_FRAME, 3: P_FRAME, 4: I_FRAME}.get(slice_type % 5, UNKNOWN)
    return UNKNOWN


def _hevc_type(data: bytes, length_size: int) -> int:
    for nal in _nal_units(data, length_size):
        if len(nal) < 3:
            continue
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type > 31:
            continue  # parameter sets, SEI, AUD
        if 16 <= nal_type <= 23:
            return I_FRAME  # IRAP: BLA, IDR, CRA
        try:
            body = _unescape(nal[2:18])
            first_slice = body[0] >> 7
            if not first_slice:
                return UNKNOWN
            _, pos = _read_ue(body, 1)  # slice_pic_parameter_set_id
            # Assumes num_extra_slice_header_bits == 0 (x265 and hardware encoders).
            slice_type, _ = _read_ue(body, pos)
        except IndexError:
            return UNKNOWN
        return {0: B_FRAME, 1: P_FRAME, 2: I_FRAME}.get(slice_type, UNKNOWN)
    return UNKNOWN


def _mpeg4_type(data: memoryview, _length_size: int) -> int:
    data = bytes(data[:256])  # the VOP header follows a short VOL header at most
    pos = data.find(b"\x00\x00\x01\xb6")
    if pos < 0 or pos + 4 >= len(data):
        return UNKNOWN
    return {0: I_FRAME, 1: P_FRAME, 2: B_FRAME, 3: P_FRAME}[data[pos + 4] >> 6]


_TYPE_PARSERS = {"h264": _h264_type, "hevc": _hevc_type, "mpeg4": _mpeg4_type}


def _length_size(codec: str, extradata: bytes | None) -> int:
    """NAL length prefix size from avcC/hvcC extradata; 0 means Annex B start codes."""
    if not extradata:
        return 0
    if codec == "h264" and extradata[0] == 1 and len(extradata) > 4:
        return (extradata[4] & 3) + 1
    if codec == "hevc" and extradata[0] == 1 and len(extradata) > 21:
        return (extradata[21] & 3) + 1
    return 0


# --------------------------------------------------------------------------------------------
# Pictures


def small_size(width: int, height: int, target: int = 256) -> tuple[int, int]:
    """PySceneDetect's downscale: the longer side of the picture becomes ``target`` pixels.

    ``factor = max(width, height) / target``; new size = round(side / factor), as
    ``SceneManager`` does with ``compute_downscale_factor``. Smaller pictures are kept as they are.
    """
    longest = max(width, height)
    if longest < target:
        return width, height
    factor = longest / float(target)
    return max(1, round(width / factor)), max(1, round(height / factor))


class _Converter:
    """Scale + convert frames with one cached swscale context per output rendition.

    ``VideoFrame.reformat`` builds a new swscale context on every call (milliseconds each); a
    ``VideoReformatter`` keeps its context while the input and output stay the same.

    ``fmt="bgrp"`` returns planar (3, h, w) uint8 in B, G, R order: contiguous planes make the
    per-pixel numpy work of the scene metric several times faster than slicing channels out of
    packed BGR. (FFmpeg's own planar ``gbrp`` output is slower to produce than packed ``bgr24``
    plus a numpy transpose of the small picture.)
    """

    def __init__(self) -> None:
        self._reformatters: dict[tuple, VideoReformatter] = {}

    def __call__(self, frame: av.VideoFrame, size: tuple[int, int] | None, fmt: str) -> np.ndarray:
        if size is None:
            size = (frame.width, frame.height)
        key = (size, fmt)
        r = self._reformatters.get(key)
        if r is None:
            r = self._reformatters[key] = VideoReformatter()
        out = r.reformat(frame, width=size[0], height=size[1],
                         format="bgr24" if fmt == "bgrp" else fmt, interpolation=SCALE_INTERPOLATION)
        array = out.to_ndarray()
        if fmt != "bgrp":
            return array
        return np.ascontiguousarray(array.transpose(2, 0, 1))


@dataclass
class Decoded:
    """Frames decoded by a helper: display indices, the pictures, and errors met."""

    indices: np.ndarray  # int64 display indices into the PacketIndex
    images: np.ndarray  # (n, ...) uint8, one picture per index
    errors: int  # packets the decoder rejected
    extra: dict[str, list] = field(default_factory=dict)  # other renditions, aligned with indices


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return np.stack(images) if images else np.zeros((0, 1, 1), np.uint8)


# --------------------------------------------------------------------------------------------
# Decoder errors


class _DecodeErrors:
    """Counts what the decoder reports while it conceals damage.

    FFmpeg's decoders repair a damaged slice from its neighbours and carry on without an error
    code; they only *log* "error while decoding MB ...". FFmpeg's log is captured (PyAV routes
    it only when a level is set, so one is set for the duration) and each such line counts as a
    damaged frame, plus every packet the decoder refused outright.
    """

    def __init__(self) -> None:
        self.count = 0
        self._capture = None
        self._level = None

    def __enter__(self) -> "_DecodeErrors":
        self._level = av.logging.get_level()
        if self._level is None or self._level < av.logging.ERROR:
            av.logging.set_level(av.logging.ERROR)
        self._capture = av.logging.Capture(local=False)
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)
        av.logging.set_level(self._level)
        lines = [m for lvl, _name, m in self._capture.logs if lvl <= av.logging.ERROR]
        damaged = sum(1 for m in lines if "error while decoding" in m)
        self.count += damaged if damaged else (1 if lines else 0)
        for m in lines[:5]:
            log.debug("decoder: %s", m.strip())


def _drain(ctx) -> None:
    """Let a decoder's threads finish before it is freed.

    Freeing a frame-threaded decoder (``avcodec_free_context``, in PyAV's dealloc, which holds
    the GIL) waits for threads still decoding packets fed to it. While :class:`_DecodeErrors`
    routes FFmpeg's log to Python, such a thread that logs an error ("error while decoding
    MB", routine for damaged input) waits for the GIL: neither ever goes on (PyAV #909; it hung
    analysis jobs until ``job_timeout``). Draining waits for the threads with the GIL released,
    so the free that follows has nothing to wait for.
    """
    if ctx.is_open:
        with contextlib.suppress(av.FFmpegError):
            ctx.decode(None)


# --------------------------------------------------------------------------------------------
# The file

_MAX_PENDING = 16  # small pictures decoded past a span, kept for the next one
_INTRA_BATCH = 16  # intra packets read before they are fed to the decoder
_MAX_PAST = 24  # packets fed after a span's last one while waiting for reordered frames


@dataclass
class _Cursor:
    """A span decoder left open so the next span in the same GOP can continue from it."""

    ctx: object
    packets: object  # iterator over the demuxer, positioned after the last packet fed
    key: int  # display index of the keyframe it started from
    reads: int  # VideoFile._reads when it was made: any other read moves the demuxer
    fed: int = -1  # decode position of the last packet fed
    pending: dict = field(default_factory=dict)  # pts -> (rendition, picture) past the span


class VideoFile:
    """One open video file: scanning and decoding share a single demuxer.

    Use as a context manager. ``stream_index`` picks the video stream (probe's ``video_stream``);
    default: the first one.
    """

    def __init__(self, path: str, stream_index: int | None = None) -> None:
        self.path = path
        self.name = os.path.basename(path)
        try:
            self.container = open_input(path)
        except av.FFmpegError as exc:
            log.debug("cannot open %s: %s", path, exc)
            raise MediaError(f"not a media file: {self.name}") from None
        candidates = [s for s in self.container.streams.video
                      if stream_index is None or s.index == stream_index]
        if not candidates:
            self.container.close()
            raise MediaError(f"no video stream: {self.name}")
        self.stream = candidates[0]
        # Read these while open: the stream object must not be touched after close().
        self.stream_index = self.stream.index
        self.codec = self.stream.codec_context.name
        self.time_base = self.stream.time_base or Fraction(1, 90000)
        self._cursor: _Cursor | None = None
        self._reads = 0  # demuxer repositionings: a cursor is only valid if none happened since
        self._convert = _Converter()
        # Work done, for logs and benchmarks: pictures out of the decoders, by kind of decode.
        self.work = {"intra": 0, "span": 0, "full": 0, "seeks": 0}

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._drop_cursor()
        self.container.close()

    def _drop_cursor(self) -> None:
        """Forget the span decoder left open, draining it first (see :func:`_drain`)."""
        cur, self._cursor = self._cursor, None
        if cur is not None:
            _drain(cur.ctx)

    # ---------------------------------------------------------------- index

    def scan(self) -> PacketIndex:
        """Demux the whole video stream (nothing is decoded) and index every frame."""
        stream = self.stream
        parser = _TYPE_PARSERS.get(self.codec)
        length_size = _length_size(self.codec, stream.codec_context.extradata)
        pts_l: list[int] = []
        dts_l: list[int] = []
        size_l: list[int] = []
        key_l: list[bool] = []
        type_l: list[int] = []
        corrupt = 0
        truncated = False
        self._seek(None)
        try:
            for packet in self.container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at EOF
                ts = packet.pts if packet.pts is not None else packet.dts
                if packet.is_corrupt or ts is None:
                    corrupt += 1
                    continue
                pts_l.append(ts)
                dts_l.append(packet.dts if packet.dts is not None else ts)
                size_l.append(packet.size)
                key_l.append(packet.is_keyframe)
                type_l.append(parser(memoryview(packet), length_size) if parser else UNKNOWN)
        except av.FFmpegError as exc:
            # A damaged tail: keep what was readable.
            log.info("demux of %s stopped early (%s); keeping %d frames", self.path, exc, len(pts_l))
            truncated = True
        expected = stream.frames or 0
        if expected and len(pts_l) + corrupt < expected:
            truncated = True
        if not truncated:
            truncated = _ends_early(stream, pts_l, self.time_base)
        if not pts_l:
            raise MediaError(f"no video frames: {self.name}")
        pts = np.asarray(pts_l, dtype=np.int64)
        order = np.argsort(pts, kind="stable")
        # Duplicate pts (broken muxers) would make two frames share a time: keep the first.
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = np.diff(pts[order]) != 0
        order = order[keep]
        ptype = np.asarray(type_l, dtype=np.int8)[order]
        key = np.asarray(key_l, dtype=bool)[order]
        ptype[key] = I_FRAME
        return PacketIndex(
            pts=pts[order], dts=np.asarray(dts_l, dtype=np.int64)[order],
            size=np.asarray(size_l, dtype=np.int32)[order], key=key, ptype=ptype,
            decode_order=order.astype(np.int32), time_base=self.time_base,
            corrupt=corrupt + int((~keep).sum()), truncated=truncated,
            stream_index=self.stream_index, codec=self.codec)

    # ---------------------------------------------------------------- plumbing

    def _seek(self, pts: int | None) -> None:
        self._reads += 1  # the demuxer moves: an open span cursor no longer follows it
        self.work["seeks"] += 1
        self._drop_cursor()
        try:
            self.container.seek(0 if pts is None else int(pts), stream=self.stream, backward=True,
                                any_frame=False)
        except av.FFmpegError as exc:
            # Unseekable input (a pipe-like file): start over from the beginning instead.
            log.debug("seek in %s failed (%s); reopening", self.path, exc)
            self.container.close()
            self.container = open_input(self.path)
            self.stream = [s for s in self.container.streams.video if s.index == self.stream_index][0]

    def _new_decoder(self, *, loop_filter: str, threads: str):
        """A decoder of this stream's codec, configured from its extradata."""
        ctx = av.CodecContext.create(self.codec, "r")
        cc = self.stream.codec_context
        if cc.extradata:
            ctx.extradata = cc.extradata
        ctx.width, ctx.height = cc.width, cc.height
        ctx.thread_type = threads
        ctx.thread_count = 0
        ctx.options = {"skip_loop_filter": loop_filter} if self.codec in ("h264", "hevc") else {}
        return ctx

    def _packets_from(self, key_pts: int, key_dts: int | None = None):
        """Seek to the keyframe at ``key_pts`` (now) and return an iterator over the packets of
        the stream from there on.

        Containers without an index (MPEG-TS) seek by bisecting byte positions and can land
        just after the keyframe: when the first packet read is already past it (by ``key_dts``),
        seek again further back (1 s, 4 s, 16 s, then the start) and read forward.
        """
        back = 0
        second = int(round(1 / self.time_base)) if self.time_base else 90000
        for attempt in range(5):
            target = None if attempt == 4 else key_pts - back
            self._seek(target if target is None or target > 0 else None)
            packets = self._demux()
            first = next(packets, None)
            if first is None:
                return iter(())
            dts = first.dts if first.dts is not None else first.pts
            if key_dts is None or dts is None or dts <= key_dts or target is None:
                stream = itertools.chain([first], packets)
                if key_dts is None:
                    return stream
                # Landed before the keyframe: the packets before it would only feed the decoder
                # pictures whose references it never saw.
                return itertools.dropwhile(
                    lambda pk: (pk.dts if pk.dts is not None else pk.pts or 0) < key_dts, stream)
            back = second * (4 ** attempt)
        return iter(())

    def _demux(self):
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:
                    continue
                yield packet
        except av.FFmpegError as exc:
            log.info("read error in %s: %s", self.path, exc)

    def _decode(self, ctx, packet, errors: list[int], kind: str = "span"):
        try:
            frames = ctx.decode(packet)
        except av.FFmpegError as exc:
            errors[0] += 1
            log.debug("decode error at pts %s: %s", getattr(packet, "pts", None), exc)
            return []
        self.work[kind] += len(frames)
        return frames

    # ---------------------------------------------------------------- decoding

    def decode_intra(self, index: PacketIndex, wanted: Iterable[int], *,
                     size: tuple[int, int] | None = None, fmt: str = "bgrp",
                     extra: dict[str, tuple[tuple[int, int], str]] | None = None) -> Decoded:
        """Decode the intra frames at display indices ``wanted``, each on its own.

        ``extra`` asks for more renditions of the same frames, e.g.
        ``{"gray": ((512, 288), "gray")}``, returned in ``Decoded.extra``.
        """
        wanted = np.unique(np.asarray(list(wanted), dtype=np.int64))
        extra = extra or {}
        if len(wanted) and not np.all(index.intra[wanted]):
            raise ValueError("decode_intra only decodes intra frames")
        want_pts = {int(index.pts[i]): int(i) for i in wanted}
        keys = index.keyframes
        # Packets are collected (seeking to the keyframe at or before each wanted frame unless
        # the reader is already in its GOP) and decoded in batches: one frame-threaded decoder
        # with deblocking off per batch, so both cores work; batches bound the memory held in
        # compressed packets, and every picture is shrunk as soon as it comes out.
        ctx = self._new_decoder(loop_filter="all", threads="AUTO")
        errors = [0]
        got: dict[int, np.ndarray] = {}
        got_extra: dict[str, dict[int, np.ndarray]] = {name: {} for name in extra}

        def take(frames) -> None:
            for frame in frames:
                if frame.pts in want_pts and frame.pts not in got:
                    got[frame.pts] = self._convert(frame, size, fmt)
                    for name, (esize, efmt) in extra.items():
                        got_extra[name][frame.pts] = self._convert(frame, esize, efmt)

        batch: list[av.Packet] = []
        seen: set[int] = set()
        # The probe that ran just before may have decoded the first frame already.
        cached = take_first_frame(self.path, self.stream_index)
        if cached is not None and cached[0] in want_pts:
            take([cached[1]])
            seen.add(cached[0])
        reader = None
        reader_key = None
        with _DecodeErrors() as damage:
            for i in wanted:
                target = int(index.pts[i])
                if target in seen:
                    continue
                k = int(keys[np.searchsorted(keys, i, side="right") - 1]) if len(keys) else 0
                if reader is None or reader_key != k:
                    reader, reader_key = self._packets_from(int(index.pts[k]), int(index.dts[k])), k
                for packet in reader:
                    if packet.pts in want_pts and packet.pts not in seen:
                        seen.add(packet.pts)
                        batch.append(packet)
                    if target in seen:
                        break
                else:
                    reader = None  # end of file
                if len(batch) >= _INTRA_BATCH:
                    for packet in batch:
                        take(self._decode(ctx, packet, errors, "intra"))
                    batch = []
            for packet in batch:
                take(self._decode(ctx, packet, errors, "intra"))
            take(self._decode(ctx, None, errors, "intra"))
        errors[0] += damage.count
        found = [i for i in wanted if int(index.pts[i]) in got]
        images = [got[int(index.pts[i])] for i in found]
        extras = {name: [got_extra[name][int(index.pts[i])] for i in found] for name in extra}
        return Decoded(np.asarray(found, dtype=np.int64), _stack(images), errors[0], extras)

    def decode_span(self, index: PacketIndex, first: int, last: int, *,
                    keep: Iterable[int] | None = None, size: tuple[int, int] | None = None,
                    fmt: str = "bgrp", extra: dict[str, tuple[tuple[int, int], str]] | None = None,
                    extra_for: set[int] | None = None) -> Decoded:
        """Decode display frames ``first..last`` (inclusive) from the keyframe before ``first``.

        Only the frames in ``keep`` (default: all of first..last; it may also name frames
        between the keyframe and ``first``) are converted and returned. ``extra`` adds
        renditions for the frames in ``extra_for`` (``Decoded.extra``, None for the others).
        Successive calls that move forward inside one GOP continue from where the previous one
        stopped instead of decoding the GOP again from its keyframe (a long GOP with several
        cuts would otherwise cost its start once per cut).
        """
        n = len(index)
        first = max(0, int(first))
        last = min(n - 1, int(last))
        keep_set = set(range(first, last + 1)) if keep is None else {int(i) for i in keep}
        want_pts = {int(index.pts[i]): i for i in keep_set if 0 <= i < n}
        if last < first or not want_pts:
            return Decoded(np.zeros(0, np.int64), _stack([]), 0)
        extra = extra or {}
        extra_pts = {int(index.pts[i]) for i in (extra_for or ()) if 0 <= i < n}
        got_extra: dict[str, dict[int, np.ndarray]] = {name: {} for name in extra}
        keys = index.keyframes
        pos = np.searchsorted(keys, first, side="right") - 1
        start_key = int(keys[pos]) if pos >= 0 else 0
        # Packets needed, in file order: B frames shown before a P frame are stored after it,
        # so the range's packets run from the earliest to the latest of their positions.
        # Kept frames before the range are intra pictures on the way, decoded in any case.
        kept = np.array(sorted(want_pts.values()), dtype=np.int64)
        in_range = kept[(kept >= first) & (kept <= last)]
        need_from = int(np.min(index.decode_order[in_range if len(in_range) else kept]))
        stop_after = int(np.max(index.decode_order[kept]))
        position = index.pts_position()
        cur = self._cursor
        if (cur is None or cur.key != start_key or cur.fed >= need_from
                or cur.reads != self._reads):
            self._drop_cursor()
            cur = _Cursor(ctx=self._new_decoder(loop_filter="noref", threads="AUTO"),
                          packets=self._packets_from(int(index.pts[start_key]),
                                                     int(index.dts[start_key])),
                          key=start_key, reads=self._reads)
        self._cursor = None
        errors = [0]
        got: dict[int, np.ndarray] = {}

        def take(frames) -> None:
            for frame in frames:
                if frame.pts in want_pts:
                    if frame.pts not in got:
                        got[frame.pts] = self._convert(frame, size, fmt)
                        if frame.pts in extra_pts:
                            for name, (esize, efmt) in extra.items():
                                got_extra[name][frame.pts] = self._convert(frame, esize, efmt)
                elif position.get(frame.pts, -1) > last and len(cur.pending) < _MAX_PENDING:
                    # Shown after this range: maybe wanted by the next span. Kept small, as
                    # a full-size picture would hold megabytes.
                    cur.pending[frame.pts] = ((size, fmt), self._convert(frame, size, fmt))

        for p, (rendition, image) in list(cur.pending.items()):
            if p in want_pts and rendition == (size, fmt):
                got[p] = image  # (without extra renditions: the frame is gone from the decoder)
        cur.pending = {p: v for p, v in cur.pending.items() if position.get(p, -1) > last}
        drained = False
        with _DecodeErrors() as damage:
            past = 0
            for packet in cur.packets:
                j = position.get(packet.pts if packet.pts is not None else packet.dts)
                dpos = int(index.decode_order[j]) if j is not None else cur.fed + 1
                # Before the range, pictures nothing refers to (most B frames) are not needed:
                # the decoder drops them unread.
                cur.ctx.skip_frame = "NONREF" if dpos < need_from else "DEFAULT"
                take(self._decode(cur.ctx, packet, errors))
                cur.fed = max(cur.fed, dpos)
                if len(got) == len(want_pts):
                    break
                if dpos >= stop_after:
                    past += 1  # frames still held for reordering come out a few packets later
                    if past > _MAX_PAST:
                        break
            if len(got) < len(want_pts):
                take(self._decode(cur.ctx, None, errors))
                drained = True
        errors[0] += damage.count
        if not drained:
            self._cursor = cur
        found = sorted(want_pts[p] for p in got)
        images = [got[int(index.pts[i])] for i in found]
        extras = {name: [got_extra[name].get(int(index.pts[i])) for i in found] for name in extra}
        return Decoded(np.asarray(found, dtype=np.int64), _stack(images), errors[0], extras)

    def frames(self, index: PacketIndex, *, size: tuple[int, int] | None, fmt: str = "bgrp",
               extra: tuple[tuple[int, int], str] | None = None, want_extra=None,
               errors: list[int] | None = None):
        """Every frame in display order: yields (pts, picture, extra picture or None).

        ``extra=(size, fmt)`` adds a second rendition for frames where ``want_extra(pts)`` is
        true. Frame-threaded: a full pass is throughput-bound. Decoder errors are counted in
        ``errors[0]`` when a list is given.
        """
        errors = errors if errors is not None else [0]
        ctx = self._new_decoder(loop_filter="noref", threads="AUTO")
        first_key = index.keyframes[0] if len(index.keyframes) else 0

        def out(frames):
            for frame in frames:
                other = None
                if extra is not None and (want_extra is None or want_extra(frame.pts)):
                    other = self._convert(frame, extra[0], extra[1])
                yield frame.pts, self._convert(frame, size, fmt), other

        damage = _DecodeErrors()
        with damage:
            for packet in self._packets_from(int(index.pts[first_key]), int(index.dts[first_key])):
                yield from out(self._decode(ctx, packet, errors, "full"))
            yield from out(self._decode(ctx, None, errors, "full"))
        errors[0] += damage.count


def _ends_early(stream, pts: list[int], tb: Fraction) -> bool:
    """True when the stream's declared duration runs well past the last packet read."""
    if not pts or not stream.duration:
        return False
    start = stream.start_time or 0
    declared_end = (start + stream.duration) * tb
    last = max(pts) * tb
    span = max((max(pts) - min(pts)) * tb, Fraction(1, 1))
    # One second (or 10%) of slack: durations are rounded and the last frame has a length.
    return float(declared_end - last) > max(1.0, 0.1 * float(span))


# --------------------------------------------------------------------------------------------
# One-call conveniences (each opens the file once)


def scan_packets(path: str, stream_index: int | None = None) -> PacketIndex:
    with VideoFile(path, stream_index) as vf:
        return vf.scan()


def decode_all(path: str, *, size: tuple[int, int] | None = None, fmt: str = "bgr24",
               stream_index: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Every frame in display order as (pts, images, decoder errors). For tests and small files:
    memory grows with the length of the clip."""
    with VideoFile(path, stream_index) as vf:
        index = vf.scan()
        errors = [0]
        items = [(pts, img) for pts, img, _ in vf.frames(index, size=size, fmt=fmt, errors=errors)]
    items.sort(key=lambda x: x[0])
    pts = np.asarray([p for p, _ in items], dtype=np.int64)
    return pts, _stack([img for _, img in items]), errors[0]
