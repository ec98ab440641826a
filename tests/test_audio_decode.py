"""The analysis decode path (``exact=False``) against a plain reference decode.

The fast path has two ways to the same samples. A whole file goes through one FFmpeg filter
graph (decode and channel mix in C, blocks of mono float to numpy for the box decimation);
a window of a file, or a file the graph cannot decode cleanly, goes through the frame loop,
which gathers raw sample bytes per frame and converts them in chunks (channel mean with LFE
left out, scaling, box decimation with samples carried across chunks). Each case here is
compared sample for sample with the obvious way of doing the same thing: FFmpeg's resampler
converting every frame to float (no rate or layout change), numpy averaging and decimating the
whole signal at once. Block and chunk boundaries fall everywhere when they are made tiny.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from montaged.media import audio as media_audio
from montaged.media.audio import decode, decode_audio
from montaged.synth.music import make_track
from montaged.synth.video import make_clip


def _box(x: np.ndarray, k: int) -> np.ndarray:
    m = len(x) // k * k
    return x[:m].reshape(-1, k).mean(axis=1)


def _reference(path: str, factor: int) -> np.ndarray:
    """Every frame through av.AudioResampler to planar float at its own layout and rate, channel
    mean without LFE, then box decimation of the whole signal."""
    parts = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            names = [c.name for c in frame.layout.channels]
            keep = [i for i, n in enumerate(names) if n != "LFE"] or list(range(len(names)))
            resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray()[keep].astype(np.float64).mean(axis=0))
    return _box(np.concatenate(parts), factor)


def _write_alac(path: str, seconds: float = 3.0) -> None:
    """ALAC decodes to planar int16 (s16p): two loud channels whose sum overflows int16."""
    rate = 44100
    t = np.arange(int(rate * seconds)) / rate
    x = np.stack([0.9 * np.sin(2 * np.pi * 220 * t), 0.9 * np.sin(2 * np.pi * 220 * t + 0.3)])
    with av.open(path, "w", format="ipod") as out:
        stream = out.add_stream("alac", rate=rate, layout="stereo")
        stream.codec_context.format = "s16p"
        frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16), format="s16p", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        resampler = av.AudioResampler(format="s16p", layout="stereo", rate=rate, frame_size=4096)
        for f in resampler.resample(frame):
            out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


FILES = [
    ("m4a", {}),  # AAC: fltp stereo, 1024-sample frames in 2048-sample buffers
    ("wav", {}),  # s16 interleaved
    ("m4a", {"channels": 6}),  # 5.1: LFE left out
    ("flac", {"sample_rate": 96000}),  # s16 interleaved, factor 4
    ("wav", {"sample_rate": 8000, "channels": 1}),  # factor 1
    ("m4a", {"sample_rate": 8000, "channels": 1}),  # factor 1, mono: the graph has nothing to mix
    ("opus", {}),  # flt interleaved at 48 kHz
    ("alac", {}),
    ("m4a", {"cover": True}),  # an attached picture beside the audio stream
    ("mp4", {}),  # a picture track beside the audio
    ("clip", {}),  # a camera clip: video is stream 0, its sound (AAC, 48 kHz) stream 1
]


MODES = ["graph", "graph-tiny-block", "frames", "frames-tiny-chunk"]


@pytest.mark.parametrize("rate", [22050, 11025])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ext,kwargs", FILES, ids=[f"{e}-{'-'.join(map(str, k.values())) or 'plain'}" for e, k in FILES])
def test_fast_decode_matches_a_plain_reference(tmp_path, monkeypatch, ext, kwargs, mode, rate):
    if mode == "graph-tiny-block":
        monkeypatch.setattr(media_audio, "GRAPH_BLOCK", 1001)  # odd: samples carried over every block
    if mode.startswith("frames"):
        monkeypatch.setattr(media_audio, "GRAPH_DECODE", False)
    if mode == "frames-tiny-chunk":
        monkeypatch.setattr(media_audio._NumpySink, "CHUNK_BYTES", 1000)
    if ext == "alac":
        path = str(tmp_path / "t.m4a")
        _write_alac(path)
    elif ext == "clip":
        path = str(tmp_path / "clip.mp4")
        make_clip(path, duration=3.0, audio=True)
        with av.open(path) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
    else:
        path = str(tmp_path / f"t.{ext}")
        make_track(path, duration=3.0, seed=5, **kwargs)
    d = decode(path, rate, exact=False)
    # PCM files (WAV) always take the frame loop: they come in large frames already.
    assert d.via == ("graph" if mode.startswith("graph") and ext != "wav" else "frames")
    factor = d.source_rate // d.rate
    assert d.source_rate == d.rate * factor
    ref = _reference(path, factor)
    assert d.samples.dtype == np.float32
    assert abs(len(d.samples) - len(ref)) <= 1
    n = min(len(ref), len(d.samples))
    assert np.abs(ref).max() > 0.05
    np.testing.assert_allclose(d.samples[:n], ref[:n], atol=2e-6)


def _frame(samples: np.ndarray, fmt: str, layout: str, pts: int, rate: int = 44100) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout=layout)
    frame.sample_rate, frame.pts = rate, pts
    return frame


@pytest.mark.parametrize("factor", [1, 3, 4, 6])
def test_sink_follows_format_and_layout_changes(factor):
    """Odd frame sizes in four formats and three layouts, a rate change and a gap: nothing lost
    or misread at the switches, including the samples carried over between decimation steps.
    (A rate change is not resampled: the samples only have to arrive whole and in order.)"""
    rng = np.random.default_rng(1)
    sink = media_audio._NumpySink(factor)
    expected = []
    pts = 0
    for fmt, layout, n, rate in [("s16", "stereo", 1001, 44100), ("s16", "stereo", 998, 44100),
                                 ("fltp", "mono", 997, 44100), ("u8", "5.1", 1003, 44100),
                                 ("fltp", "5.1", 1001, 44100), ("fltp", "stereo", 1000, 44100),
                                 ("fltp", "stereo", 999, 48000)]:
        nch = av.AudioLayout(layout).nb_channels
        x = rng.uniform(-0.8, 0.8, (nch, n))
        if fmt == "s16":
            data = (x.T.reshape(1, -1) * 32768).astype(np.int16)
            x = data.reshape(n, nch).T / 32768.0
        elif fmt == "u8":
            data = np.round(x.T.reshape(1, -1) * 128 + 128).astype(np.uint8)
            x = (data.reshape(n, nch).T.astype(np.float64) - 128) / 128.0
        else:
            data = x.astype(np.float32)
            x = data.astype(np.float64)
        keep = [0, 1, 2, 4, 5] if layout == "5.1" else list(range(nch))
        sink.push(_frame(data, fmt, layout, pts, rate))
        expected.append(x[keep].mean(axis=0))
        pts += n
        if fmt == "fltp" and layout == "mono":
            sink.push_silence(50)
            expected.append(np.zeros(50))
            pts += 50
    got = sink.finish()
    ref = _box(np.concatenate(expected), factor)
    assert len(got) == len(ref)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def _write_adts(path: str, x: np.ndarray, layout: str, rate: int = 44100) -> None:
    with av.open(path, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
        for f in resampler.resample(frame):
            out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def test_layout_change_mid_stream(tmp_path):
    """Two ADTS streams back to back (stereo, then mono), as a broadcast capture can be: the
    decoder switches layout mid-stream and both halves keep their level and place."""
    rate = 44100
    t = np.arange(2 * rate) / rate
    a, b = tmp_path / "a.aac", tmp_path / "b.aac"
    _write_adts(str(a), np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2), "stereo")
    _write_adts(str(b), (0.2 * np.sin(2 * np.pi * 660 * t))[None], "mono")
    joined = tmp_path / "ab.aac"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    with av.open(str(joined)) as c:
        layouts = {f.layout.name for f in c.decode(audio=0)}
    assert layouts == {"stereo", "mono"}
    d = decode(str(joined), exact=False)
    assert d.via == "frames"  # FFmpeg's graph stops at the change; the frame loop follows it
    y, out_rate = d.samples, d.rate
    assert len(y) / out_rate == pytest.approx(4.0, abs=0.1)
    rms = lambda s: float(np.sqrt(np.mean(np.square(s))))  # noqa: E731
    first, second = y[int(0.3 * out_rate): int(1.7 * out_rate)], y[int(2.3 * out_rate): int(3.7 * out_rate)]
    assert rms(first) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert rms(second) == pytest.approx(0.2 / np.sqrt(2), rel=0.1)


def test_fast_decode_of_a_window(tmp_path):
    path = str(tmp_path / "t.m4a")
    make_track(path, duration=8.0, seed=1)
    full, rate = decode_audio(path, 11025, exact=False)
    part, rate2 = decode_audio(path, 11025, start=3.0, duration=2.0, exact=False)
    assert rate2 == rate == 11025 and len(part) == 2 * rate
    ref = full[3 * rate: 5 * rate]
    assert np.corrcoef(part[100:-100], ref[100:-100])[0, 1] > 0.99


def _mux_mono_aac(out, x: np.ndarray, rate: int, pts=lambda i: i, stream=None) -> None:
    """Encode ``x`` to AAC in ``out``, 1024-sample frames, the frame at sample ``i`` stamped
    ``pts(i)`` (in samples)."""
    stream = stream or out.add_stream("aac", rate=rate, layout="mono")
    for i in range(0, len(x) - 1024, 1024):
        frame = av.AudioFrame.from_ndarray(x[None, i:i + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, pts(i)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def test_graph_hands_a_timestamp_hole_to_the_frame_loop(tmp_path):
    """Half a second missing from the middle of a Matroska file that decodes without one error
    (a recorder that paused): the filter graph sees the jump in the timestamps and gives the
    file to the frame loop, which fills the hole so that the audio after it keeps its time."""
    rate, hole = 44100, 0.5
    path = str(tmp_path / "paused.mka")
    t = np.arange(4 * rate) / rate
    x = np.where(t < 2.0, 0.3 * np.sin(2 * np.pi * 440 * t), 0.6 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)
    with av.open(path, "w") as out:
        _mux_mono_aac(out, x, rate, pts=lambda i: i + (int(hole * rate) if i >= 2 * rate else 0))
    d = decode(path, exact=False)
    assert d.via == "frames" and d.corrupt_packets == 0
    assert len(d.samples) / d.rate == pytest.approx(4.0 + hole, abs=0.05)
    block = d.rate // 20
    level = np.abs(d.samples[: len(d.samples) // block * block]).reshape(-1, block).max(axis=1)  # per 50 ms
    assert level[int(2.1 * 20):int(2.4 * 20)].max() < 0.01  # the hole: silence
    assert level[int(2.6 * 20):int(4.4 * 20)].min() > 0.4  # the louder tone, at its own time
    assert 0.2 < level[int(0.2 * 20):int(1.9 * 20)].min() < 0.4


def test_graph_reads_awkward_file_names(tmp_path):
    """Characters that mean something in an FFmpeg filter graph: the graph opens the file by
    descriptor, never by name."""
    path = str(tmp_path / "it's: a, [mix]; 100% \\ final=2.m4a")
    make_track(path, duration=3.0, seed=2)
    d = decode(path, exact=False)
    assert d.via == "graph"
    ref = _reference(path, d.source_rate // d.rate)
    n = min(len(ref), len(d.samples))
    np.testing.assert_allclose(d.samples[:n], ref[:n], atol=2e-6)


def test_graph_leaves_audio_shorter_than_its_container_to_the_frame_loop(tmp_path):
    """A video whose sound stops after 2 of 5 seconds: audio that ends well before the container
    could be frames the graph dropped, so the frame loop decodes it instead (only slower)."""
    rate = 44100
    path = str(tmp_path / "short-sound.mp4")
    with av.open(path, "w") as out:
        audio = out.add_stream("aac", rate=rate, layout="mono")
        vs = out.add_stream("libx264", rate=5)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)).astype(np.float32)
        _mux_mono_aac(out, x, rate, stream=audio)
    d = decode(path, exact=False)
    assert d.via == "frames"
    assert len(d.samples) / d.rate == pytest.approx(2.0, abs=0.1)
