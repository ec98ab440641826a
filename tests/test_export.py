"""Edit list JSON, OpenTimelineIO, CMX 3600 EDL and storyboard: read back and compared."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from montaged.errors import RenderError
from montaged.montage import export
from montaged.montage.plan import EditList
from montaged.montage.preview import plan_folder
from tests.test_render import media, settings  # noqa: F401 - the shared module fixture

FPS = 30


@pytest.fixture(scope="module")
def edit(media):  # noqa: F811
    return plan_folder(media["folder"], settings(duration=8.0), media["analyses"])


@pytest.fixture(scope="module")
def exported(edit, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    return export.export_all(edit, out), out


def test_edit_list_otio_and_edl_agree_on_every_cut(media, edit, exported):  # noqa: F811
    outputs, _ = exported
    data = json.loads(outputs["edl_json"].read_text())
    assert data["version"] == 1 and data["fps"] == FPS
    assert EditList.from_dict(data) == edit
    cuts = data["cuts"]
    assert len(cuts) >= 3

    timeline = otio.adapters.read_from_file(str(outputs["otio"]))
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video][0]
    audio = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio][0]
    edl = otio.adapters.read_from_file(str(outputs["edl"]), adapter_name="cmx_3600", rate=FPS)
    edl_video = [t for t in edl.tracks if t.kind == otio.schema.TrackKind.Video][0]
    edl_clips = [c for c in edl_video if isinstance(c, otio.schema.Clip)]
    assert len(video) == len(edl_clips) == len(cuts)

    for i, cut in enumerate(cuts):
        for track, clip in ((video, video[i]), (edl_video, edl_clips[i])):
            rec = track.range_of_child_at_index(track.index(clip))
            assert rec.start_time.to_frames(FPS) == round(cut["record_in"] * FPS)
            assert rec.end_time_exclusive().to_frames(FPS) == round(cut["record_out"] * FPS)
            src = clip.source_range
            assert abs(src.start_time.to_seconds() - cut["source_in"]) <= 0.5 / FPS + 1e-9
            assert abs(src.end_time_exclusive().to_seconds() - cut["source_out"]) <= 1 / FPS + 1e-9
            assert clip.name == cut["source"]
        assert video[i].media_reference.target_url == (media["folder"] / cut["source"]).as_uri()
        assert video[i].metadata["montaged"]["scene"] == cut["scene"]
    music = audio[0]
    assert music.source_range.duration.to_frames(FPS) == round(data["duration"] * FPS)
    assert abs(music.source_range.start_time.to_seconds() - data["music"]["offset"]) <= 0.5 / FPS


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
    assert sorted(p.name for p in out.iterdir()) == ["preview.edl", "preview.edl.json", "preview.otio",
                                                      "preview.storyboard.jpg"]


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
