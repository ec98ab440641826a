"""The watcher's stages on real files: what counts, when a file is complete, what a scan finds,
and the fallback to polling when inotify cannot be had."""

import ctypes
import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from montaged.config import settings_from_dict
from montaged.watch import RawEvent, Settler, choose_observer, is_ignored, path_ignored, root_of, scan_root
from tests.helpers import DaemonProcess, wait_until


def make_settings(root, **watch):
    return settings_from_dict({"paths": {"watch": [str(root)], "output": str(root.parent / "out")},
                               "watch": {"settle_seconds": 1.0, **watch}})


@pytest.mark.parametrize("name", [".hidden.mp4", "clip.mp4.part", "x.tmp", "a.crdownload", "b.mp4~", ".syncthing.clip.mp4.tmp", ".clip.mp4.Ab12Cd"])
def test_ignored_names(name):
    assert is_ignored(name, settings_from_dict({}).watch.ignore)


def test_ordinary_names_are_not_ignored():
    patterns = settings_from_dict({}).watch.ignore
    assert not any(is_ignored(n, patterns) for n in ("clip.mp4", "My Holiday (2).MOV", "track.m4a", "montage.toml"))


def test_hidden_folders_hide_their_files(tmp_path):
    patterns = settings_from_dict({}).watch.ignore
    assert path_ignored(str(tmp_path / ".Trash" / "a.mp4"), str(tmp_path), patterns)
    assert not path_ignored(str(tmp_path / "trip" / "a.mp4"), str(tmp_path), patterns)


def test_root_of_respects_path_boundaries():
    assert root_of("/srv/ingest/a.mp4", ["/srv/ingest"]) == "/srv/ingest"
    assert root_of("/srv/ingest2/a.mp4", ["/srv/ingest"]) is None


def test_observer_choice():
    assert choose_observer("/", "polling") == "polling"
    assert choose_observer("/", "inotify") == "inotify"
    assert choose_observer(str(Path.cwd()), "auto") in ("inotify", "polling")


def test_settler_waits_for_close_and_quiet(tmp_path):
    s = Settler(make_settings(tmp_path), [str(tmp_path)])
    p = tmp_path / "a.mp4"
    p.write_bytes(b"x" * 10)
    t0 = time.monotonic()
    s.feed(RawEvent("created", str(p), at=t0))
    s.feed(RawEvent("modified", str(p), at=t0))
    assert s.due(t0 + 5) == []  # written but never closed: an open writer gets a long grace
    s.feed(RawEvent("modified", str(p), at=t0 + 5.0))
    s.feed(RawEvent("closed", str(p), at=t0 + 5.1))
    assert s.due(t0 + 5.5) == []  # closed, but not yet quiet for settle_seconds since the last write
    [d] = s.due(t0 + 6.1)
    assert d.kind == "complete" and d.path == str(p) and d.stat.st_size == 10


def test_settler_restarts_the_clock_when_the_file_changes(tmp_path):
    s = Settler(make_settings(tmp_path), [str(tmp_path)])
    p = tmp_path / "a.mp4"
    p.write_bytes(b"x")
    t0 = time.monotonic()
    s.feed(RawEvent("closed", str(p), at=t0))
    p.write_bytes(b"xy")  # grew behind our back (no event seen)
    assert s.due(t0 + 1.5) == []
    assert [d.path for d in s.due(t0 + 3.0)] == [str(p)]


def test_settler_partial_download_renamed(tmp_path):
    s = Settler(make_settings(tmp_path), [str(tmp_path)])
    part, final = tmp_path / "a.mp4.part", tmp_path / "a.mp4"
    part.write_bytes(b"data")
    t0 = time.monotonic()
    assert s.feed(RawEvent("closed", str(part), at=t0)) == [] and s.pending == {}
    os.rename(part, final)
    s.feed(RawEvent("moved", str(part), str(final), at=t0))
    assert [d.path for d in s.due(t0 + 1.1)] == [str(final)]


def test_settler_moves_deletes_and_manifests(tmp_path):
    s = Settler(make_settings(tmp_path), [str(tmp_path)])
    (tmp_path / "b.mp4").write_bytes(b"1")
    [d] = s.feed(RawEvent("moved", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")))
    assert (d.kind, d.path, d.dest) == ("moved", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"))
    [d] = s.feed(RawEvent("moved", str(tmp_path / "b.mp4"), str(tmp_path.parent / "elsewhere.mp4")))
    assert d.kind == "gone"
    [d] = s.feed(RawEvent("deleted", str(tmp_path / "montage.toml")))
    assert d.kind == "manifest_removed"
    m = tmp_path / "montage.toml"
    m.write_text("")
    t0 = time.monotonic()
    s.feed(RawEvent("closed", str(m), at=t0))
    assert s.manifest_wait(t0 + 0.04) == pytest.approx(Settler.MANIFEST_SETTLE - 0.04)
    assert s.due(t0 + 0.04) == []
    [d] = s.due(t0 + 0.15)  # manifests settle quickly once closed
    assert s.manifest_wait(t0 + 0.15) is None
    assert d.kind == "manifest"
    assert s.feed(RawEvent("closed", str(tmp_path / "notes.txt"))) == [] and s.pending == {}


def test_a_manifest_lets_the_closed_files_of_its_folder_skip_the_settle_wait(tmp_path):
    s = Settler(make_settings(tmp_path, settle_seconds=3.0), [str(tmp_path)])
    trip, other = tmp_path / "trip", tmp_path / "other"
    trip.mkdir()
    other.mkdir()
    for p in (trip / "a.mp4", trip / "sub" / "b.mp4", trip / "c.mp4", trip / "d.mp4", other / "e.mp4"):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    t0 = time.monotonic()
    s.feed(RawEvent("closed", str(trip / "a.mp4"), at=t0))
    s.feed(RawEvent("closed", str(trip / "sub" / "b.mp4"), at=t0))
    s.feed(RawEvent("modified", str(trip / "c.mp4"), at=t0))  # still being written
    s.add(str(trip / "d.mp4"), now=t0)  # found by a scan: nobody said it was closed
    s.feed(RawEvent("closed", str(other / "e.mp4"), at=t0))  # another folder
    (trip / "montage.toml").write_text('title = "x"\n')
    s.feed(RawEvent("closed", str(trip / "montage.toml"), at=t0 + 0.1))
    assert s.due(t0 + 0.15) == []  # the manifest itself has not settled yet
    decided = s.due(t0 + 0.25)
    # The closed files come first, then the manifest that waits for them.
    assert [(d.kind, d.path) for d in decided] == [
        ("complete", str(trip / "a.mp4")), ("complete", str(trip / "sub" / "b.mp4")),
        ("manifest", str(trip / "montage.toml"))]
    # A file closed after the manifest is complete at once too; the others keep their rules.
    s.feed(RawEvent("closed", str(trip / "c.mp4"), at=t0 + 1.0))
    assert [d.path for d in s.due(t0 + 1.05)] == [str(trip / "c.mp4")]
    assert sorted(d.path for d in s.due(t0 + 3.1)) == [str(other / "e.mp4"), str(trip / "d.mp4")]


def test_scan_finds_media_and_manifests_and_skips_the_rest(tmp_path):
    (tmp_path / "trip" / ".cache").mkdir(parents=True)
    for name in ("trip/a.mp4", "trip/montage.toml", "trip/.cache/b.mp4", "trip/c.mp4.part", "trip/notes.txt", "d.MOV"):
        (tmp_path / name).write_bytes(b"x")
    outside = tmp_path.parent / "outside.mp4"
    outside.write_bytes(b"x")
    os.symlink(outside, tmp_path / "link-out.mp4")
    os.symlink(tmp_path / "d.MOV", tmp_path / "trip" / "link-in.mov")
    os.symlink(tmp_path, tmp_path / "trip" / "loop")  # a link back up must not loop
    found = {(k, os.path.relpath(p, tmp_path)) for k, p, _ in scan_root(str(tmp_path), make_settings(tmp_path))}
    assert found == {("media", "trip/a.mp4"), ("manifest", "trip/montage.toml"), ("media", "d.MOV")}
    following = make_settings(tmp_path, follow_symlinks=True)
    found = {os.path.relpath(p, tmp_path) for _, p, _ in scan_root(str(tmp_path), following)}
    assert "trip/link-in.mov" in found and "link-out.mp4" not in found


@pytest.mark.slow
def test_inotify_limit_falls_back_to_polling(layout, tracks):
    """Hold every inotify instance this user may have: the daemon must poll instead, say so in
    status, and still see new files."""
    libc = ctypes.CDLL(None, use_errno=True)
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    fds = []
    try:
        for _ in range(limit + 1):
            fd = libc.inotify_init()
            if fd < 0:
                assert ctypes.get_errno() == errno.EMFILE
                break
            fds.append(fd)
        else:
            pytest.skip("could not exhaust inotify instances")
        d = DaemonProcess(layout["config"], layout["state"]).start()
    finally:
        for fd in fds:
            os.close(fd)
    try:
        [root] = d.status()["daemon"]["roots"]
        assert root["observer"] == "polling" and "inotify limit" in root["error"]
        shutil.copy(tracks[0], layout["root"] / "polled.wav")
        wait_until(lambda: d.status()["files"]["analyzed"] == 1, 60, what="file seen by polling")
        assert "inotify limit reached" in d.output()
    finally:
        d.stop()
