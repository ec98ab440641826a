"""The state store: one SQLite database plus a tree of ``.npy`` arrays, under the state directory.

- WAL mode, ``synchronous=NORMAL`` and a busy timeout: the daemon writes while ``montaged status``
  and friends read from their own connections without blocking it.
- Schema changes are named migrations, each applied in one transaction and recorded in
  ``_migrations``; ``PRAGMA user_version`` holds the schema version so a database written by a
  newer montaged is refused instead of being misread. The file is backed up before migrating.
- Features are keyed by the content digest of the file (``b3:…``, see digest.py): small
  structured features are msgpack blobs in ``features``; dense series are ``.npy`` files under
  ``arrays/<xx>/<digest>/``, written to a temporary name and ``os.replace``d, and read back with
  ``numpy.load(mmap_mode="r")``. Features re-keyed from a legacy BLAKE2b digest keep their folder
  (``features.dir``).

Only the daemon's main process writes (``montaged retry`` is the one other writer, and it does so
in a single short transaction). Workers never open the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import msgpack

from montaged.analysis import ANALYSIS_VERSION, Analysis
from montaged.errors import StoreError

log = logging.getLogger("montaged.store")

DB_NAME = "montaged.db"
ARRAYS_DIR = "arrays"


def utcnow() -> str:
    """Timestamps in the database and the JSON outputs: ISO 8601, UTC, second precision."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def path_text(path: str | os.PathLike) -> str:
    """How a path is shown and stored as text. File names are bytes on Linux; a name that is not
    valid UTF-8 is shown with ``\\xNN`` escapes (the exact bytes live in the ``rawpath`` column)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def path_raw(path: str | os.PathLike) -> bytes:
    return os.fsencode(path)


# --------------------------------------------------------------------------------------------
# Schema. Append new migrations; never edit one that has shipped.

_STATE_CHECK = {
    "file": "('pending', 'queued', 'running', 'analyzed', 'failed', 'quarantined', 'gone')",
    "job": "('queued', 'running', 'done', 'failed', 'quarantined')",
    "job_kind": "('analyze', 'render', 'proxy')",
    "folder": "('waiting', 'rendering', 'ready', 'failed')",
}

MIGRATION_0001 = f"""
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    rawpath BLOB NOT NULL UNIQUE,          -- exact file name bytes
    path TEXT NOT NULL,                    -- display form (see path_text)
    root TEXT NOT NULL,
    folder TEXT NOT NULL,                  -- display form of the parent folder
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    digest TEXT,
    kind TEXT CHECK (kind IN ('video', 'audio')),
    state TEXT NOT NULL CHECK (state IN {_STATE_CHECK["file"]}),
    error TEXT,
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX files_digest ON files(digest);
CREATE INDEX files_folder ON files(folder);
CREATE INDEX files_state ON files(state);

CREATE TABLE features (
    digest TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('video', 'audio')),
    version INTEGER NOT NULL,
    data BLOB NOT NULL,                    -- msgpack of Analysis.features
    arrays TEXT NOT NULL,                  -- JSON list of array names under arrays/<digest>/
    created TEXT NOT NULL
);

CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    rawpath BLOB NOT NULL UNIQUE,
    path TEXT NOT NULL,
    root TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN {_STATE_CHECK["folder"]}),
    manifest_mtime_ns INTEGER,
    preview TEXT,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',   -- JSON list of strings
    render_after REAL,                     -- debounce: render no earlier than this (unix time)
    updated TEXT NOT NULL
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN {_STATE_CHECK["job_kind"]}),
    state TEXT NOT NULL CHECK (state IN {_STATE_CHECK["job"]}),
    file_id INTEGER REFERENCES files(id) ON DELETE SET NULL,
    folder_id INTEGER REFERENCES folders(id) ON DELETE SET NULL,
    path TEXT NOT NULL,                    -- display path of the input (file or folder)
    digest TEXT,
    priority INTEGER NOT NULL DEFAULT 0,   -- higher first: files a waiting manifest needs
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    lease_until REAL,                      -- unix time; a running job past it was abandoned
    not_before REAL NOT NULL DEFAULT 0,    -- retry back-off
    progress REAL,
    eta_s REAL,
    payload BLOB                           -- msgpack parameters (e.g. a render's plan)
);
CREATE INDEX jobs_claim ON jobs(state, priority DESC, id);
CREATE INDEX jobs_digest ON jobs(digest);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL                    -- JSON
);
"""

# BLAKE3 digests (``b3:…``) replace BLAKE2b ones. Features are re-keyed lazily, when their file is
# seen again (digest.py, jobs.set_digest); a re-keyed row keeps its arrays folder, named here, so
# re-keying is one transaction and never moves a file that a render may be reading.
MIGRATION_0002 = """
ALTER TABLE features ADD COLUMN dir TEXT;  -- folder under arrays/ when not the digest's own (NULL)
"""

# (name, SQL). The schema version is the number of migrations applied.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", MIGRATION_0001),
    ("0002_features_dir", MIGRATION_0002),
]
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """An open state directory. Use as a context manager or call :meth:`close`."""

    def __init__(self, state_dir: str | os.PathLike, *, readonly: bool = False, check_integrity: bool = False):
        self.state_dir = Path(state_dir)
        self.readonly = readonly
        self.db_path = self.state_dir / DB_NAME
        self.arrays_dir = self.state_dir / ARRAYS_DIR
        if readonly:
            if not self.db_path.exists():
                raise StoreError(f"no montaged database in {self.state_dir} (has the daemon ever run with this state directory?)")
            self.conn = self._connect(f"file:{self.db_path}?mode=ro", uri=True)
            # Readers never migrate: an older (or still being created) schema reads as empty.
            self.version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(self.version)
        else:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.arrays_dir.mkdir(exist_ok=True)
            if check_integrity and self.db_path.exists():
                self._set_aside_if_corrupt()
            self.conn = self._connect(str(self.db_path))
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.migrate()
            self.version = SCHEMA_VERSION
        self._depth = 0

    # ---- connection -------------------------------------------------------------------------
    @staticmethod
    def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see atomic()), so that claiming
        # work is one BEGIN IMMEDIATE transaction and nothing is left half-committed.
        conn = sqlite3.connect(target, uri=uri, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so two
        writers never both read-then-write). Nested calls become savepoints."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute(f"SAVEPOINT sp{self._depth}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            else:
                self.conn.execute(f"ROLLBACK TO sp{self._depth}")
                self.conn.execute(f"RELEASE sp{self._depth}")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(f"RELEASE sp{self._depth}")

    @property
    def current(self) -> bool:
        """Is the schema the one this version writes? (False while a daemon is creating it.)"""
        return self.version == SCHEMA_VERSION

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    # ---- schema -----------------------------------------------------------------------------
    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path} was written by a newer montaged (schema version {version}; this "
                f"version knows up to {SCHEMA_VERSION}). Upgrade montaged, or move the state "
                f"directory aside to start afresh."
            )

    def migrate(self) -> list[str]:
        """Apply pending migrations, each in its own transaction. Returns their names."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        pending = MIGRATIONS[version:]
        if not pending:
            return []
        if version > 0:
            backup = self.db_path.with_name(f"{DB_NAME}.before-v{SCHEMA_VERSION}")
            log.info("backing up %s to %s before migrating from schema %d", self.db_path, backup, version)
            with contextlib.closing(sqlite3.connect(backup)) as target:
                self.conn.backup(target)
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        applied = []
        for offset, (name, sql) in enumerate(pending, start=version + 1):
            # executescript would COMMIT implicitly; run the statements inside our transaction.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, utcnow()))
                self.conn.execute(f"PRAGMA user_version = {offset}")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            log.info("applied migration %s", name)
            applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM _migrations ORDER BY name")]

    def _set_aside_if_corrupt(self) -> None:
        problem = None
        try:
            with contextlib.closing(sqlite3.connect(self.db_path, timeout=30.0)) as conn:
                result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if result != ["ok"]:
                problem = "; ".join(result[:3])
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        if problem is None:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.db_path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        log.error(
            "the state database %s is corrupt (%s); moved it to %s and starting with a new one: "
            "files will be analysed again",
            self.db_path, problem, aside,
        )
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.db_path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))

    def integrity_ok(self) -> bool:
        return [r[0] for r in self.query("PRAGMA integrity_check")] == ["ok"]

    # ---- meta (small JSON values: daemon info, root states) ----------------------------------
    def set_meta(self, key: str, value) -> None:
        import json

        with self.atomic():
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_meta(self, key: str, default=None):
        import json

        row = self.query_one("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else default

    # ---- features -----------------------------------------------------------------------------
    @staticmethod
    def _dir_name(digest: str) -> str:
        """A digest's own arrays folder name: ``b3:ab12…`` -> ``b3-ab12…``; legacy ones as they are."""
        return digest.replace(":", "-")

    def _folder(self, name: str) -> Path:
        hexpart = name.rpartition("-")[2]
        return self.arrays_dir / hexpart[:2] / name

    @property
    def _dir_column(self) -> str:
        # A reader may open a store the daemon has not migrated yet (schema 1: no features.dir).
        return "dir" if self.version >= 2 else "NULL AS dir"

    def _array_dir(self, digest: str) -> Path:
        row = self.query_one(f"SELECT {self._dir_column} FROM features WHERE digest = ?", (digest,))
        return self._folder(row["dir"] if row is not None and row["dir"] else self._dir_name(digest))

    def proxy_path(self, digest: str) -> Path:
        """Where the render proxy of a video lives: beside its arrays, so it is released with them."""
        return self._array_dir(digest) / "proxy.mp4"

    def has_features(self, digest: str) -> bool:
        row = self.query_one("SELECT version FROM features WHERE digest = ?", (digest,))
        return row is not None and row["version"] == ANALYSIS_VERSION

    def put_features(self, digest: str, analysis: Analysis) -> None:
        """Store an analysis. Arrays are written (atomically) before the row that names them, so
        a row never points at a missing array; a crash in between leaves only an orphan folder
        that the next put overwrites."""
        import json

        folder = self._array_dir(digest)
        folder.mkdir(parents=True, exist_ok=True)
        # A kill -9 in the middle of write_array leaves its temporary file; the job is then
        # redone and lands here again. Only the daemon's main thread writes arrays: no temporary
        # file in this folder belongs to a write in progress.
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for name, array in analysis.arrays.items():
            write_array(folder / f"{name}.npy", array)
        data = msgpack.packb(analysis.features, use_bin_type=True)
        with self.atomic():
            self.conn.execute(
                "INSERT INTO features (digest, kind, version, data, arrays, created) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET kind = excluded.kind, version = excluded.version, "
                "data = excluded.data, arrays = excluded.arrays, created = excluded.created",
                (digest, analysis.kind, ANALYSIS_VERSION, data, json.dumps(sorted(analysis.arrays)), utcnow()),
            )

    def get_features(self, digest: str) -> Analysis | None:
        """The stored analysis, its arrays memory-mapped read-only (nothing is read until used)."""
        import json

        import numpy as np

        row = self.query_one(f"SELECT kind, data, arrays, {self._dir_column} FROM features WHERE digest = ?", (digest,))
        if row is None:
            return None
        features = msgpack.unpackb(row["data"], raw=False)
        folder = self._folder(row["dir"] or self._dir_name(digest))
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in json.loads(row["arrays"])}
        return Analysis(kind=row["kind"], features=features, arrays=arrays)

    def release_features(self, digest: str) -> bool:
        """Drop the features of ``digest`` if no file that still exists refers to it."""
        with self.atomic():
            used = self.query_one("SELECT 1 FROM files WHERE digest = ? AND state != 'gone' LIMIT 1", (digest,))
            if used:
                return False
            row = self.query_one("SELECT dir FROM features WHERE digest = ?", (digest,))
            name = row["dir"] if row is not None and row["dir"] else self._dir_name(digest)
            self.conn.execute("DELETE FROM features WHERE digest = ?", (digest,))
            # A legacy digest's folder now belongs to the features re-keyed from it.
            owned = self.query_one("SELECT 1 FROM features WHERE dir = ? LIMIT 1", (name,))
        if owned is None:
            shutil.rmtree(self._folder(name), ignore_errors=True)
        return True

    def has_legacy_digests(self) -> bool:
        """Are there features still keyed by a digest from before BLAKE3 (see digest.py)?"""
        return self.query_one("SELECT 1 FROM features WHERE substr(digest, 1, 3) != 'b3:' LIMIT 1") is not None

    def rekey(self, old: str, new: str) -> bool:
        """Give everything keyed by the legacy digest ``old`` the digest ``new`` of the same
        content: its features (which keep their arrays folder), the files and the jobs.

        The caller has checked that ``old`` and ``new`` were computed from the same bytes and that
        no analysis of ``old`` is queued or running. Returns whether features moved; when ``new``
        already has features of its own, the old ones are left for :meth:`release_features`.
        """
        with self.atomic() as conn:
            moved = False
            if self.query_one("SELECT 1 FROM features WHERE digest = ?", (new,)) is None:
                moved = conn.execute(
                    "UPDATE features SET digest = ?, dir = COALESCE(dir, ?) WHERE digest = ?",
                    (new, self._dir_name(old), old),
                ).rowcount > 0
            conn.execute("UPDATE files SET digest = ? WHERE digest = ?", (new, old))
            conn.execute("UPDATE jobs SET digest = ? WHERE digest = ?", (new, old))
        return moved


def write_array(path: Path, array) -> None:
    """Write ``array`` to ``path`` so that readers see the old file or the new one, never half."""
    import numpy as np

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` with a temporary path next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (no semicolons inside our statements' literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
