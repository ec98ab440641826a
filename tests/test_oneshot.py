"""One-shot commands without a daemon: `montaged analyze` and `montaged preview`, as a user runs
them, checked against the contract's JSON shapes."""

import json
import os
import pty
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import cli


def cli_on_a_terminal(*args: str, timeout: float = 300) -> tuple[int, str, bytes]:
    """Run ``montaged ARGS`` with stderr on a pseudo-terminal (stdout a file, as in
    ``montaged analyze x --json > out.json`` typed at a terminal): (exit code, stdout, what
    the terminal got)."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "montaged", *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=slave, env={**os.environ, "TERM": "xterm"})
        os.close(slave)
        seen = b""
        try:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
            code = proc.wait(timeout)
        out.seek(0)
        return code, out.read(), seen


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


def test_analyze_shows_progress_on_a_terminal_and_nothing_in_a_pipe(folder):
    d, _, _ = folder
    code, stdout, terminal = cli_on_a_terminal("analyze", str(d / "c1.mp4"), str(d / "song.wav"), "--json")
    assert code == 0, terminal
    assert [r["kind"] for r in json.loads(stdout)] == ["video", "audio"]  # stdout stays one document
    text = terminal.decode()
    assert "analysing c1.mp4 (1/2)" in text and "analysing song.wav (2/2)" in text
    assert "[" + "#" * 24 + "] 100%" in text and "\r" in text
    assert text.endswith("\r\x1b[K")  # the bar is cleared when the work is done
    # In a pipe: not one byte more than before.
    r = cli("analyze", str(d / "c1.mp4"), "--json")
    assert r.returncode == 0 and r.stderr == ""


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
    assert set(doc["outputs"]) == {"preview", "edl_json", "otio", "edl", "fcpxml", "storyboard"}
    assert r.stderr == ""  # --json into a pipe: nothing but the document
    # Same inputs and seed: a byte-identical edit list. At a terminal, with a progress bar.
    first = (out / "preview.edl.json").read_bytes()
    code, stdout, terminal = cli_on_a_terminal("preview", str(d), "--out", str(out))
    assert code == 0, terminal
    assert stdout.strip() == str(out / "preview.mp4")
    text = terminal.decode()
    assert "analysing c0.mp4" in text and "analysing song.wav" in text and "rendering" in text and "%" in text
    assert "analysing /" not in text  # the bar replaces the line-per-file messages
    assert (out / "preview.edl.json").read_bytes() == first


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
