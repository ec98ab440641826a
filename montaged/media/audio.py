"""Decode the audio of any media file to a mono float32 signal.

Two ways to get there, same decoding (PyAV, the audio stream picked by FFmpeg, cover art and
other picture streams ignored, corrupt packets skipped and counted, a truncated file decoded up
to the damage):

* ``exact=True`` (default): FFmpeg's resampler (``av.AudioResampler``) converts format, layout
  and rate in C, so the result is at exactly ``rate``.
* ``exact=False``: the analysis path. The channels are averaged (LFE left out) and the rate is
  divided by an integer factor that divides the source rate, with a box filter, giving a rate
  near ``rate`` (for 11025, the analysis rate: 44.1 kHz -> 11025, 48 and 96 kHz -> 12000,
  32 kHz -> 16000, 8 kHz -> 8000). A whole compressed file goes through one FFmpeg filter graph
  (decode and channel mix in C) that hands numpy blocks of ~0.7 s to decimate. A window of a
  file, a PCM file, or a file the graph cannot decode cleanly (a corrupt packet, a hole in the
  timestamps, a layout change) goes through the frame loop instead: every frame into FFmpeg's
  sample FIFO (one C call), numpy mixing and decimating every ~0.5 s of samples. Both give the
  same samples (tests/test_audio_decode.py). On a 3-minute AAC file the graph adds ~0.01 s to
  FFmpeg's own decoding (~0.12-0.19 s on the 2-core benchmark machine), the frame loop ~0.07 s,
  and the resampler ~0.3 s: PyAV's per-frame overhead and a high-quality filter that onset
  detection does not need (benchmarks/bench_beats.py).

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
# This many decode errors with no good frame between them: the rest of the file is garbage.
MAX_ERRORS_IN_A_ROW = 50
# Holes in the timestamps longer than this are broken timestamps, not lost audio: not filled.
MAX_GAP = 60.0

_HEADER_FORMATS = {".wav", ".wave", ".w64", ".aif", ".aiff", ".aifc", ".caf", ".au"}
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
    via: str = "frames"  # "graph": one FFmpeg filter graph did it all; "frames": the frame loop


def decode_audio(path: str, rate: int = 22050, start: float = 0.0, duration: float | None = None,
                 *, exact: bool = True) -> tuple[np.ndarray, int]:
    """Decode ``path`` to (mono float32 samples, their rate). See :func:`decode`."""
    result = decode(path, rate, start, duration, exact=exact)
    return result.samples, result.rate


def decode(path: str, rate: int = 22050, start: float = 0.0, duration: float | None = None,
           *, exact: bool = True) -> DecodedAudio:
    """Decode the audio of ``path`` from ``start`` for ``duration`` seconds (None: to the end).

    Raises :class:`MediaError` ``not a media file: x`` when FFmpeg cannot read it at all,
    ``no audio track: x`` when it has no audio stream, ``unreadable audio: x`` when most packets
    are corrupt or not a single frame decodes.
    """
    name = os.path.basename(path)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    # PCM containers carry every parameter in their header, yet FFmpeg's stream probing reads
    # up to 5 MB of them (~60 ms per file): a small probe size is enough there.
    pcm_file = os.path.splitext(path)[1].lower() in _HEADER_FORMATS
    options = {"probesize": "32768"} if pcm_file else {}
    try:
        container = av.open(path, metadata_errors="ignore", options=options)
    except FileNotFoundError as exc:
        raise MediaError(f"file not found: {name}") from exc
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaError(f"not a media file: {name}") from exc
    with container:
        stream = _audio_stream(container)
        if stream is None:
            raise MediaError(f"no audio track: {name}")
        # (PCM files come in large frames already: the graph would only add its setup.)
        if not exact and start == 0.0 and duration is None and GRAPH_DECODE and not pcm_file:
            decoded = _decode_in_graph(path, container, stream, rate)
            if decoded is not None:
                return decoded
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


# The analysis decode of a whole file runs in one FFmpeg filter graph (the lavfi device): FFmpeg
# demuxes, decodes and mixes the channels to mono in C, and Python receives a few hundred blocks
# instead of ~43 frames per second of music. On a 3-minute AAC file that saves 0.06-0.08 s of
# CPU, of the ~0.25 s the frame loop takes (benchmarks/bench_beats.py). The graph knows nothing of damage:
# amovie stops at the first packet that fails to decode. So any error, a hole in the timestamps,
# or audio that ends well before the container says, sends the file to the frame loop
# (_decode_stream), which skips and counts bad packets and fills holes with silence.
GRAPH_DECODE = True
GRAPH_BLOCK = 32768  # samples per block handed to Python: ~0.74 s at 44.1 kHz
# Audio that ends this much before the container's duration is suspect (frames dropped at a
# format change): the frame loop decides. Costs only a second decode when the audio really is
# shorter (a video whose sound stops early).
GRAPH_SHORTFALL = 1.0


def _decode_in_graph(path: str, container, stream, rate: int) -> DecodedAudio | None:
    """Decode all of ``stream`` to mono in an FFmpeg filter graph, decimate with numpy.

    Returns None when the graph cannot give the frame loop's result (an error, a hole, a
    shortfall, an unusual layout): the caller then decodes frame by frame. The output is the
    frame loop's, sample for sample up to float rounding (tests/test_audio_decode.py).
    """
    ctx = stream.codec_context
    src_rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
    names = [c.name for c in ctx.layout.channels] if ctx.layout is not None else []
    if src_rate <= 0 or channels <= 0 or len(names) != channels or not os.path.isdir("/proc/self/fd"):
        return None
    keep = mixed_channels(names)
    # The file by descriptor: a path in a filter graph would need two levels of escaping for
    # every ':', ',', '\'', '[' or ';' a user's file name may hold.
    fd = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        chain = [f"amovie=filename=/proc/self/fd/{fd}:streams={stream.index}"]
        if ctx.format is None or ctx.format.name not in ("flt", "fltp", "dbl", "dblp"):
            chain.append("aformat=sample_fmts=fltp")  # mix in float: pan would round to int16
        if channels > 1:
            gain = repr(1.0 / len(keep))
            chain.append("pan=mono|c0=" + "+".join(f"{gain}*c{i}" for i in keep))
        # The lavfi device hands over packed samples; for mono float that is pcm_f32le.
        chain.append(f"asetnsamples=n={GRAPH_BLOCK}:p=0")
        return _read_graph(",".join(chain), container, src_rate, channels, ctx.name,
                           decimation_factor(src_rate, rate))
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.debug("%s: decoding frame by frame (%s)", os.path.basename(path), exc)
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _read_graph(graph: str, container, src_rate: int, channels: int, codec: str,
                factor: int) -> DecodedAudio | None:
    sink = _NumpySink(factor, _expected_samples(container, None, src_rate))
    with av.open(graph, format="lavfi") as lavfi:
        if len(lavfi.streams) != 1 or not lavfi.streams.audio:
            return None
        out = lavfi.streams.audio[0]
        if out.codec_context.name != "pcm_f32le" or out.rate != src_rate:
            return None
        tb = float(out.time_base)
        first, n = None, 0
        for packet in lavfi.demux(out):
            if not packet.size:
                continue  # the end-of-stream packet
            if packet.pts is None:
                return None
            if first is None:
                first = packet.pts
            elif abs((packet.pts - first) * tb - n / src_rate) > 0.002:
                return None  # a hole (or an overlap): the frame loop fills it
            x = np.frombuffer(packet, np.float32)
            sink.push_mono(x)
            n += len(x)
    if first is None:
        return None
    origin = container.start_time / 1e6 if container.start_time is not None else 0.0
    first_time = first * tb - origin
    known = container.duration / 1e6 if container.duration else 0.0
    if known and first_time + n / src_rate < known - GRAPH_SHORTFALL:
        return None
    samples = _align(sink.finish(), src_rate // factor, first_time, 0.0, None)
    return DecodedAudio(samples, src_rate // factor, src_rate, channels, codec, 0, False, via="graph")


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
        factor = decimation_factor(src_rate, rate)
        out_rate = src_rate // factor
        sink = _NumpySink(factor, _expected_samples(container, duration, src_rate))

    frames = corrupt = gaps = 0
    truncated = False
    first_time: float | None = None
    pushed = 0  # source-rate samples handed to the sink, silence included
    tb = float(stream.time_base) if stream.time_base else 0.0
    stop_at = None if end is None else end + 0.05
    errors_in_a_row = 0
    # container.decode runs demux + decode in PyAV's compiled loop: the per-frame cost is what
    # dominates (~43 AAC frames per second of music), so the Python body below stays minimal.
    source = container.decode(stream)
    push = sink.push
    done = False
    while not done:
        try:
            for frame in source:
                errors_in_a_row = 0
                pts = frame.pts
                if first_time is None:
                    first_time = (pts * tb - origin) if pts is not None else start
                    if stop_at is not None and first_time >= stop_at:
                        done = True
                        break
                elif pts is not None:
                    # Samples lost to a skipped packet or a dropped page: fill the hole with
                    # silence so that everything after it stays at its true time.
                    gap = (pts * tb - origin) - first_time - pushed / src_rate
                    if 0.002 < gap < MAX_GAP:
                        n_gap = int(round(gap * src_rate))
                        sink.push_silence(n_gap, frame)
                        pushed += n_gap
                        gaps += 1
                push(frame)
                pushed += frame.samples
                frames += 1
                if stop_at is not None and first_time + pushed / src_rate >= stop_at:
                    done = True
                    break
            done = True
        except (av.error.InvalidDataError, av.error.UndefinedError, av.error.PatchWelcomeError) as exc:
            # One bad packet: skip it and go on with the next (a new generator resumes the
            # demuxer where it stopped).
            corrupt += 1
            errors_in_a_row += 1
            log.debug("%s: skipped a corrupt packet: %s", name, exc)
            if errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
                truncated = True
                log.warning("%s: decoding stopped after %d errors in a row; using the audio before them",
                            name, errors_in_a_row)
                break
            source = container.decode(stream)
        except av.FFmpegError as exc:
            # A truncated or damaged container: keep what decoded so far.
            truncated = True
            log.warning("%s: demuxing stopped at damage (%s); using the audio before it", name, exc)
            break
    if corrupt > MAX_CORRUPT_FRACTION * (frames + corrupt) and corrupt:
        raise MediaError(f"unreadable audio: {name} ({corrupt} of {frames + corrupt} packets corrupt)")
    if frames == 0 and start == 0.0:
        # Headers but not one decodable frame (a download cut off right after its header).
        raise MediaError(f"unreadable audio: {name} (no audio frame could be decoded)")
    samples = sink.finish()
    if corrupt or gaps:
        log.warning("%s: skipped %d corrupt audio packets (%d decoded), filled %d gaps with silence",
                    name, corrupt, frames, gaps)
    samples = _align(samples, out_rate, first_time if first_time is not None else start, start, end)
    return DecodedAudio(samples, out_rate, src_rate, channels, ctx.name, corrupt, truncated)


def mixed_channels(names: list[str]) -> list[int]:
    """Indices of the channels the mono mix averages, in both decode ways: all but the LFE,
    which standard downmixes (FFmpeg's included) leave out too."""
    return [i for i, c in enumerate(names) if c != "LFE"] or list(range(len(names)))


def decimation_factor(src_rate: int, rate: int) -> int:
    """The integer factor that takes ``src_rate`` nearest to ``rate`` and divides it exactly."""
    factor = max(1, int(round(src_rate / rate)))
    while src_rate % factor:
        # An exact output rate (96 kHz / 8 = 12000 Hz, not 96 kHz / 9 = 10666.67 Hz rounded
        # down, which would put beats 10 ms late after three minutes).
        factor -= 1
    return factor


def _expected_samples(container, duration: float | None, src_rate: int) -> int:
    """Source-rate samples the decode will likely give (0: unknown), to size the output once."""
    known = container.duration / 1e6 if container.duration else 0.0
    expected = (min(known, duration) if duration is not None else known) if known else 0.0
    return int(min(expected + 1.0, MAX_GAP * 60) * src_rate)


def _align(samples: np.ndarray, rate: int, first_time: float, start: float, end: float | None) -> np.ndarray:
    """Make sample 0 media time ``start``: pad when the audio starts late (video files often
    start audio a few ms in), cut when decoding began before ``start`` (seek to a keyframe);
    cut at ``end``."""
    lead = int(round((first_time - start) * rate))
    if lead > 0:
        samples = np.concatenate([np.zeros(lead, np.float32), samples])
    elif lead < 0:
        samples = samples[-lead:]
    if end is not None:
        samples = samples[: int(round((end - start) * rate))]
    return np.ascontiguousarray(samples, dtype=np.float32)


class _ResampleSink:
    """Frames -> FFmpeg's resampler (format, downmix and rate in C) -> one mono array."""

    def __init__(self, rate: int):
        # A large output frame size: fewer Python objects per second of audio.
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate, frame_size=1 << 15)
        self._chunks: list[np.ndarray] = []

    def push(self, frame) -> None:
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

    def finish(self) -> np.ndarray:
        for out in self._resampler.resample(None):
            self._chunks.append(np.frombuffer(out.planes[0], np.float32, out.samples).copy())
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)


class _NumpySink:
    """Frames -> FFmpeg's sample FIFO -> every ~0.5 s: channel mean (LFE left out), scaled to
    -1..1 and box-decimated by ``factor`` -> one growing output buffer at the output rate.

    At ~43 AAC frames per second of music the per-frame Python cost is what dominates, so a frame
    costs one ``AudioFifo.write`` (a memcpy of its samples in C, no numpy call, no plane
    objects); the numpy work runs once per block of ~24 frames, on data still in cache.
    """

    # Bytes per FIFO plane gathered before they are converted (24576 samples of float). Small
    # enough that the FIFO, the block read out of it and the numpy temporaries stay in the L2
    # cache and below malloc's mmap threshold (128 KiB: a larger block comes back as fresh pages
    # from the kernel every time), large enough that the numpy calls per block are cheap per
    # sample. Measured on a 20-s AAC file: 32 KiB +6.5 ms over the bare decode, 96 KiB +4.5 ms,
    # 256 KiB +7 ms.
    CHUNK_BYTES = 96 << 10

    # A fixed set of attributes: push() runs per frame, a misspelt one must fail, not be created.
    __slots__ = ("factor", "_out", "_n", "_carry", "_offset", "_gain", "_scratch", "_layout", "_fifo", "_chunk",
                 "_dtype", "_keep", "_planar", "_nch")

    def __init__(self, factor: int, expected_samples: int = 0):
        self.factor = factor
        self._out = np.empty(max(expected_samples // factor + 16, 1 << 14), np.float32)
        self._n = 0  # output samples written
        # Source-rate channel sums at the head of ``_scratch`` still short of one output sample.
        self._carry = 0
        # Channel sum -> -1..1: (sum - offset) * gain; 0 and 1 until the first frame says more.
        self._offset, self._gain = 0.0, 1.0
        self._scratch = np.empty(factor, np.float32)  # grown to a block's size by _flush
        self._layout: av.AudioLayout | None = None  # of the frames in the FIFO
        self._fifo: av.AudioFifo | None = None
        self._chunk = 0  # samples per channel converted at a time

    def _start(self, frame) -> None:
        """First frame, or the format, layout or rate changed mid-stream (some broadcast
        recordings): convert what the FIFO holds in the old format, then a new FIFO."""
        self._flush()
        fmt, layout = frame.format, frame.layout
        base = fmt.name.rstrip("p")
        if base not in _DTYPES:
            raise MediaError(f"unsupported audio sample format {fmt.name}")
        self._dtype, bias, scale = _DTYPES[base]
        names = [c.name for c in layout.channels]
        nch = layout.nb_channels
        self._keep = mixed_channels(names)
        # The scaling is applied after decimation (one pass over fewer samples); the few
        # samples carried over are re-expressed in the new format's units.
        offset, gain = bias * len(self._keep), scale / len(self._keep)
        c = self._carry
        if c:
            carry = self._scratch[:c]
            carry -= self._offset
            carry *= self._gain / gain
            carry += offset
        self._offset, self._gain = offset, gain
        self._planar, self._nch = fmt.is_planar, nch
        plane_bytes = fmt.bytes * (1 if fmt.is_planar else nch)  # per sample
        self._chunk = max(256, self.CHUNK_BYTES // plane_bytes)
        self._layout = layout
        self._fifo = av.AudioFifo()

    def push(self, frame) -> None:
        """Queue ``frame``'s samples. The frame's ``pts`` is cleared: read it before."""
        # The layout, every frame: the FIFO checks sample format, rate and time base itself, but
        # not the channel count, and would read past the planes of a frame with fewer channels.
        # Layouts compare in C (comparing layout.name would format a string per frame).
        if frame.layout != self._layout:
            self._start(frame)
        # The FIFO refuses timestamps that do not follow on; holes are the caller's business
        # (push_silence), so it gets none.
        frame.pts = None
        fifo = self._fifo
        try:
            fifo.write(frame)
        except ValueError:
            # Format, rate or time base changed mid-stream: what came before, then a new FIFO.
            self._start(frame)
            fifo = self._fifo
            fifo.write(frame)
        if fifo.samples >= self._chunk:
            self._flush()

    def push_silence(self, n: int, like=None) -> None:
        """``n`` source-rate samples of silence (a hole left by a lost packet). ``like`` (the
        frame after the hole) is only needed by the resampler sink."""
        self._flush()
        c = self._carry
        x = np.full(c + n, self._offset, np.float32)  # the format's zero level (128 for u8)
        x[:c] = self._scratch[:c]
        self._decimate(x)

    def _flush(self) -> None:
        """What the FIFO holds -> channel sum at the source rate -> decimated, scaled output."""
        block = self._fifo.read() if self._fifo is not None else None
        if block is None:
            return
        dtype, n = self._dtype, block.samples
        planes = block.planes
        if self._planar:
            chans = [np.frombuffer(planes[i], dtype, n) for i in self._keep]
        else:
            interleaved = np.frombuffer(planes[0], dtype, n * self._nch).reshape(n, self._nch)
            chans = [interleaved[:, i] for i in self._keep]
        x = self._after_carry(n)
        seg = x[self._carry:]
        # dtype=float32: the sum of two int16 channels must not wrap around in int16.
        if len(chans) == 1:
            np.copyto(seg, chans[0], casting="unsafe")
        else:
            np.add(chans[0], chans[1], out=seg, dtype=np.float32, casting="unsafe")
            for ch in chans[2:]:
                np.add(seg, ch, out=seg, dtype=np.float32, casting="unsafe")
        self._decimate(x)

    def push_mono(self, x: np.ndarray) -> None:
        """Samples already mixed to mono and scaled to -1..1 (the filter-graph path)."""
        buf = self._after_carry(len(x))
        buf[self._carry:] = x
        self._decimate(buf)

    def _after_carry(self, n: int) -> np.ndarray:
        """``_scratch`` grown to hold the carried samples and ``n`` more: a view of that size."""
        c = self._carry
        if len(self._scratch) < c + n:
            grown = np.empty(max(c + n, 2 * len(self._scratch)), np.float32)
            grown[:c] = self._scratch[:c]
            self._scratch = grown
        return self._scratch[: c + n]

    def _decimate(self, x: np.ndarray) -> None:
        """Append ``x`` (source-rate channel sums) box-filtered, decimated by ``factor`` and
        scaled to -1..1; the last ``len(x) % factor`` samples wait at the head of ``_scratch``
        for the next chunk.

        A box filter is a crude anti-alias filter, but onset detection only needs band energies
        and their changes, and it costs about one pass over the chunk.
        """
        k = self.factor
        m = len(x) // k
        if self._n + m > len(self._out):
            grown = np.empty(max(self._n + m, 2 * len(self._out)), np.float32)
            grown[: self._n] = self._out[: self._n]
            self._out = grown
        out = self._out[self._n : self._n + m]
        self._n += m
        y, j = x[: m * k], k
        # Halve pairwise while the factor is even: a pair of samples read as one complex number
        # gives real + imag, a contiguous add, ~2x faster than stride-k slices.
        while j % 2 == 0:
            pairs = y.view(np.complex64)
            j //= 2
            y = np.add(pairs.real, pairs.imag, out=out if j == 1 else None)
        if j > 1:
            np.add(y[0::j], y[1::j], out=out)
            for i in range(2, j):
                out += y[i::j]
        elif y is not out:
            out[:] = y
        if self._offset:
            out -= self._offset * k
        out *= self._gain / k
        rest = x[m * k :].copy()
        self._carry = len(rest)
        self._scratch[: len(rest)] = rest

    def finish(self) -> np.ndarray:
        self._flush()
        # The last (< factor) source samples are dropped: less than one output sample.
        out = self._out[: self._n]
        return out.copy() if len(self._out) > 2 * self._n else out
