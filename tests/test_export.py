"""Edit list JSON, OpenTimelineIO, CMX 3600 EDL, FCPXML and storyboard: every edit list read back
through OpenTimelineIO (its own adapters) and compared with the plan."""

from __future__ import annotations

import json
import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from montaged.errors import RenderError
from montaged.media.probe import source_timing
from montaged.montage import export
from montaged.montage.plan import EditList
from montaged.montage.preview import plan_folder
from montaged.synth.music import make_track
from montaged.synth.video import make_clip
from tests.test_render import clip_analysis, media, settings, track_analysis  # noqa: F401 - the shared module fixture

FPS = 30


@pytest.fixture(scope="module")
def edit(media):  # noqa: F811
    return plan_folder(media["folder"], settings(duration=8.0), media["analyses"])


@pytest.fixture(scope="module")
def exported(edit, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    return export.export_all(edit, out), out


def test_edit_list_and_otio_metadata_agree_on_every_cut(media, edit, exported):  # noqa: F811
    outputs, _ = exported
    data = json.loads(outputs["edl_json"].read_text())
    assert data["version"] == 1 and data["fps"] == FPS
    assert EditList.from_dict(data) == edit
    cuts = data["cuts"]
    assert len(cuts) >= 3
    timeline = otio.adapters.read_from_file(str(outputs["otio"]))
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video][0]
    for clip, cut in zip(video, cuts, strict=True):
        assert clip.metadata["montaged"]["scene"] == cut["scene"]
        assert clip.metadata["montaged"]["source_in"] == cut["source_in"]


# --- every editor's file, read back --------------------------------------------------------------

READERS = {"otio": {}, "edl": {"adapter_name": "cmx_3600", "rate": FPS}, "fcpxml": {"adapter_name": "fcpx_xml"}}


def read_back(path, kind):
    """(video clips, audio clips) of an exported file as OpenTimelineIO reads it: each clip as
    (name, url, record in, record out, source in, source out), times in seconds."""
    timeline = otio.adapters.read_from_file(str(path), **READERS[kind])
    found = {otio.schema.TrackKind.Video: [], otio.schema.TrackKind.Audio: []}
    for track in timeline.tracks:
        for clip in track.find_clips():
            rec, src = track.range_of_child(clip), clip.source_range
            found[track.kind].append((clip.name, clip.media_reference.target_url, rec.start_time.to_seconds(),
                                      rec.end_time_exclusive().to_seconds(), src.start_time.to_seconds(),
                                      src.end_time_exclusive().to_seconds()))
    video = sorted(found[otio.schema.TrackKind.Video], key=lambda c: c[2])
    return video, found[otio.schema.TrackKind.Audio]


def assert_reads_back(outputs, folder, starts=None):
    """Every edit list holds the plan's cuts (same clip, record in/out on the frame, source in/out
    within a frame of the exact seconds, counted from the clip's timecode in ``starts``) and the
    music (record 0 to the end, source from music.offset)."""
    data = json.loads(outputs["edl_json"].read_text())
    starts = starts or {}
    frame = 1 / FPS + 1e-9
    for kind in READERS:
        video, audio = read_back(outputs[kind], kind)
        assert len(video) == len(data["cuts"]), kind
        for got, cut in zip(video, data["cuts"]):
            name, url, rec_in, rec_out, src_in, src_out = got
            assert name == cut["source"] and url == (folder / cut["source"]).as_uri(), (kind, got)
            assert round(rec_in * FPS) == round(cut["record_in"] * FPS), (kind, got, cut)
            assert round(rec_out * FPS) == round(cut["record_out"] * FPS), (kind, got, cut)
            start = starts.get(cut["source"], 0.0)
            assert abs(src_in - start - cut["source_in"]) <= frame, (kind, got, cut)
            assert abs(src_out - start - cut["source_out"]) <= frame, (kind, got, cut)
        # The EDL's AA event puts the music on channels 1 and 2: OTIO reads it as tracks A1 and A2.
        assert len(audio) == (2 if kind == "edl" else 1), (kind, audio)
        for name, url, rec_in, rec_out, src_in, src_out in audio:
            assert name == os.path.basename(data["music"]["path"]), kind
            assert url == (folder / data["music"]["path"]).as_uri(), kind
            assert rec_in == 0.0 and abs(rec_out - data["duration"]) <= frame, (kind, rec_out)
            assert abs(src_in - data["music"]["offset"]) <= frame, (kind, src_in)
            assert abs(src_out - src_in - data["duration"]) <= frame, (kind, src_out)


def test_every_edit_list_reads_back_with_the_cuts_and_the_music(media, exported):  # noqa: F811
    outputs, _ = exported
    assert_reads_back(outputs, media["folder"])


def test_cmx_edl_has_the_music_as_an_audio_event(edit, exported):
    outputs, _ = exported
    text = outputs["edl"].read_text()
    lines = text.splitlines()
    assert lines[0].startswith("TITLE: ") and lines[1] == "FCM: NON-DROP FRAME"
    events = [ln for ln in lines if re.match(r"\d{3}  ", ln)]
    tc = r"(\d\d:\d\d:\d\d:\d\d)"
    event = re.compile(rf"(\d{{3}})  (.{{8}}) (V |AA)    C        {tc} {tc} {tc} {tc}$")
    parsed = [event.match(ln) for ln in events]
    assert all(parsed), events
    assert [int(m.group(1)) for m in parsed] == list(range(1, len(edit.cuts) + 2))
    assert [m.group(3) for m in parsed] == ["V "] * len(edit.cuts) + ["AA"]
    music = parsed[-1]
    total = otio.opentime.to_timecode(otio.opentime.RationalTime(round(edit.duration * FPS), FPS), FPS)
    start = otio.opentime.to_timecode(otio.opentime.RationalTime(round(edit.music_offset * FPS), FPS), FPS)
    assert music.group(2) == "songm4a " and music.group(4) == start
    assert (music.group(6), music.group(7)) == ("00:00:00:00", total)
    after = lines[lines.index(events[-1]) + 1:]
    assert after[:2] == ["* FROM CLIP NAME:  song.m4a", f"* FROM CLIP: {(Path(edit.folder) / 'song.m4a').as_uri()}"]


def test_a_title_with_control_characters_keeps_every_edit_list_whole(media, edit, tmp_path):  # noqa: F811
    """Manifest titles may hold anything TOML can: a newline must not break the EDL into a
    second header line, a BEL must not make the FCPXML ill-formed."""
    from dataclasses import replace

    outputs = export.export_all(replace(edit, title="\u202e\u0007tab\there\nand more"), tmp_path)
    lines = outputs["edl"].read_text().splitlines()
    assert lines[:3] == ["TITLE: \u202e tab here and more", "FCM: NON-DROP FRAME", ""]
    assert_reads_back(outputs, media["folder"])
    assert otio.adapters.read_from_file(str(outputs["fcpxml"]), adapter_name="fcpx_xml").name == "\u202e tab here and more"


def test_fcpxml_is_final_cut_xml_with_every_source(edit, exported):
    outputs, _ = exported
    text = outputs["fcpxml"].read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n<fcpxml version=')
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)
    assets = {a.get("src") for a in root.iter("asset")}
    folder = Path(edit.folder)
    assert assets == {(folder / s).as_uri() for s in {c.source for c in edit.cuts} | {edit.music_path}}
    assert len(root.findall("asset-clip")) == len(assets)  # one browser clip per source
    assert len(root.findall("./project/sequence/spine/clip")) == len(edit.cuts)


@pytest.fixture(scope="module")
def timecoded(tmp_path_factory):
    """A camera clip whose tmcd track starts at 01:00:00:00 (25 fps), a Matroska clip tagged
    10:00:00:00 (30 fps), a clip without timecode, and the music."""
    folder = tmp_path_factory.mktemp("camera")
    truths = {
        "A001.mp4": make_clip(str(folder / "A001.mp4"), duration=3.0, fps=25, cuts=[40], seed=1, timecode="01:00:00:00"),
        "B002.mkv": make_clip(str(folder / "B002.mkv"), duration=3.0, fps=30, cuts=[45], seed=2, timecode="10:00:00:00"),
        "phone.mp4": make_clip(str(folder / "phone.mp4"), duration=3.0, fps=30, cuts=[45], seed=3),
    }
    track = make_track(str(folder / "song.m4a"), bpm=120.0, duration=12.0, seed=4)
    analyses = {folder / name: clip_analysis(t, seed=i) for i, (name, t) in enumerate(truths.items())}
    analyses[folder / "song.m4a"] = track_analysis(track)
    edit = plan_folder(folder, settings(duration=10.0), analyses)
    return folder, edit, export.export_all(edit, tmp_path_factory.mktemp("camera-out"), folder=folder)


def test_source_timecode_is_read_from_the_clip(timecoded):
    folder, _, _ = timecoded
    a = source_timing(str(folder / "A001.mp4"))
    assert (a.timecode, a.rate) == ("01:00:00:00", 25.0) and abs(a.duration - 3.0) < 0.05
    assert source_timing(str(folder / "B002.mkv")).timecode == "10:00:00:00"
    assert source_timing(str(folder / "phone.mp4")).timecode is None
    assert source_timing(str(folder / "song.m4a")).timecode is None


def test_edit_lists_count_source_times_from_the_timecode(timecoded):
    folder, edit, outputs = timecoded
    assert {c.source for c in edit.cuts} >= {"A001.mp4", "B002.mkv"}, "the plan must use both timecoded clips"
    assert_reads_back(outputs, folder, starts={"A001.mp4": 3600.0, "B002.mkv": 36000.0})
    text = outputs["edl"].read_text()
    first = next(c for c in edit.cuts if c.source == "A001.mp4")
    src_in = otio.opentime.to_timecode(otio.opentime.RationalTime(108000 + round(first.source_in * FPS), FPS), FPS)
    assert re.search(rf"^\d{{3}}  A001mp4  V     C        {src_in} ", text, re.M), text
    # Every media reference says where its media starts and how long it is.
    timeline = otio.adapters.read_from_file(str(outputs["otio"]))
    for clip in timeline.find_clips():
        available = clip.media_reference.available_range
        start = {"A001.mp4": 3600.0, "B002.mkv": 36000.0}.get(clip.name, 0.0)
        assert abs(available.start_time.to_seconds() - start) <= 1 / FPS
        assert available.contains(clip.source_range.start_time)
        assert clip.source_range.end_time_exclusive() <= available.end_time_exclusive()


def _seconds(fcpx_time: str | None) -> Fraction:
    return Fraction((fcpx_time or "0s").rstrip("s"))


def test_fcpxml_video_covers_each_clips_timecoded_range(timecoded):
    """A spine clip shows its local time [start, start + duration): its <video> must cover it
    there, which with a timecode means sitting at the asset's start, as Final Cut writes it."""
    import xml.etree.ElementTree as ET

    _, edit, outputs = timecoded
    root = ET.parse(outputs["fcpxml"]).getroot()
    clips = root.findall("./project/sequence/spine/clip")
    assert len(clips) == len(edit.cuts)
    for clip in clips:
        video = clip.find("video")
        start, duration = _seconds(clip.get("start")), _seconds(clip.get("duration"))
        v_offset, v_duration = _seconds(video.get("offset")), _seconds(video.get("duration"))
        assert v_offset <= start and start + duration <= v_offset + v_duration, ET.tostring(clip)
        assert _seconds(video.get("start")) == v_offset  # media time = its own timecode


def test_a_timecode_nobody_understands_counts_from_zero(caplog):
    from montaged.media.probe import SourceTiming

    assert export.timecode_frames(SourceTiming(3.0, "garbage", 25.0), FPS, "x.mp4") == 0
    assert "timecode 'garbage' not understood" in caplog.text
    assert export.timecode_frames(SourceTiming(3.0, "00:00:01:00", 25.0), FPS) == 30
    # Drop frame (29.97): 01:00:00;00 is 3599.9964 s of real time.
    assert export.timecode_frames(SourceTiming(3.0, "01:00:00;00", 30000 / 1001), FPS) == round(3599.9964 * FPS)


def test_edit_list_is_byte_identical_on_rerun(media, tmp_path):  # noqa: F811
    a = export.write_edit_json(plan_folder(media["folder"], settings(duration=8.0), media["analyses"]), tmp_path / "a.json")
    b = export.write_edit_json(plan_folder(media["folder"], settings(duration=8.0), media["analyses"]), tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    (media["folder"] / "montage.toml").write_text("seed = 99\n")
    try:
        c = export.write_edit_json(plan_folder(media["folder"], settings(duration=8.0), media["analyses"]),
                                   tmp_path / "c.json")
    finally:
        (media["folder"] / "montage.toml").unlink()
    assert c.read_bytes() != a.read_bytes()


def test_storyboard_header_rounds_the_tempo(edit):
    from dataclasses import replace

    assert export.storyboard_header(replace(edit, tempo=116.059)).endswith("s  ·  116 BPM")
    assert export.storyboard_header(replace(edit, tempo=127.6)).endswith("s  ·  128 BPM")


def test_storyboard_has_one_thumbnail_per_cut(edit, exported):
    outputs, _ = exported
    with Image.open(outputs["storyboard"]) as img:
        assert img.format == "JPEG"
        width, height = img.size
        rgb = img.convert("RGB")
        # Every thumbnail box holds footage (textured), not the flat background or an empty frame.
        cols = min(export.COLUMNS, len(edit.cuts))
        tw = round(export.THUMB_HEIGHT * edit.width / edit.height)
        for i in range(len(edit.cuts)):
            x = export.PAD + (i % cols) * (tw + export.PAD)
            y = 28 + (i // cols) * (export.THUMB_HEIGHT + export.CAPTION + export.PAD)
            box = np.asarray(rgb.crop((x + 2, y + 2, x + tw - 2, y + export.THUMB_HEIGHT - 2)), np.float32)
            assert box.std() > 4, i
    rows = -(-len(edit.cuts) // cols)
    assert width == export.PAD + cols * (tw + export.PAD)
    assert height == 28 + rows * (export.THUMB_HEIGHT + export.CAPTION + export.PAD) + export.PAD


def test_no_temporary_files_are_left(exported):
    _, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["preview.edl", "preview.edl.json", "preview.fcpxml",
                                                      "preview.otio", "preview.storyboard.jpg"]


def test_unwritable_folder_is_a_render_error(edit, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
            pytest.skip("running as root without permission to mount a read-only file system")
    else:
        ro.chmod(0o555)
    try:
        with pytest.raises(RenderError, match="cannot write preview.edl.json to .*: (Read-only|Permission)"):
            export.export_all(edit, ro)
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)
        else:
            ro.chmod(0o755)
