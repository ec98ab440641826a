"""The SQLite store: migrations, version check, corruption, WAL readers, features round trip."""

import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sqlite_utils

from montaged import store as store_mod
from montaged.analysis import Analysis
from montaged.errors import StoreError
from montaged.store import SCHEMA_VERSION, Store


def test_new_database_is_migrated_and_in_wal_mode(tmp_path):
    with Store(tmp_path) as s:
        assert s.query_one("PRAGMA user_version")[0] == SCHEMA_VERSION
        assert s.query_one("PRAGMA journal_mode")[0] == "wal"
        assert s.applied_migrations() == [name for name, _ in store_mod.MIGRATIONS]
        assert {"files", "jobs", "folders", "features", "meta"} <= set(sqlite_utils.Database(s.db_path).table_names())
        assert s.integrity_ok()
    # Opening again applies nothing.
    with Store(tmp_path) as s:
        assert s.migrate() == []


def test_check_constraints_after_every_migration_match_the_enums(tmp_path):
    """Read by sqlite-utils' own schema parser: every state and kind column has a CHECK that
    allows exactly the values of its enum in jobs.py."""
    from montaged.jobs import FileState, FolderState, JobKind, JobState

    Store(tmp_path).close()
    db = sqlite_utils.Database(tmp_path / "montaged.db")
    checks = {(table, c.column): sorted(c.options or []) for table in ("files", "jobs", "folders", "features")
              for c in db[table].checks}
    assert checks == {
        ("files", "state"): sorted(s.value for s in FileState),
        ("files", "kind"): ["audio", "video"],
        ("jobs", "state"): sorted(s.value for s in JobState),
        ("jobs", "kind"): sorted(k.value for k in JobKind),
        ("folders", "state"): sorted(s.value for s in FolderState),
        ("features", "kind"): ["audio", "video"],
    }
    assert db["features"].columns_dict["dir"] is str


def test_states_are_checked_by_the_database(tmp_path):
    with Store(tmp_path) as s, pytest.raises(sqlite3.IntegrityError):
        with s.atomic() as conn:
            conn.execute("INSERT INTO jobs (kind, state, path, created) VALUES ('analyze', 'exploded', 'x', 'now')")


def test_migration_from_previous_version_keeps_data_and_backs_up(tmp_path, monkeypatch):
    with Store(tmp_path) as s, s.atomic() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('k', '1')")
    new = store_mod.MIGRATIONS + [("0099_test_column", "ALTER TABLE meta ADD COLUMN note TEXT")]
    monkeypatch.setattr(store_mod, "MIGRATIONS", new)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(new))
    with Store(tmp_path) as s:
        assert s.query_one("PRAGMA user_version")[0] == len(new)
        assert s.query_one("SELECT value, note FROM meta WHERE key = 'k'")["value"] == "1"
        assert "0099_test_column" in s.applied_migrations()
    backup = tmp_path / f"montaged.db.before-v{len(new)}"
    assert backup.exists()
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(new) - 1


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    Store(tmp_path).close()
    new = store_mod.MIGRATIONS + [("0099_broken", "CREATE TABLE ok_table (x); INSERT INTO no_such_table VALUES (1)")]
    monkeypatch.setattr(store_mod, "MIGRATIONS", new)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(new))
    with pytest.raises(sqlite3.OperationalError):
        Store(tmp_path)
    monkeypatch.undo()
    with Store(tmp_path) as s:
        assert s.query_one("PRAGMA user_version")[0] == SCHEMA_VERSION
        assert "ok_table" not in sqlite_utils.Database(s.db_path).table_names()


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "montaged.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer montaged"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="newer montaged"):
        Store(tmp_path, readonly=True)


def test_corrupt_database_is_moved_aside(tmp_path, caplog):
    with Store(tmp_path) as s, s.atomic() as conn:
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(f"k{i}", "x" * 500) for i in range(200)])
    db = tmp_path / "montaged.db"
    data = bytearray(db.read_bytes())
    data[4096:12288] = b"\xde\xad" * 4096  # trash pages after the header
    db.write_bytes(bytes(data))
    with caplog.at_level("ERROR"), Store(tmp_path, check_integrity=True) as s:
        assert s.integrity_ok()
        assert s.query_one("SELECT COUNT(*) FROM meta")[0] == 0
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("montaged.db.corrupt-*"))


def test_readonly_open_of_missing_database(tmp_path):
    with pytest.raises(StoreError, match="no montaged database"):
        Store(tmp_path / "nope", readonly=True)


def test_atomic_nests_with_savepoints(tmp_path):
    with Store(tmp_path) as s:
        with s.atomic() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('outer', '1')")
            with pytest.raises(RuntimeError):
                with s.atomic() as inner:
                    inner.execute("INSERT INTO meta (key, value) VALUES ('inner', '1')")
                    raise RuntimeError
        assert [r["key"] for r in s.query("SELECT key FROM meta")] == ["outer"]


def test_wal_reader_in_another_process_reads_while_a_writer_commits(tmp_path):
    with Store(tmp_path) as writer:
        writer.set_meta("n", 0)
        reader_code = (
            "import sys, time; from montaged.store import Store\n"
            "s = Store(sys.argv[1], readonly=True)\n"
            "seen = {s.get_meta('n')}\n"
            "print('ready', flush=True)\n"
            "deadline = time.time() + 20\n"
            "while time.time() < deadline:\n"
            "    seen.add(s.get_meta('n'))\n"
            "    if 50 in seen: break\n"
            "print(len(seen), max(seen))\n"
        )
        reader = subprocess.Popen([sys.executable, "-c", reader_code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "ready"
        for i in range(1, 51):
            with writer.atomic() as conn:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'n'", (str(i),))
            time.sleep(0.005)
        out, _ = reader.communicate(timeout=30)
    count, top = map(int, out.split())
    assert reader.returncode == 0
    assert top == 50 and count >= 2  # saw intermediate commits and the last one, never blocked


def test_reader_sees_last_commit_not_open_transaction(tmp_path):
    with Store(tmp_path) as writer, Store(tmp_path, readonly=True) as reader:
        writer.set_meta("v", "committed")
        with writer.atomic() as conn:
            conn.execute("UPDATE meta SET value = '\"uncommitted\"' WHERE key = 'v'")
            result = {}
            t = threading.Thread(target=lambda: result.setdefault("v", reader.get_meta("v")))
            t.start()
            t.join(10)
            assert result["v"] == "committed"
        assert reader.get_meta("v") == "uncommitted"


def test_features_round_trip_with_memory_mapped_arrays(tmp_path):
    features = {"kind": "video", "duration": 3.0, "scenes": [{"start": 0.0, "end": 1.5, "signature": [0.1] * 16}], "ok": True, "none": None}
    arrays = {"motion": np.linspace(0, 1, 90, dtype=np.float32), "frame_times": np.arange(90) / 30.0}
    with Store(tmp_path) as s:
        s.put_features("ab" * 20, Analysis("video", features, arrays))
        assert s.has_features("ab" * 20)
        got = s.get_features("ab" * 20)
    assert got.kind == "video" and got.features == features
    assert isinstance(got.arrays["motion"], np.memmap)
    np.testing.assert_array_equal(got.arrays["motion"], arrays["motion"])
    np.testing.assert_array_equal(got.arrays["frame_times"], arrays["frame_times"])
    assert not list((tmp_path / "arrays").rglob("*.tmp"))


def test_release_features_only_when_unreferenced(tmp_path):
    digest = "cd" * 20
    with Store(tmp_path) as s:
        s.put_features(digest, Analysis("audio", {"kind": "audio"}, {"energy": np.zeros(10, np.float32)}))
        with s.atomic() as conn:
            conn.execute(
                "INSERT INTO files (rawpath, path, root, folder, size, mtime_ns, inode, dev, digest, state, first_seen, updated) "
                "VALUES (x'2f61', '/a', '/', '/', 1, 1, 1, 1, ?, 'analyzed', 'now', 'now')", (digest,))
        assert not s.release_features(digest)
        with s.atomic() as conn:
            conn.execute("UPDATE files SET state = 'gone'")
        assert s.release_features(digest)
        assert not s.has_features(digest)
        assert not (tmp_path / "arrays" / digest[:2] / digest).exists()
