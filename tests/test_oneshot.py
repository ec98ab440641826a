"""One-shot commands without a daemon: `montaged analyze` and `montaged preview`, as a user runs
them, checked against the contract's JSON shapes."""

import json

import pytest

from tests.helpers import cli


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from montaged.synth.music import make_track
    from montaged.synth.video import make_clip

    d = tmp_path_factory.mktemp("trip")
    truths = [make_clip(str(d / f"c{i}.mp4"), duration=3.0, fps=30, size=(320, 180), cuts=[45], gop=30, seed=i) for i in range(3)]
    track = make_track(str(d / "song.wav"), bpm=120, duration=10.0, seed=1, channels=1, sample_rate=22050)
    return d, truths, track


def test_analyze_json_follows_the_contract(folder):
    d, truths, _ = folder
    r = cli("analyze", str(d / "c0.mp4"), str(d / "song.wav"), "--json")
    assert r.returncode == 0, r.stderr
    video, audio = json.loads(r.stdout)
    for key in ("path", "kind", "digest", "duration", "fps", "width", "height", "rotation", "scenes"):
        assert key in video, key
    assert video["kind"] == "video" and (video["width"], video["height"]) == (320, 180)
    assert [s["start_frame"] for s in video["scenes"][1:]] == truths[0].cut_frames
    for key in ("start", "end", "start_frame", "end_frame", "motion", "sharpness", "brightness"):
        assert key in video["scenes"][0], key
    for key in ("path", "kind", "digest", "duration", "tempo", "beats", "downbeats", "energy_hz"):
        assert key in audio, key
    assert audio["kind"] == "audio" and abs(audio["tempo"] - 120) < 2.5


def test_analyze_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(b"\x00garbage" * 1000)
    r = cli("analyze", str(bad), "--json")
    assert r.returncode == 1
    assert "not a media file" in r.stderr
    assert json.loads(r.stdout)[0]["error"].startswith("not a media file")
    r = cli("analyze", str(tmp_path / "missing.mp4"))
    assert r.returncode == 1 and "missing.mp4" in r.stderr


def test_preview_one_shot(folder, tmp_path):
    d, _, track = folder
    (d / "montage.toml").write_text("duration = 6\n")
    out = tmp_path / "out"
    r = cli("preview", str(d), "--out", str(out), "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["outputs"]["preview"] == str(out / "preview.mp4")
    assert (out / "preview.mp4").stat().st_size > 0 and (out / "preview.edl.json").exists()
    edl = json.loads((out / "preview.edl.json").read_text())
    assert edl["version"] == 1 and edl["cuts"] and doc["cuts"] == len(edl["cuts"])
    # Same inputs and seed: a byte-identical edit list.
    first = (out / "preview.edl.json").read_bytes()
    r = cli("preview", str(d), "--out", str(out), timeout=300)
    assert r.returncode == 0 and (out / "preview.edl.json").read_bytes() == first


def test_preview_with_a_broken_manifest_exits_1_naming_the_key(folder, tmp_path):
    d, _, _ = folder
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in d.iterdir():
        if f.suffix in (".mp4", ".wav"):
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "montage.toml").write_text('music = "../song.wav"\n')
    r = cli("preview", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert "music" in r.stderr
    assert not (tmp_path / "o" / "preview.mp4").exists()
