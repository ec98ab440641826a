"""BLAKE3 digests, and stores from before them: features keyed by BLAKE2b digests are re-keyed
lazily, when their file is hashed again, and never analysed again."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import blake3
import numpy as np
import pytest

from montaged import jobs
from montaged import store as store_mod
from montaged.analysis import Analysis
from montaged.digest import file_digest, hash_file, is_legacy
from montaged.store import Store
from tests.helpers import DaemonProcess, wait_until


def b2(data: bytes) -> str:
    """The digest montaged keyed features by before BLAKE3."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def test_hash_file_both_ways_in_one_read(tmp_path):
    data = os.urandom(9 * 1024 * 1024 + 123)  # crosses the 4 MiB read size twice
    p = tmp_path / "clip.bin"
    p.write_bytes(data)
    want = "b3:" + blake3.blake3(data).hexdigest()
    assert file_digest(str(p)) == want
    assert hash_file(str(p)) == (want, None)
    assert hash_file(str(p), legacy=True) == (want, b2(data))
    assert not is_legacy(want) and is_legacy(b2(data)) and not is_legacy(None)
    empty = tmp_path / "empty"
    empty.touch()
    assert hash_file(str(empty), legacy=True) == ("b3:" + blake3.blake3(b"").hexdigest(), b2(b""))


LEGACY_FEATURES = {"kind": "audio", "duration": 3.0, "tempo": 100.0, "made_by": "the BLAKE2b-era montaged"}


def make_legacy_store(state: Path, files: list[tuple[Path, Path]], monkeypatch) -> dict[str, str]:
    """A schema-1 store as montaged wrote it before BLAKE3: every file analysed (one done job
    each) under its BLAKE2b digest, features in ``arrays/<xx>/<digest>/`` and a render proxy.
    Returns {path: legacy digest}."""
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 1)
    digests = {}
    with Store(state) as s:
        for path, root in files:
            st = os.stat(path)
            file_id, _ = jobs.record_file(s, str(path), str(root), st)
            legacy = b2(path.read_bytes())
            if legacy not in digests.values():
                assert jobs.set_digest(s, file_id, legacy, st) == "queued"
                (job,) = jobs.claim_jobs(s, 1, 60.0)
                arrays = {"energy": np.arange(30, dtype=np.float32) + len(digests)}
                jobs.finish_analysis(s, job, Analysis("audio", dict(LEGACY_FEATURES, n=len(digests)), arrays))
                s.proxy_path(legacy).write_bytes(b"proxy of " + legacy.encode())
            else:
                assert jobs.set_digest(s, file_id, legacy, st) == "analyzed"
            digests[str(path)] = legacy
        assert s.query_one("PRAGMA user_version")[0] == 1
    monkeypatch.undo()
    for legacy in set(digests.values()):
        # The layout the BLAKE2b-era store used.
        assert (state / "arrays" / legacy[:2] / legacy / "energy.npy").exists()
    return digests


def test_legacy_store_is_migrated_and_rekeyed_without_analysis(tmp_path, monkeypatch, tracks):
    root = tmp_path / "in"
    root.mkdir()
    a, copy, b = root / "a.wav", root / "copy-of-a.wav", root / "b.wav"
    shutil.copy(tracks[0], a)
    shutil.copy(tracks[0], copy)
    shutil.copy(tracks[1], b)
    state = tmp_path / "state"
    legacy = make_legacy_store(state, [(a, root), (copy, root), (b, root)], monkeypatch)

    with Store(state) as s:
        assert s.query_one("PRAGMA user_version")[0] == store_mod.SCHEMA_VERSION
        assert "0002_features_dir" in s.applied_migrations()
        assert (state / "montaged.db.before-v2").exists()
        assert s.has_legacy_digests()
        # Nothing is re-keyed until a file is hashed again.
        assert s.get_features(legacy[str(a)]).features["made_by"] == LEGACY_FEATURES["made_by"]

        (a_id, a_path, _), = [f for f in jobs.files_with_legacy_digests(s) if f[1] == str(a)]
        digests = hash_file(a_path, legacy=True)
        assert digests.legacy == legacy[str(a)]
        assert jobs.set_digest(s, a_id, digests.current, os.stat(a), legacy=digests.legacy) == "analyzed"

        # a and its copy now carry the BLAKE3 digest; the features, arrays, proxy and job moved with them.
        rows = {r["path"]: r["digest"] for r in s.query("SELECT path, digest FROM files")}
        assert rows == {str(a): digests.current, str(copy): digests.current, str(b): legacy[str(b)]}
        got = s.get_features(digests.current)
        assert got.features == dict(LEGACY_FEATURES, n=0)
        np.testing.assert_array_equal(got.arrays["energy"], np.arange(30, dtype=np.float32))
        assert s.proxy_path(digests.current).read_bytes() == b"proxy of " + legacy[str(a)].encode()
        assert s.get_features(legacy[str(a)]) is None
        assert s.has_features(digests.current)
        assert [(j["kind"], j["state"], j["digest"]) for j in s.query("SELECT * FROM jobs ORDER BY id")] == [
            ("analyze", "done", digests.current), ("analyze", "done", legacy[str(b)])]
        assert s.has_legacy_digests()  # b is still to be seen again

        # b was changed while montaged was down: its old features do not apply; it is analysed again.
        shutil.copy(tracks[2], b)
        st = os.stat(b)
        b_id, needs = jobs.record_file(s, str(b), str(root), st)
        assert needs
        new_b = hash_file(str(b), legacy=True)
        assert jobs.set_digest(s, b_id, new_b.current, st, legacy=new_b.legacy) == "queued"
        assert s.query_one("SELECT COUNT(*) FROM jobs WHERE kind = 'analyze' AND state = 'queued'")[0] == 1
        assert not s.has_legacy_digests()  # b's old features were released: no file has that content
        assert not (state / "arrays" / legacy[str(b)][:2] / legacy[str(b)]).exists()
        # a's features kept their folder (named by the legacy digest), which is not released.
        assert (state / "arrays" / legacy[str(a)][:2] / legacy[str(a)] / "energy.npy").exists()

        # Releasing the re-keyed features removes that folder.
        with s.atomic() as conn:
            conn.execute("UPDATE files SET state = 'gone' WHERE digest = ?", (digests.current,))
        assert s.release_features(digests.current)
        assert not (state / "arrays" / legacy[str(a)][:2] / legacy[str(a)]).exists()


def test_a_queued_legacy_analysis_is_joined_not_duplicated(tmp_path, monkeypatch, tracks):
    root = tmp_path / "in"
    root.mkdir()
    a = root / "a.wav"
    shutil.copy(tracks[0], a)
    state = tmp_path / "state"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 1)
    with Store(state) as s:
        a_id, _ = jobs.record_file(s, str(a), str(root), os.stat(a))
        assert jobs.set_digest(s, a_id, b2(a.read_bytes()), os.stat(a)) == "queued"
    monkeypatch.undo()
    copy = root / "copy.wav"
    shutil.copy(a, copy)
    with Store(state) as s:
        c_id, _ = jobs.record_file(s, str(copy), str(root), os.stat(copy))
        d = hash_file(str(copy), legacy=True)
        assert jobs.set_digest(s, c_id, d.current, os.stat(copy), legacy=d.legacy) == "queued"
        # One analysis for the content, still under the legacy digest until it is done.
        assert [(j["state"], j["digest"]) for j in s.query("SELECT * FROM jobs")] == [("queued", d.legacy)]
        assert {r["digest"] for r in s.query("SELECT digest FROM files")} == {d.legacy}


def test_reader_of_a_store_not_yet_migrated(tmp_path, monkeypatch, tracks):
    """`montaged inspect` before the upgraded daemon has run: schema 1 has no features.dir."""
    root = tmp_path / "in"
    root.mkdir()
    a = root / "a.wav"
    shutil.copy(tracks[0], a)
    legacy = make_legacy_store(tmp_path / "state", [(a, root)], monkeypatch)
    with Store(tmp_path / "state", readonly=True) as s:
        assert s.version == 1 and s.has_legacy_digests()
        assert s.get_features(legacy[str(a)]).features["made_by"] == LEGACY_FEATURES["made_by"]
    with sqlite3.connect(tmp_path / "state" / "montaged.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # the reader changed nothing


@pytest.mark.slow
def test_daemon_upgrade_keeps_every_analysis(layout, tracks, monkeypatch):
    """A real daemon started on a store from before BLAKE3: unchanged files keep their analyses
    (re-keyed, no job), a new copy of old content is recognised, a changed file is analysed."""
    root = layout["root"]
    kept = [root / "a.wav", root / "sub" / "b.wav"]
    changed = root / "changed.wav"
    (root / "sub").mkdir()
    shutil.copy(tracks[0], kept[0])
    shutil.copy(tracks[1], kept[1])
    shutil.copy(tracks[2], changed)
    legacy = make_legacy_store(layout["state"], [(p, root) for p in [*kept, changed]], monkeypatch)
    # While montaged was being upgraded: a copy of a.wav arrived, and changed.wav was rewritten.
    copy = root / "copy-of-a.wav"
    shutil.copy(kept[0], copy)
    shutil.copy(tracks[3], changed)

    with DaemonProcess(layout["config"], layout["state"]) as d:
        def settled():
            with Store(layout["state"], readonly=True) as s:
                rows = s.query("SELECT path, digest, state FROM files")
                return rows if len(rows) == 4 and all(r["state"] == "analyzed" and r["digest"].startswith("b3:") for r in rows) else None

        wait_until(settled, 90, what="every file analysed under a BLAKE3 digest")
        with Store(layout["state"], readonly=True) as s:
            digests = {r["path"]: r["digest"] for r in s.query("SELECT path, digest FROM files")}
            for p in [*kept, copy]:
                assert digests[str(p)] == file_digest(str(p))
                # The analysis made before the upgrade, not a new one.
                assert s.get_features(digests[str(p)]).features["made_by"] == LEGACY_FEATURES["made_by"], p
            assert s.get_features(digests[str(changed)]).features.get("made_by") is None  # really analysed
            analyses = [j for j in s.query("SELECT * FROM jobs WHERE kind = 'analyze' ORDER BY id")]
            # Three from before the upgrade, one for the changed file; nothing else.
            assert [j["state"] for j in analyses] == ["done"] * 4
            assert analyses[-1]["digest"] == digests[str(changed)]
            assert not s.has_legacy_digests()
        assert "re-keying 2 file(s) from BLAKE2b to BLAKE3" in d.output()
