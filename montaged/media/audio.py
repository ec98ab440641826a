"""Decode the audio of any media file to a mono float32 signal.

Two ways to get there, same decoding (PyAV, the audio stream picked by FFmpeg, cover art and
other picture streams ignored, corrupt packets skipped and counted, a truncated file decoded up
to the damage):

* ``exact=True`` (default): FFmpeg's resampler (``av.AudioResampler``) converts format, layout
  and rate in C, so the result is at exactly ``rate``.
* ``exact=False``: the analysis path. The channels are averaged with numpy (LFE left out) and
  the rate is divided by an integer factor with a box filter, giving a rate near ``rate``
  (44.1 kHz -> 22050, 48 kHz -> 24000, 96 kHz -> 24000). On a 3-minute AAC file this costs
  ~0.03 s instead of ~0.2-0.4 s for the resampler, whose per-frame overhead in PyAV and whose
  high-quality filter are wasted on onset detection (measured in benchmarks/bench_beats.py).

Time 0 of the returned signal is media time ``start`` measured from the container's start time,
the clock players show. Encoder delay (mp3/AAC priming) is already removed by FFmpeg.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import av
import numpy as np

from montaged.errors import MediaError

log = logging.getLogger("montaged.media.audio")

# A file where more than this fraction of packets fail to decode is not usable audio.
MAX_CORRUPT_FRACTION = 0.5
# Holes in the timestamps longer than this are broken timestamps, not lost audio: not filled.
MAX_GAP = 60.0

_DTYPES = {"u8": (np.uint8, 128.0, 1 / 128.0), "s16": (np.int16, 0.0, 1 / 32768.0),
           "s32": (np.int32, 0.0, 1 / 2147483648.0), "flt": (np.float32, 0.0, 1.0),
           "dbl": (np.float64, 0.0, 1.0), "s64": (np.int64, 0.0, 1 / 9223372036854775808.0)}


@dataclass
class DecodedAudio:
    samples: np.ndarray  # mono float32
    rate: int  # of ``samples``
    source_rate: int
    channels: int
    codec: str
    corrupt_packets: int  # packets that failed to decode and were skipped
    truncated: bool  # demuxing stopped on damage before the end of the file


def decode_audio(path: str, rate: int = 22050, start: float = 0.0, duration: float | None = None,
                 *, exact: bool = True) -> tuple[np.ndarray, int]:
    """Decode ``path`` to (mono float32 samples, their rate). See :func:`decode`."""
    result = decode(path, rate, start, duration, exact=exact)
    return result.samples, result.rate


def decode(path: str, rate: int = 22050, start: float = 0.0, duration: float | None = None,
           *, exact: bool = True) -> DecodedAudio:
    """Decode the audio of ``path`` from ``start`` for ``duration`` seconds (None: to the end).

    Raises :class:`MediaError` ``not a media file: x`` when FFmpeg cannot read it at all,
    ``no audio track: x`` when it has no audio stream, ``unreadable audio: x`` when nearly every
    packet is corrupt.
    """
    name = os.path.basename(path)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    try:
        container = av.open(path, metadata_errors="ignore")
    except FileNotFoundError as exc:
        raise MediaError(f"file not found: {name}") from exc
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaError(f"not a media file: {name}") from exc
    with container:
        stream = _audio_stream(container)
        if stream is None:
            raise MediaError(f"no audio track: {name}")
        return _decode_stream(container, stream, name, rate, start, duration, exact)


def _audio_stream(container: av.container.InputContainer):
    streams = [s for s in container.streams.audio
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        return None
    try:
        best = container.streams.best("audio")
    except (av.FFmpegError, ValueError):
        best = None
    return best if best in streams else streams[0]


def _decode_stream(container, stream, name: str, rate: int, start: float, duration: float | None,
                   exact: bool) -> DecodedAudio:
    ctx = stream.codec_context
    src_rate = int(ctx.sample_rate or stream.rate or 0)
    channels = int(ctx.channels or 0)
    if src_rate <= 0 or channels <= 0:
        raise MediaError(f"not a media file: {name}")
    origin = container.start_time / 1e6 if container.start_time is not None else 0.0
    start = max(0.0, float(start))
    if start > 0:
        try:
            container.seek(int((origin + start) * 1e6), any_frame=False, backward=True)
        except av.FFmpegError:
            log.debug("seek failed in %s, decoding from the start", name)
    end = None if duration is None else start + max(0.0, float(duration))

    if exact:
        out_rate = int(rate)
        sink = _ResampleSink(out_rate)
    else:
        factor = max(1, int(round(src_rate / rate)))
        out_rate = src_rate // factor
        sink = _NumpySink(factor)

    packets = corrupt = gaps = 0
    truncated = False
    first_time: float | None = None
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except av.FFmpegError as exc:
            # A truncated or damaged container: keep what decoded so far.
            truncated = True
            log.warning("%s: demuxing stopped at damage (%s); using the audio before it", name, exc)
            break
        if packet.size == 0 and packet.pts is None:
            frames = _decode_packet(ctx, None)  # flush packet at the end of the stream
        else:
            packets += 1
            try:
                frames = ctx.decode(packet)
            except (av.error.InvalidDataError, av.error.UndefinedError, av.error.PatchWelcomeError) as exc:
                corrupt += 1
                log.debug("%s: skipped a corrupt packet at %s: %s", name, packet.pts, exc)
                continue
        for frame in frames:
            t = frame.time
            if first_time is None:
                first_time = (t - origin) if t is not None else start
                if end is not None and first_time >= end:
                    break
            elif t is not None:
                # Samples lost to a skipped packet or a dropped page: fill the hole with silence
                # so that everything after it stays at its true time (beats must not slide).
                gap = (t - origin) - (first_time + sink.seconds(src_rate))
                if 0.002 < gap < MAX_GAP:
                    sink.push_silence(int(round(gap * src_rate)), frame)
                    gaps += 1
            sink.push(frame)
        if end is not None and first_time is not None and sink.seconds(src_rate) + first_time >= end + 0.05:
            break
    if packets and corrupt > MAX_CORRUPT_FRACTION * packets:
        raise MediaError(f"unreadable audio: {name} ({corrupt} of {packets} packets corrupt)")
    samples = sink.finish()
    if corrupt or gaps:
        log.warning("%s: skipped %d corrupt audio packets of %d, filled %d gaps with silence",
                    name, corrupt, packets, gaps)
    # Align sample 0 with media time ``start``: pad when the audio starts late (video files often
    # start audio a few ms in), cut when decoding began before ``start`` (seek to a keyframe).
    lead = int(round(((first_time if first_time is not None else start) - start) * out_rate))
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, np.float32), samples])
    elif lead < 0:
        samples = samples[-lead:]
    if end is not None:
        samples = samples[: int(round((end - start) * out_rate))]
    return DecodedAudio(np.ascontiguousarray(samples, dtype=np.float32), out_rate, src_rate, channels,
                        ctx.name, corrupt, truncated)


def _decode_packet(ctx, packet):
    try:
        return ctx.decode(packet)
    except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
        log.debug("decoder flush failed: %s", exc)
        return []


class _ResampleSink:
    """Frames -> FFmpeg's resampler (format, downmix and rate in C) -> one mono array."""

    def __init__(self, rate: int):
        # A large output frame size: fewer Python objects per second of audio.
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate, frame_size=1 << 15)
        self._chunks: list[np.ndarray] = []
        self._in = 0

    def push(self, frame) -> None:
        self._in += frame.samples
        for out in self._resampler.resample(frame):
            self._chunks.append(np.frombuffer(out.planes[0], np.float32, out.samples).copy())

    def push_silence(self, n: int, like) -> None:
        """Push ``n`` samples of silence in the format of frame ``like`` (the resampler refuses
        frames whose format differs from the first one)."""
        fmt = like.format
        dtype = _DTYPES.get(fmt.name.rstrip("p"), (np.float32,))[0]
        nch = like.layout.nb_channels
        shape = (nch, n) if fmt.is_planar else (1, n * nch)
        silent = av.AudioFrame.from_ndarray(np.zeros(shape, dtype), format=fmt.name, layout=like.layout)
        silent.sample_rate = like.sample_rate
        self.push(silent)

    def seconds(self, src_rate: int) -> float:
        return self._in / src_rate

    def finish(self) -> np.ndarray:
        for out in self._resampler.resample(None):
            self._chunks.append(np.frombuffer(out.planes[0], np.float32, out.samples).copy())
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)


class _NumpySink:
    """Frames -> channel average (numpy, LFE excluded) -> integer-factor box decimation.

    ``push`` only keeps zero-copy views of the decoded planes (the per-frame cost is what
    dominates at ~43 AAC frames per second); all arithmetic happens once, on whole arrays.
    """

    def __init__(self, factor: int):
        self.factor = factor
        self._planar: list[list[np.ndarray]] = []  # per kept channel, its chunks
        self._packed: list[np.ndarray] = []  # [n, channels] chunks for interleaved formats
        self._kind: tuple | None = None
        self._in = 0

    def _setup(self, frame) -> tuple:
        base = frame.format.name.rstrip("p")
        dtype, bias, scale = _DTYPES.get(base, (None, 0.0, 1.0))
        names = [c.name for c in frame.layout.channels]
        nch = frame.layout.nb_channels
        keep = [i for i, c in enumerate(names) if c != "LFE"] or list(range(nch))
        return (frame.format.name, frame.layout.name, dtype, bias, scale, frame.format.is_planar, nch, keep)

    def push(self, frame) -> None:
        kind = self._kind
        if kind is None or kind[0] != frame.format.name or kind[1] != frame.layout.name:
            if kind is not None:
                # Format changed mid-stream (rare: some broadcast recordings): flush what we have.
                self._mixed = self._finish_raw(self.factor)
            kind = self._kind = self._setup(frame)
            if kind[2] is None:
                frame = frame.reformat(format="fltp")
                kind = self._kind = self._setup(frame)
        n = frame.samples
        _f, _l, dtype, _b, _s, planar, nch, keep = kind
        if planar:
            planes = frame.planes
            if not self._planar:
                self._planar = [[] for _ in keep]
            for chunks, i in zip(self._planar, keep):
                chunks.append(np.frombuffer(planes[i], dtype, n))
        else:
            self._packed.append(np.frombuffer(frame.planes[0], dtype, n * nch).reshape(n, nch))
        self._in += n

    def push_silence(self, n: int, like) -> None:
        if self._kind is None:
            self._kind = self._setup(like)
        _f, _l, dtype, _b, _s, planar, nch, keep = self._kind
        if planar:
            if not self._planar:
                self._planar = [[] for _ in keep]
            for chunks in self._planar:
                chunks.append(np.zeros(n, dtype))
        else:
            self._packed.append(np.zeros((n, nch), dtype))
        self._in += n

    def seconds(self, src_rate: int) -> float:
        return self._in / src_rate

    _mixed: np.ndarray | None = None

    def _finish_raw(self, k: int = 1) -> np.ndarray:
        """Average of the kept channels, box-decimated by ``k``, for everything pushed so far.

        Box filter then keep every k-th sample: a crude anti-alias filter, but onset detection
        only needs band energies and their changes, and folding the decimation into the channel
        sum costs one strided pass per channel instead of extra full-rate copies.
        """
        kind = self._kind
        if kind is None:
            return np.zeros(0, np.float32)
        _f, _l, dtype, bias, scale, planar, nch, keep = kind
        if planar:
            channels = [np.concatenate(chunks) for chunks in self._planar]
        else:
            data = np.concatenate(self._packed) if self._packed else np.zeros((0, nch), dtype)
            channels = [data[:, i] for i in keep]
        m = (len(channels[0]) // k * k) if channels else 0
        mono = np.zeros(m // k, np.float32)
        for ch in channels:
            for i in range(k):
                mono += ch[i:m:k]
        if bias:
            mono -= bias * len(channels) * k
        mono *= scale / (len(channels) * k)
        self._planar, self._packed = [], []
        if self._mixed is not None:
            mono = np.concatenate([self._mixed, mono])
            self._mixed = None
        return mono

    def finish(self) -> np.ndarray:
        return self._finish_raw(self.factor)
