"""File, job and folder states, and every transition between them, in one place.

States are ``str`` enums stored in SQLite columns with CHECK constraints. Each function below is
one transition and runs in one transaction; the daemon's main loop calls them, nothing else writes
these columns (``montaged retry`` calls :func:`retry_jobs`).

Attempts: a job is charged an attempt when *it* fails (an error, its worker crashing, its
timeout). A job that was running when the daemon itself stopped or crashed is requeued uncharged
on the next start: the daemon's death is not the job's fault (workers are separate processes), and
charging it would quarantine good files after a few power cuts. Errors that retrying cannot fix
(``MediaError``: not a media file, ...) fail the job at once; other errors are retried with
exponential back-off and quarantined after ``max_attempts``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from montaged.store import Store, path_raw, path_text, utcnow

log = logging.getLogger("montaged.jobs")


class FileState(str, enum.Enum):
    PENDING = "pending"  # seen and complete; digest being computed
    QUEUED = "queued"  # waiting for its analysis job
    RUNNING = "running"
    ANALYZED = "analyzed"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    GONE = "gone"  # deleted (its features are released when nothing else refers to them)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


class JobKind(str, enum.Enum):
    ANALYZE = "analyze"
    RENDER = "render"
    PROXY = "proxy"


class FolderState(str, enum.Enum):
    WAITING = "waiting"  # manifest seen, inputs not all analysed (or debouncing)
    RENDERING = "rendering"
    READY = "ready"
    FAILED = "failed"


ACTIVE_JOB_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
WAITING_PRIORITY = 10  # analysis of a file that a waiting manifest needs goes first


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    path: str
    digest: str | None
    file_id: int | None
    folder_id: int | None
    attempts: int
    payload: dict | None

    @classmethod
    def from_row(cls, row) -> "Job":
        payload = msgpack.unpackb(row["payload"], raw=False) if row["payload"] else None
        return cls(row["id"], row["kind"], row["state"], row["path"], row["digest"], row["file_id"], row["folder_id"], row["attempts"], payload)


# ------------------------------------------------------------------------------------------------
# Files


def record_file(store: Store, path: str, root: str, st: os.stat_result) -> tuple[int, bool]:
    """A complete file was seen. Returns (file id, needs_digest). A file whose size, mtime and
    inode are unchanged since it was last recorded needs nothing."""
    raw = path_raw(path)
    now = utcnow()
    with store.atomic() as conn:
        row = conn.execute("SELECT id, size, mtime_ns, inode, state, digest FROM files WHERE rawpath = ?", (raw,)).fetchone()
        if row and row["state"] != FileState.GONE and (row["size"], row["mtime_ns"], row["inode"]) == (st.st_size, st.st_mtime_ns, st.st_ino) and row["digest"]:
            return row["id"], False
        if row:
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, inode = ?, dev = ?, state = ?, error = NULL, updated = ? WHERE id = ?",
                (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, FileState.PENDING.value, now, row["id"]),
            )
            return row["id"], True
        cur = conn.execute(
            "INSERT INTO files (rawpath, path, root, folder, size, mtime_ns, inode, dev, state, first_seen, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (raw, path_text(path), path_text(root), path_text(os.path.dirname(path)), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, FileState.PENDING.value, now, now),
        )
        return cur.lastrowid, True


def set_digest(store: Store, file_id: int, digest: str, st: os.stat_result | None = None, *,
               legacy: str | None = None) -> str:
    """The file's content digest is known: mark it analysed if its features exist, else join or
    create the analysis job for that digest. Returns the file's new state.

    ``st`` is the stat taken before hashing: if the file changed meanwhile, the row keeps the
    newer stat and will be hashed again, so a digest is never paired with other content.

    ``legacy``: the file's BLAKE2b digest, computed from the same read (digest.hash_file), while
    the store still keys features by such digests. Whatever the store keeps under it (features,
    other copies of the content, jobs) is re-keyed to ``digest``, so the file is not analysed
    again. If an analysis of the legacy digest is queued or running, the file joins it under the
    legacy digest instead, and is re-keyed when it is next hashed."""
    now = utcnow()
    released: list[str] = []
    with store.atomic() as conn:
        row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None or row["state"] == FileState.GONE:
            return FileState.GONE.value
        if st is not None and (row["size"], row["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            return row["state"]
        if legacy is not None and legacy != digest:
            active = conn.execute(
                f"SELECT 1 FROM jobs WHERE kind = 'analyze' AND digest = ? AND state IN {ACTIVE_JOB_STATES} LIMIT 1",
                (legacy,),
            ).fetchone()
            if active is not None:
                digest = legacy
            else:
                if store.rekey(legacy, digest):
                    log.info("features of %s re-keyed from BLAKE2b %s to %s (not analysed again)", row["path"], legacy, digest,
                             extra={"path": row["path"]})
                released.append(legacy)  # whatever is still keyed by it (nothing, if all moved)
            row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row["digest"] and row["digest"] != digest:
            released.append(row["digest"])
        if store.has_features(digest):
            feat = conn.execute("SELECT kind FROM features WHERE digest = ?", (digest,)).fetchone()
            state, kind = FileState.ANALYZED.value, feat["kind"]
        else:
            kind = None
            job = conn.execute(
                f"SELECT id, state FROM jobs WHERE kind = 'analyze' AND digest = ? AND state IN {ACTIVE_JOB_STATES} LIMIT 1",
                (digest,),
            ).fetchone()
            if job is None:
                priority = WAITING_PRIORITY if _folder_waiting(conn, row["folder"]) else 0
                conn.execute(
                    "INSERT INTO jobs (kind, state, file_id, path, digest, priority, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (JobKind.ANALYZE.value, JobState.QUEUED.value, file_id, row["path"], digest, priority, now),
                )
                state = FileState.QUEUED.value
            else:
                state = FileState.RUNNING.value if job["state"] == JobState.RUNNING else FileState.QUEUED.value
        conn.execute("UPDATE files SET digest = ?, kind = COALESCE(?, kind), state = ?, error = NULL, updated = ? WHERE id = ?", (digest, kind, state, now, file_id))
    for old in released:
        store.release_features(old)
    return state


def _folder_waiting(conn, folder_text: str) -> bool:
    # A file belongs to a folder with a manifest if that folder is its parent or an ancestor.
    rows = conn.execute("SELECT path FROM folders WHERE state = ?", (FolderState.WAITING.value,)).fetchall()
    return any(folder_text == r["path"] or folder_text.startswith(r["path"].rstrip("/") + "/") for r in rows)


def _live_files_at_or_under(conn, raw: bytes) -> list:
    """Rows of the files (not gone) at ``raw``, or anywhere under it when it is a folder.
    Compared as bytes with a trailing slash, so /trip does not match /trip2."""
    prefix = raw.rstrip(b"/") + b"/"
    return conn.execute(
        "SELECT * FROM files WHERE (rawpath = ? OR substr(rawpath, 1, ?) = ?) AND state != 'gone'",
        (raw, len(prefix), prefix),
    ).fetchall()


def file_gone(store: Store, path: str) -> list[str]:
    """The file was deleted. Marks it (and everything under it, if it was a folder) gone and
    cancels queued jobs nobody else needs. Features are kept for a while (see
    :func:`forget_gone`): the "deletion" may be half of a move the watcher saw as two events.
    Returns the paths."""
    now = utcnow()
    with store.atomic() as conn:
        rows = _live_files_at_or_under(conn, path_raw(path))
        for row in rows:
            conn.execute("UPDATE files SET state = 'gone', updated = ? WHERE id = ?", (now, row["id"]))
        for digest in {r["digest"] for r in rows if r["digest"]}:
            still = conn.execute("SELECT 1 FROM files WHERE digest = ? AND state != 'gone' LIMIT 1", (digest,)).fetchone()
            if not still:
                conn.execute(
                    "UPDATE jobs SET state = 'failed', error = 'file deleted before it was analysed', finished = ? "
                    "WHERE kind = 'analyze' AND digest = ? AND state = 'queued'",
                    (now, digest),
                )
    return [r["path"] for r in rows]


def forget_gone(store: Store, older_than: float) -> int:
    """Release the features of content that no file has had for ``older_than`` seconds, and drop
    the rows of files deleted that long ago. Returns how many feature sets were released."""
    import datetime as dt

    cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = store.query(
        "SELECT digest FROM files WHERE state = 'gone' AND digest IS NOT NULL GROUP BY digest HAVING MAX(updated) <= ?",
        (cutoff,),
    )
    released = sum(1 for r in rows if store.release_features(r["digest"]))
    with store.atomic() as conn:
        conn.execute("DELETE FROM files WHERE state = 'gone' AND updated <= ?", (cutoff,))
    return released


def file_moved(store: Store, src: str, dest: str, root: str) -> bool:
    """A rename or move inside the watch roots: the row follows the file, nothing is re-analysed.
    Returns False when the source was not known (the destination is then handled as new)."""
    src_raw, dest_raw = path_raw(src), path_raw(dest)
    now = utcnow()
    with store.atomic() as conn:
        rows = _live_files_at_or_under(conn, src_raw)
        if not rows:
            return False
        for row in rows:
            new_raw = dest_raw + bytes(row["rawpath"])[len(src_raw):]
            new = os.fsdecode(new_raw)
            # A gone row already holding the destination name would violate UNIQUE: drop it.
            conn.execute("DELETE FROM files WHERE rawpath = ? AND id != ?", (new_raw, row["id"]))
            conn.execute(
                "UPDATE files SET rawpath = ?, path = ?, root = ?, folder = ?, updated = ? WHERE id = ?",
                (new_raw, path_text(new), path_text(root), path_text(os.path.dirname(new)), now, row["id"]),
            )
            conn.execute("UPDATE jobs SET path = ? WHERE file_id = ? AND state IN ('queued', 'running')", (path_text(new), row["id"]))
    return True


def known_files(store: Store, root: str) -> dict[str, tuple[int, int, int]]:
    """{path: (size, mtime_ns, inode)} of the files recorded under ``root`` that are not gone."""
    raw = path_raw(root).rstrip(b"/") + b"/"
    rows = store.query(
        "SELECT rawpath, size, mtime_ns, inode FROM files WHERE substr(rawpath, 1, ?) = ? AND state != 'gone'",
        (len(raw), raw),
    )
    return {os.fsdecode(bytes(r["rawpath"])): (r["size"], r["mtime_ns"], r["inode"]) for r in rows}


def files_with_legacy_digests(store: Store) -> list[tuple[int, str, tuple[int, int, int]]]:
    """Files still keyed by a BLAKE2b digest (from before BLAKE3): (id, path, (size, mtime_ns,
    inode) as recorded). The daemon hashes them again at start-up, both ways, to re-key them."""
    rows = store.query(
        "SELECT id, rawpath, size, mtime_ns, inode FROM files "
        "WHERE state != 'gone' AND digest IS NOT NULL AND substr(digest, 1, 3) != 'b3:'"
    )
    return [(r["id"], os.fsdecode(bytes(r["rawpath"])), (r["size"], r["mtime_ns"], r["inode"])) for r in rows]


def files_needing_digest(store: Store) -> list[tuple[int, str]]:
    """Files left ``pending`` (e.g. by a crash while hashing): hash them again."""
    rows = store.query("SELECT id, rawpath FROM files WHERE state = 'pending'")
    return [(r["id"], os.fsdecode(bytes(r["rawpath"]))) for r in rows]


# ------------------------------------------------------------------------------------------------
# Jobs


PROXY_PRIORITY = -10  # after every analysis: proxies are made in idle time


def enqueue_proxy(store: Store, job: Job) -> bool:
    """Ask for a render proxy of the video just analysed by ``job`` (once per content)."""
    with store.atomic() as conn:
        exists = conn.execute(
            "SELECT 1 FROM jobs WHERE kind = 'proxy' AND digest = ? AND state IN ('queued', 'running', 'done') LIMIT 1", (job.digest,)
        ).fetchone()
        if exists:
            return False
        conn.execute(
            "INSERT INTO jobs (kind, state, file_id, path, digest, priority, created) VALUES ('proxy', 'queued', ?, ?, ?, ?, ?)",
            (job.file_id, job.path, job.digest, PROXY_PRIORITY, utcnow()),
        )
    return True


def work_available(store: Store) -> bool:
    """Is any queued job due? A cheap read (index on state) before taking the write lock."""
    return store.query_one("SELECT 1 FROM jobs WHERE state = 'queued' AND not_before <= ? LIMIT 1", (time.time(),)) is not None


def claim_jobs(store: Store, limit: int, lease_seconds: float, kinds: tuple[str, ...] = ("analyze", "render", "proxy")) -> list[Job]:
    """Atomically move up to ``limit`` queued jobs to running and return them: one UPDATE …
    RETURNING inside BEGIN IMMEDIATE, so a job can never be claimed twice."""
    if limit <= 0:
        return []
    now = time.time()
    marks = ",".join("?" * len(kinds))
    with store.atomic() as conn:
        rows = conn.execute(
            f"UPDATE jobs SET state = 'running', started = ?, lease_until = ?, progress = 0.0, eta_s = NULL, error = NULL "
            f"WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND not_before <= ? AND kind IN ({marks}) "
            f"ORDER BY priority DESC, id LIMIT ?) RETURNING *",
            (utcnow(), now + lease_seconds, now, *kinds, limit),
        ).fetchall()
        jobs = sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)
        for job in jobs:
            if job.kind == JobKind.ANALYZE and job.digest:
                conn.execute("UPDATE files SET state = 'running', updated = ? WHERE digest = ? AND state IN ('queued', 'pending')", (utcnow(), job.digest))
    return jobs


def renew_leases(store: Store, job_ids: list[int], lease_seconds: float) -> None:
    if not job_ids:
        return
    with store.atomic() as conn:
        conn.execute(
            f"UPDATE jobs SET lease_until = ? WHERE state = 'running' AND id IN ({','.join('?' * len(job_ids))})",
            (time.time() + lease_seconds, *job_ids),
        )


def set_progress(store: Store, updates: dict[int, tuple[float, float | None]]) -> None:
    """Record {job id: (fraction, eta seconds)} for ``status``."""
    if not updates:
        return
    with store.atomic() as conn:
        conn.executemany(
            "UPDATE jobs SET progress = ?, eta_s = ? WHERE id = ? AND state = 'running'",
            [(fraction, eta, job_id) for job_id, (fraction, eta) in updates.items()],
        )


def finish_analysis(store: Store, job: Job, analysis) -> None:
    """Store the features (arrays first) and mark the job and every file with this digest done."""
    store.put_features(job.digest, analysis)
    now = utcnow()
    with store.atomic() as conn:
        conn.execute("UPDATE jobs SET state = 'done', finished = ?, progress = 1.0, eta_s = 0, lease_until = NULL, error = NULL WHERE id = ?", (now, job.id))
        conn.execute(
            "UPDATE files SET state = 'analyzed', kind = ?, error = NULL, updated = ? WHERE digest = ? AND state IN ('pending', 'queued', 'running', 'failed', 'quarantined')",
            (analysis.kind, now, job.digest),
        )


def finish_job(store: Store, job: Job) -> None:
    with store.atomic() as conn:
        conn.execute("UPDATE jobs SET state = 'done', finished = ?, progress = 1.0, eta_s = 0, lease_until = NULL, error = NULL WHERE id = ?", (utcnow(), job.id))


def fail_job(store: Store, job: Job, error: str, *, retryable: bool, max_attempts: int, backoff: float) -> str:
    """Charge an attempt to ``job``; requeue it with back-off, or end it failed/quarantined.
    Returns the job's new state."""
    now = time.time()
    with store.atomic() as conn:
        row = conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job.id,)).fetchone()
        attempts = (row["attempts"] if row else job.attempts) + 1
        if retryable and attempts < max_attempts:
            state = JobState.QUEUED.value
            delay = backoff * (2 ** (attempts - 1))
            conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = ?, error = ?, not_before = ?, lease_until = NULL, progress = NULL, eta_s = NULL WHERE id = ?",
                (attempts, error, now + delay, job.id),
            )
            file_state = FileState.QUEUED.value
        else:
            state = JobState.QUARANTINED.value if retryable else JobState.FAILED.value
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = ?, error = ?, finished = ?, lease_until = NULL WHERE id = ?",
                (state, attempts, error, utcnow(), job.id),
            )
            file_state = state
        if job.kind == JobKind.ANALYZE and job.digest:
            conn.execute(
                "UPDATE files SET state = ?, error = ?, updated = ? WHERE digest = ? AND state IN ('queued', 'running', 'pending')",
                (file_state, None if file_state == FileState.QUEUED else error, utcnow(), job.digest),
            )
        if job.kind == JobKind.RENDER and job.folder_id and state != JobState.QUEUED:
            conn.execute("UPDATE folders SET state = 'failed', error = ?, updated = ? WHERE id = ?", (error, utcnow(), job.folder_id))
    return state


def requeue_interrupted(store: Store) -> int:
    """At start-up: jobs left running by a daemon that stopped or crashed go back to the queue,
    uncharged (see the module docstring). Returns how many."""
    with store.atomic() as conn:
        cur = conn.execute("UPDATE jobs SET state = 'queued', lease_until = NULL, progress = NULL, eta_s = NULL WHERE state = 'running'")
        conn.execute("UPDATE files SET state = 'queued' WHERE state = 'running'")
        conn.execute("UPDATE folders SET state = 'waiting' WHERE state = 'rendering'")
        return cur.rowcount


def expired_leases(store: Store) -> list[Job]:
    """Running jobs whose lease ran out while this daemon was alive: their worker was lost."""
    rows = store.query("SELECT * FROM jobs WHERE state = 'running' AND lease_until < ?", (time.time(),))
    return [Job.from_row(r) for r in rows]


def retry_jobs(store: Store, ids: list[int] | None = None, *, all_failed: bool = False) -> list[int]:
    """Put failed or quarantined jobs back in the queue with a fresh attempt count."""
    with store.atomic() as conn:
        if all_failed:
            rows = conn.execute("SELECT id FROM jobs WHERE state IN ('failed', 'quarantined')").fetchall()
        else:
            marks = ",".join("?" * len(ids or []))
            rows = conn.execute(f"SELECT id FROM jobs WHERE state IN ('failed', 'quarantined') AND id IN ({marks})", tuple(ids or [])).fetchall()
        retried = [r["id"] for r in rows]
        for job_id in retried:
            job = conn.execute("UPDATE jobs SET state = 'queued', attempts = 0, not_before = 0, error = NULL, finished = NULL WHERE id = ? RETURNING *", (job_id,)).fetchone()
            if job["kind"] == JobKind.ANALYZE and job["digest"]:
                conn.execute("UPDATE files SET state = 'queued', error = NULL WHERE digest = ? AND state IN ('failed', 'quarantined')", (job["digest"],))
            if job["kind"] == JobKind.RENDER and job["folder_id"]:
                conn.execute("UPDATE folders SET state = 'rendering', error = NULL WHERE id = ?", (job["folder_id"],))
    return retried


def reprioritise_folder(store: Store, folder_text: str) -> None:
    """Files that a waiting manifest needs are analysed first."""
    prefix = folder_text.rstrip("/") + "/"
    with store.atomic() as conn:
        conn.execute(
            "UPDATE jobs SET priority = ? WHERE state = 'queued' AND kind = 'analyze' AND priority < ? AND file_id IN "
            "(SELECT id FROM files WHERE folder = ? OR substr(folder, 1, ?) = ?)",
            (WAITING_PRIORITY, WAITING_PRIORITY, folder_text, len(prefix), prefix),
        )


# ------------------------------------------------------------------------------------------------
# Folders (a manifest asks for a preview)


def manifest_seen(store: Store, folder: str, root: str, mtime_ns: int, debounce: float) -> int:
    """A manifest appeared or changed. The folder waits for its inputs; a folder that already had
    a preview re-renders after ``debounce`` seconds of quiet. Returns the folder id."""
    raw = path_raw(folder)
    now = utcnow()
    with store.atomic() as conn:
        row = conn.execute("SELECT id, state, manifest_mtime_ns FROM folders WHERE rawpath = ?", (raw,)).fetchone()
        if row and row["manifest_mtime_ns"] == mtime_ns and row["state"] != FolderState.FAILED:
            return row["id"]
        render_after = time.time() + (debounce if row else 0.0)
        if row:
            conn.execute(
                "UPDATE folders SET state = 'waiting', manifest_mtime_ns = ?, error = NULL, render_after = ?, updated = ? WHERE id = ?",
                (mtime_ns, render_after, now, row["id"]),
            )
            folder_id = row["id"]
        else:
            folder_id = conn.execute(
                "INSERT INTO folders (rawpath, path, root, state, manifest_mtime_ns, render_after, updated) VALUES (?, ?, ?, 'waiting', ?, ?, ?)",
                (raw, path_text(folder), path_text(root), mtime_ns, render_after, now),
            ).lastrowid
        # A render queued for the old manifest is superseded.
        conn.execute("UPDATE jobs SET state = 'failed', error = 'superseded by a newer manifest', finished = ? WHERE folder_id = ? AND kind = 'render' AND state = 'queued'", (now, folder_id))
    reprioritise_folder(store, path_text(folder))
    return folder_id


def folder_inputs_changed(store: Store, folder: str, debounce: float) -> None:
    """A clip was added to or removed from a folder that has (or had) a preview: re-plan it."""
    with store.atomic() as conn:
        conn.execute(
            "UPDATE folders SET state = 'waiting', render_after = ?, updated = ? WHERE rawpath = ? AND state IN ('ready', 'failed')",
            (time.time() + debounce, utcnow(), path_raw(folder)),
        )


def manifest_removed(store: Store, folder: str) -> None:
    """No manifest, no preview request. Outputs already written stay where they are."""
    with store.atomic() as conn:
        row = conn.execute("SELECT id FROM folders WHERE rawpath = ?", (path_raw(folder),)).fetchone()
        if row:
            conn.execute("UPDATE jobs SET folder_id = NULL WHERE folder_id = ?", (row["id"],))
            conn.execute("DELETE FROM folders WHERE id = ?", (row["id"],))


def folder_failed(store: Store, folder_id: int, error: str) -> None:
    with store.atomic() as conn:
        conn.execute("UPDATE folders SET state = 'failed', error = ?, updated = ? WHERE id = ?", (error, utcnow(), folder_id))


def folder_waiting_note(store: Store, folder_id: int, note: str | None) -> None:
    """Why a waiting folder is still waiting (shown in status), without changing its state."""
    with store.atomic() as conn:
        conn.execute("UPDATE folders SET error = ? WHERE id = ? AND state = 'waiting'", (note, folder_id))


def start_render(store: Store, folder_id: int, folder_text: str, payload: dict, warnings: list[str]) -> int:
    now = utcnow()
    with store.atomic() as conn:
        conn.execute(
            "UPDATE folders SET state = 'rendering', error = NULL, warnings = ?, updated = ? WHERE id = ?",
            (json.dumps(warnings), now, folder_id),
        )
        # A render still queued for this folder follows an older plan: after a restart the folder
        # is planned again and its interrupted render (requeued) would run as well, once per crash.
        conn.execute(
            "UPDATE jobs SET state = 'failed', error = 'superseded by a newer plan', finished = ? WHERE folder_id = ? AND kind = 'render' AND state = 'queued'",
            (now, folder_id),
        )
        return conn.execute(
            "INSERT INTO jobs (kind, state, folder_id, path, priority, created, payload) VALUES ('render', 'queued', ?, ?, ?, ?, ?)",
            (folder_id, folder_text, WAITING_PRIORITY + 10, now, msgpack.packb(payload, use_bin_type=True)),
        ).lastrowid


def finish_render(store: Store, job: Job, preview: str) -> None:
    now = utcnow()
    with store.atomic() as conn:
        conn.execute("UPDATE jobs SET state = 'done', finished = ?, progress = 1.0, eta_s = 0, lease_until = NULL WHERE id = ?", (now, job.id))
        if job.folder_id:
            # Only a folder still rendering this job becomes ready; a newer manifest re-queued it.
            conn.execute(
                "UPDATE folders SET state = CASE WHEN state = 'rendering' THEN 'ready' ELSE state END, preview = ?, updated = ? WHERE id = ?",
                (preview, now, job.folder_id),
            )


def waiting_folders(store: Store) -> list:
    return store.query("SELECT * FROM folders WHERE state = 'waiting' AND (render_after IS NULL OR render_after <= ?) ORDER BY id", (time.time(),))


def file_states(store: Store, paths: list[Path]) -> dict[str, tuple[str, str | None, str | None]]:
    """{path: (state, digest, error)} for the given paths ('unknown' when never seen)."""
    out = {}
    for p in paths:
        row = store.query_one("SELECT state, digest, error FROM files WHERE rawpath = ?", (path_raw(p),))
        out[str(p)] = (row["state"], row["digest"], row["error"]) if row else ("unknown", None, None)
    return out


def file_failed(store: Store, file_id: int, error: str) -> None:
    """A file could not even be read (permissions, vanished while hashing)."""
    with store.atomic() as conn:
        conn.execute("UPDATE files SET state = 'failed', error = ?, updated = ? WHERE id = ? AND state != 'gone'", (error, utcnow(), file_id))


def note_render_retry(store: Store, job: Job, error: str) -> None:
    """A render will be retried: show why on the folder meanwhile."""
    if job.folder_id:
        with store.atomic() as conn:
            conn.execute("UPDATE folders SET error = ? WHERE id = ?", (f"{error} (retrying)", job.folder_id))


def requeue_uncharged(store: Store, job: Job) -> None:
    """Back to the queue without charging an attempt (stopped by us, or another job's crash)."""
    with store.atomic() as conn:
        conn.execute("UPDATE jobs SET state = 'queued', lease_until = NULL, progress = NULL, eta_s = NULL WHERE id = ? AND state = 'running'", (job.id,))
        if job.kind == JobKind.ANALYZE and job.digest:
            conn.execute("UPDATE files SET state = 'queued' WHERE digest = ? AND state = 'running'", (job.digest,))


def folders_containing(store: Store, path: str) -> list:
    """Folders with a manifest that contain ``path`` (the folder itself or an ancestor)."""
    text = path_text(path)
    rows = store.query("SELECT * FROM folders")
    return [r for r in rows if text == r["path"] or text.startswith(r["path"].rstrip("/") + "/")]
