"""What the daemon may touch: symlinks out of a watch root are never followed; files it creates are
not world-readable (umask 027); the database and logs hold features and names, never file
contents; it refuses to run as root unless told to. (Manifests that try to leave their folder
are in test_bad_inputs.py.)"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import av
import pytest

from montaged.digest import file_digest
from montaged.store import Store
from tests.helpers import DaemonProcess, cli, wait_until
from tests.reliability.conftest import record, rel_config

pytestmark = pytest.mark.slow

MARKER = b"MONTAGED-SECRET-MARKER-7f3a9c"


def file_rows(state: Path) -> dict[str, str]:
    with Store(state, readonly=True) as s:
        return {r["path"]: r["state"] for r in s.query("SELECT path, state FROM files")}


@pytest.mark.parametrize("follow", [False, True])
def test_symlinks_out_of_the_root_are_never_followed(rlayout, tracks, follow):
    root, tmp = rlayout["root"], rlayout["tmp"]
    outside = tmp / "outside"
    outside.mkdir()
    shutil.copy(tracks[0], outside / "secret.wav")
    (outside / "dir").mkdir()
    shutil.copy(tracks[1], outside / "dir" / "deep.wav")
    shutil.copy(tracks[2], root / "real.wav")
    cfg = rel_config(rlayout["config"], watch=[root], output=rlayout["out"], state=rlayout["state"], watch__follow_symlinks=follow)
    # Links made before the start (found by the scan) and after (seen by the watcher).
    os.symlink(outside / "secret.wav", root / "before-out.wav")
    os.symlink(root / "real.wav", root / "before-in.wav")
    os.symlink(outside / "dir", root / "before-dir")
    with DaemonProcess(cfg, rlayout["state"]):
        os.symlink(outside / "secret.wav", root / "after-out.wav")
        os.symlink("../outside/secret.wav", root / "after-relative-out.wav")
        os.symlink(root / "real.wav", root / "after-in.wav")
        os.symlink(outside / "dir", root / "after-dir")
        (root / "sub").mkdir()
        os.symlink(outside / "secret.wav", root / "sub" / "nested-out.wav")
        expected = {str(root / "real.wav")}
        if follow:
            expected |= {str(root / "before-in.wav"), str(root / "after-in.wav")}
        wait_until(lambda: {p for p, s in file_rows(rlayout["state"]).items() if s == "analyzed"} >= expected, 60, what="files analysed")
        shutil.copy(tracks[3], root / "last.wav")  # something after the links: they had their chance
        wait_until(lambda: file_rows(rlayout["state"]).get(str(root / "last.wav")) == "analyzed", 60, what="last file analysed")
        assert set(file_rows(rlayout["state"])) == expected | {str(root / "last.wav")}
        with Store(rlayout["state"], readonly=True) as s:
            digests = {r["digest"] for r in s.query("SELECT digest FROM features")}
        assert file_digest(str(outside / "secret.wav")) not in digests
        assert file_digest(str(outside / "dir" / "deep.wav")) not in digests


def clip_with_marker(src: Path, dst: Path) -> None:
    """``src`` remuxed with the marker in its container title, comment and stream metadata, and
    appended as trailing bytes after the last box (which demuxers skip)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        out.metadata["title"] = MARKER.decode()
        out.metadata["comment"] = MARKER.decode()
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        vout.metadata["handler_name"] = MARKER.decode()
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    with open(dst, "ab") as fh:
        fh.write(MARKER * 4)


def grep_tree(folder: Path, needle: bytes) -> list[str]:
    hits = []
    for p in folder.rglob("*"):
        if p.is_file() and needle in p.read_bytes():
            hits.append(str(p))
    return hits


def test_state_holds_no_file_contents_and_nothing_is_world_readable(rlayout, small_media):
    root, out, state = rlayout["root"], rlayout["out"], rlayout["state"]
    folder = root / "trip"
    folder.mkdir()
    clip_with_marker(small_media["clips"][0], folder / "marked.mp4")
    shutil.copy(small_media["clips"][1], folder / "plain.mp4")
    music = folder / "music.wav"
    music.write_bytes(small_media["music"].read_bytes())
    (folder / "broken.mp4").write_bytes(MARKER * 1000)  # fails: its error must not quote it
    (folder / "montage.toml").write_text("duration = 4\n")
    old = os.umask(0o022)  # the daemon must not rely on the umask it is started with
    try:
        with DaemonProcess(rlayout["config"], state) as d:
            def ready():
                f = next((f for f in d.status()["folders"] if f["path"] == str(folder)), None)
                return f if f and f["state"] in ("ready", "failed") else None
            f = wait_until(ready, 120, what="preview")
            assert f["state"] == "ready", f
            assert d.status()["files"]["analyzed"] == 3
            problems = {Path(p["path"]).name: p["error"] for p in d.status()["problems"]}
            assert "broken.mp4" in problems
    finally:
        os.umask(old)
    assert (out / "trip" / "preview.mp4").exists()
    # Contents never reach the state directory (database, WAL, arrays, log) nor the outputs.
    hits = grep_tree(state, MARKER) + grep_tree(out, MARKER) + grep_tree(rlayout["tmp"], MARKER + MARKER)
    hits = [h for h in hits if not h.startswith(str(root))]
    assert not hits, f"file contents copied into {hits}"
    # Nothing the daemon created is readable by others.
    created = [state, *state.rglob("*"), out, *out.rglob("*")]
    readable = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in created if p.stat().st_mode & 0o007]
    assert not readable, readable
    names = {p.name for p in created}
    assert {"montaged.db", "montaged.log", "preview.mp4", "preview.edl.json", "preview.storyboard.jpg"} <= names
    assert any(p.suffix == ".npy" for p in created)
    record("security: world-readable files created", f"0 of {len(created)} (db, WAL, log, lock, arrays, previews)")
    record("security: file contents in state/logs", "0 (marker in container metadata, trailing bytes, a junk file)")


def test_refuses_root_without_allow_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    root = tmp_path / "in"
    root.mkdir()
    cfg = rel_config(tmp_path / "c.toml", watch=[root], output=tmp_path / "out", state=tmp_path / "state", daemon__allow_root=False)
    r = cli("run", config=cfg, timeout=60)
    assert r.returncode == 2
    assert "refusing to run as root" in r.stderr and "allow_root" in r.stderr, r.stderr
    # Refused before doing anything: no database, no watch, no output.
    assert not (tmp_path / "state" / "montaged.db").exists()
    assert not (tmp_path / "out").exists()
    r = cli("status", "--json", config=cfg)
    assert r.returncode == 3
    cfg = rel_config(tmp_path / "c.toml", watch=[root], output=tmp_path / "out", state=tmp_path / "state", daemon__allow_root=True)
    with DaemonProcess(cfg, tmp_path / "state") as d:
        assert d.status()["daemon"]["running"]


def test_a_manifest_that_links_out_of_its_folder_is_not_read(rlayout, small_media):
    """montage.toml as a symlink to a file elsewhere (another user's notes, a config with
    secrets that happens to be TOML): its values must not end up in the outputs."""
    root, out, tmp = rlayout["root"], rlayout["out"], rlayout["tmp"]
    secret = tmp / "elsewhere.toml"
    secret.write_text('title = "LEAKED-SECRET-TITLE"\nduration = 3\n')
    folder = root / "linked"
    folder.mkdir()
    for c in small_media["clips"][:2]:
        shutil.copy(c, folder / c.name)
    shutil.copy(small_media["music"], folder / "music.wav")
    with DaemonProcess(rlayout["config"], rlayout["state"]) as d:
        wait_until(lambda: d.status()["files"]["analyzed"] == 3, 60, what="files analysed")
        os.symlink(secret, folder / "montage.toml")
        (root / "other").mkdir()  # a normal folder after it, to know the link had its chance
        for c in small_media["clips"][:2]:
            shutil.copy(c, root / "other" / c.name)
        shutil.copy(small_media["music"], root / "other" / "music.wav")
        (root / "other" / "montage.toml").write_text("duration = 3\n")

        def settled():
            folders = {f["path"]: f for f in d.status()["folders"]}
            other = folders.get(str(root / "other"))
            return folders if other and other["state"] in ("ready", "failed") else None
        folders = wait_until(settled, 120, what="the other folder's preview")
        linked = folders.get(str(folder))
        assert linked is None or (linked["state"] == "failed" and "outside" in linked["error"]), linked
    assert not grep_tree(out, b"LEAKED-SECRET-TITLE"), "a manifest outside the folder was read"
    assert not grep_tree(rlayout["state"], b"LEAKED-SECRET-TITLE")
