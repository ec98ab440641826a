"""probe(): what a file is, from real files generated with PyAV (and a few crafted bad ones)."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from montaged.errors import MediaError
from montaged.media import MediaInfo, probe
from montaged.media.probe import check_sane, frame_rate_from_pts
from montaged.synth.music import make_track
from montaged.synth.video import make_clip, make_still


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Small clips shared by the tests of this module (generated once)."""
    d = tmp_path_factory.mktemp("probe")
    out = {
        "mp4": make_clip(d / "plain.mp4", duration=2.0),
        "vfr": make_clip(d / "vfr.mp4", duration=2.0, vfr=True),
        "vfr_mkv": make_clip(d / "vfr.mkv", duration=2.0, vfr=True),
        "rot": make_clip(d / "phone.mp4", duration=1.0, rotation=90, audio=True),
        "sar": make_clip(d / "anamorphic.mkv", duration=1.0, sar=(4, 3)),
        "webm": make_clip(d / "clip.webm", duration=1.0, codec="vp9"),
        "hevc": make_clip(d / "clip_hevc.mp4", duration=1.0, codec="hevc"),
        "mov": make_clip(d / "clip.mov", duration=1.0, codec="mpeg4"),
        "start": make_clip(d / "late.mkv", duration=1.0, start_time=1.5),
        "start_mp4": make_clip(d / "late.mp4", duration=1.0, start_time=2.0),
    }
    return d, out


def test_plain_mp4(media):
    _, m = media
    info = probe(m["mp4"].path)
    assert isinstance(info, MediaInfo)
    assert info.kind == "video"
    assert info.codec == "h264"
    assert (info.width, info.height) == (320, 180)
    assert (info.display_width, info.display_height) == (320, 180)
    assert info.fps == pytest.approx(30.0)
    assert info.vfr is False
    assert info.frames == 60
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.rotation == 0 and info.sar == 1.0
    assert info.has_audio is False and info.audio_codec is None
    assert info.start_time == pytest.approx(0.0)
    assert "mp4" in info.container
    with pytest.raises(Exception):
        info.kind = "audio"  # frozen


@pytest.mark.parametrize("key", ["vfr", "vfr_mkv"])
def test_vfr_is_detected_from_pts(media, key):
    _, m = media
    truth = m[key]
    info = probe(truth.path)
    assert info.vfr is True
    times = np.array(truth.frame_times)
    # The mean rate of the first packets, from their timestamps, not a nominal 30 fps.
    expected = (len(times) - 1) / (times[-1] - times[0])
    assert info.fps == pytest.approx(expected, rel=0.02)
    assert info.fps != pytest.approx(30.0, rel=0.02)


def test_rotation_gives_portrait_display(media):
    _, m = media
    info = probe(m["rot"].path)
    assert info.rotation == 90
    assert (info.width, info.height) == (320, 180)
    assert (info.display_width, info.display_height) == (180, 320)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.sample_rate == 48000 and info.channels == 2


def test_non_square_pixels(media):
    _, m = media
    info = probe(m["sar"].path)
    assert info.sar == pytest.approx(4 / 3)
    assert (info.display_width, info.display_height) == (427, 180)


@pytest.mark.parametrize("key,codec,container", [
    ("webm", "vp9", "webm"), ("hevc", "hevc", "mp4"), ("mov", "mpeg4", "mov"),
    ("vfr_mkv", "h264", "matroska")])
def test_codecs_and_containers(media, key, codec, container):
    _, m = media
    info = probe(m[key].path)
    assert info.kind == "video"
    assert info.codec == codec
    assert container in info.container
    assert info.width == 320


@pytest.mark.parametrize("key,start", [("start", 1.5), ("start_mp4", 2.0)])
def test_non_zero_start_time(media, key, start):
    _, m = media
    info = probe(m[key].path)
    assert info.start_time == pytest.approx(start, abs=0.002)
    assert info.duration == pytest.approx(1.0, abs=0.1)


def test_audio_only_is_audio(tmp_path):
    make_track(str(tmp_path / "song.m4a"), duration=2.0)
    info = probe(str(tmp_path / "song.m4a"))
    assert info.kind == "audio"
    assert info.codec == "aac" and info.has_audio
    assert info.width == 0 and info.fps == 0.0
    assert info.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("ext", [".mp3", ".m4a"])
def test_cover_art_does_not_make_a_video(tmp_path, ext):
    path = str(tmp_path / f"covered{ext}")
    make_track(path, duration=2.0, cover=True)
    import av

    with av.open(path) as c:  # the picture stream really is there
        assert any(s.disposition & av.stream.Disposition.attached_pic for s in c.streams.video)
    info = probe(path)
    assert info.kind == "audio"
    assert info.codec in ("mp3", "aac")


# ---------------------------------------------------------------------------------------------
# Bad input


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found: nope.mp4"):
        probe(str(tmp_path / "nope.mp4"))


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match=r"^not a media file \(empty\): empty.mp4$"):
        probe(str(p))


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=r"^not a media file: noise.mp4$"):
        probe(str(p))


@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4"])
def test_text_file(tmp_path, name):
    # FFmpeg opens .txt as "tty" (ANSI art video): that is still not footage.
    p = tmp_path / name
    p.write_text("shopping list\n" * 300)
    with pytest.raises(MediaError, match=rf"^not a media file: {name}$"):
        probe(str(p))


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png"])
def test_still_image(tmp_path, name):
    make_still(tmp_path / name)
    with pytest.raises(MediaError, match=rf"^not a video or audio file \(still image\): {name}$"):
        probe(str(tmp_path / name))


def _y4m(path, header: str, frames: int = 2, frame_bytes: int = 32 * 18 * 3 // 2) -> None:
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 {header}\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + bytes(frame_bytes))


def test_absurd_frame_rate(tmp_path):
    p = tmp_path / "fast.y4m"
    _y4m(p, "W32 H18 F100000:1 Ip A1:1 C420jpeg")
    with pytest.raises(MediaError, match=r"frame rate 100000 fps is absurd .*: fast.y4m"):
        probe(str(p))


def test_absurd_duration(tmp_path):
    # 3 frames at one frame per 100000 s: 83 hours of "video" in a 3 kB file.
    p = tmp_path / "forever.y4m"
    _y4m(p, "W32 H18 F1:100000 Ip A1:1 C420jpeg", frames=3)
    with pytest.raises(MediaError, match=r"duration \d+ s is absurd \(limit 48 h\): forever.y4m"):
        probe(str(p))


def test_absurd_frame_size_is_refused_without_allocating(tmp_path):
    # A raw-video header claiming 100000x100000 (15 GB per frame) in a tiny file.
    p = tmp_path / "huge.y4m"
    _y4m(p, "W100000 H100000 F30:1 Ip A1:1 C420jpeg", frames=1, frame_bytes=1000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MediaError, match="huge.y4m"):
        probe(str(p))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100


@pytest.mark.parametrize("w,h,fps,dur,msg", [
    (20000, 20000, 30, 10, "frame size 20000x20000 is absurd"),
    (70000, 10, 30, 10, "frame size 70000x10 is absurd"),
    (1920, 1080, 5000, 10, "frame rate 5000 fps is absurd"),
    (1920, 1080, 30, 49 * 3600, "duration 176400 s is absurd"),
    (0, 1080, 30, 10, "no picture size"),
])
def test_check_sane_limits(w, h, fps, dur, msg):
    with pytest.raises(MediaError, match=msg):
        check_sane("x.mp4", w, h, fps, dur)


def test_check_sane_accepts_real_formats():
    for w, h, fps in [(3840, 2160, 60), (16384, 16384, 24), (1080, 1920, 240)]:
        check_sane("x.mp4", w, h, fps, 3600 * 47)


def test_truncated_faststart_mp4_still_probes(tmp_path):
    truth = make_clip(tmp_path / "full.mp4", duration=3.0, faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    info = probe(str(tmp_path / "cut.mp4"))
    assert info.kind == "video" and info.fps == pytest.approx(30.0)
    assert info.frames == truth.n_frames  # what the header promises


def test_truncated_mp4_without_index_is_not_media(tmp_path):
    # The index (moov) of a normally written MP4 is at the end: a cut copy has none.
    make_clip(tmp_path / "full.mp4", duration=2.0)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        probe(str(tmp_path / "cut.mp4"))


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_frame_rate_from_pts_tolerates_millisecond_rounding():
    from fractions import Fraction

    pts = np.round(np.arange(100) * 1000 / 30).astype(np.int64)  # 0, 33, 67, 100, ...
    fps, vfr = frame_rate_from_pts(pts, Fraction(1, 1000))
    assert vfr is False and fps == pytest.approx(30.0, rel=0.001)
    jitter = np.cumsum(np.random.default_rng(0).choice([20, 33, 50], 100))
    fps, vfr = frame_rate_from_pts(jitter, Fraction(1, 1000))
    assert vfr is True


def test_first_frame_is_handed_to_the_analysis_only_while_the_file_is_unchanged(tmp_path):
    from montaged.media.probe import take_first_frame

    truth = make_clip(tmp_path / "a.mp4", duration=1.0)
    info = probe(truth.path)
    pts, frame = take_first_frame(truth.path, info.video_stream)
    assert frame.width == 320 and pts == 0
    assert take_first_frame(truth.path, info.video_stream) is None  # taken once
    probe(truth.path)
    with open(truth.path, "ab") as f:
        f.write(b"\0")  # changed since the probe
    assert take_first_frame(truth.path, info.video_stream) is None
