"""What ``montaged status``, ``jobs`` and ``inspect`` report, read from the store without writing.

These functions open the database read-only (WAL lets them read while the daemon writes) and
return plain dicts shaped like the contract's JSON outputs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from montaged import __version__
from montaged.lock import daemon_pid
from montaged.store import Store, path_raw, path_text

FILE_STATES = ("pending", "queued", "running", "analyzed", "failed", "quarantined")


def status_document(state_dir: Path, watch: Iterable[str | os.PathLike] = ()) -> dict:
    """The ``status --json`` document. Works (with empty sections) before the first start.

    ``watch``: the configured watch roots. While the daemon is not running and has recorded no
    roots of its own (before the first start), these are listed, not watched
    (``"observer": None, "online": False``), so that status names what a start would watch.
    """
    pid = daemon_pid(state_dir)
    doc = {
        "daemon": {"running": pid is not None, "pid": pid if pid and pid > 0 else None, "version": __version__, "uptime_s": None,
                   "state_dir": str(state_dir), "roots": [], "executor": None},
        "files": {state: 0 for state in FILE_STATES},
        "folders": [],
        "running": [],
        "problems": [],
    }
    if pid is None:
        doc["daemon"]["roots"] = [{"path": str(r), "observer": None, "online": False, "error": None} for r in watch]
    if not (Path(state_dir) / "montaged.db").exists():
        return doc
    with Store(state_dir, readonly=True) as store:
        if not store.current:
            return doc
        meta = store.get_meta("daemon", {}) or {}
        if pid is not None and meta.get("pid") != pid:
            meta = {}  # written by an earlier run; the live daemon has not reported yet
        d = doc["daemon"]
        if pid is not None:
            d["version"] = meta.get("version", __version__)
            if meta.get("started"):
                d["uptime_s"] = round(time.time() - meta["started"], 1)
        if meta.get("roots") or pid is not None:
            d["roots"] = [
                {"path": r["path"], "observer": r.get("observer"), "online": bool(r.get("online")) and pid is not None, "error": r.get("error")}
                for r in meta.get("roots", [])
            ]
        d["executor"] = meta.get("executor") if pid is not None else None
        d["output"] = meta.get("output")
        for row in store.query("SELECT state, COUNT(*) AS n FROM files WHERE state != 'gone' GROUP BY state"):
            doc["files"][row["state"]] = row["n"]
        doc["folders"] = [_folder(store, row) for row in store.query("SELECT * FROM folders ORDER BY path")]
        doc["running"] = [
            {"id": r["id"], "kind": r["kind"], "path": r["path"], "progress": r["progress"], "eta_s": r["eta_s"], "started": r["started"]}
            for r in store.query("SELECT * FROM jobs WHERE state = 'running' ORDER BY id")
        ]
        doc["problems"] = [
            {"path": r["path"], "error": r["error"], "attempts": r["attempts"], "state": r["state"], "job": r["job"], "kind": "analyze"}
            for r in store.query(
                "SELECT f.path, f.error, f.state, COALESCE(MAX(j.attempts), 0) AS attempts, MAX(j.id) AS job "
                "FROM files f LEFT JOIN jobs j ON j.digest = f.digest AND j.kind = 'analyze' "
                "WHERE f.state IN ('failed', 'quarantined') GROUP BY f.id ORDER BY f.path"
            )
        ]
        # A proxy that could not be made loses nothing (previews read the original clip), but
        # the user should know why previews with that clip render slowly.
        doc["problems"] += [
            {"path": r["path"], "error": f"render proxy not made (previews read the original): {r['error']}",
             "attempts": r["attempts"], "state": r["state"], "job": r["id"], "kind": "proxy"}
            for r in store.query(
                "SELECT j.id, j.path, j.error, j.attempts, j.state FROM jobs j "
                "WHERE j.kind = 'proxy' AND j.state IN ('failed', 'quarantined') "
                "AND j.id = (SELECT MAX(id) FROM jobs WHERE kind = 'proxy' AND digest = j.digest) "
                "AND EXISTS (SELECT 1 FROM files f WHERE f.digest = j.digest AND f.state = 'analyzed') ORDER BY j.path"
            )
        ]
    return doc


def _folder(store: Store, row) -> dict:
    prefix = row["path"].rstrip("/") + "/"
    counts = store.query_one(
        "SELECT COUNT(*) AS files, SUM(state = 'analyzed') AS analyzed FROM files "
        "WHERE state != 'gone' AND (folder = ? OR substr(folder, 1, ?) = ?)",
        (row["path"], len(prefix), prefix),
    )
    return {
        "path": row["path"],
        "state": row["state"],
        "files": counts["files"] or 0,
        "analyzed": counts["analyzed"] or 0,
        "preview": row["preview"],
        "error": row["error"],
        "warnings": json.loads(row["warnings"] or "[]"),
        "updated": row["updated"],
    }


def job_list(state_dir: Path, state: str | None = None, limit: int | None = None) -> list[dict]:
    """``jobs --json``: newest last, as the contract shows."""
    with Store(state_dir, readonly=True) as store:
        if not store.current:
            return []
        sql = "SELECT * FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY id"
        rows = store.query(sql, (state,) if state else ())
    out = [
        {"id": r["id"], "kind": r["kind"], "state": r["state"], "path": r["path"], "digest": r["digest"],
         "attempts": r["attempts"], "error": r["error"], "created": r["created"], "started": r["started"],
         "finished": r["finished"], "progress": r["progress"]}
        for r in rows
    ]
    return out[-limit:] if limit else out


def inspect_path(state_dir: Path, path: Path) -> dict:
    """``inspect``: what the store knows about a file (features included) or a folder."""
    path = Path(os.path.abspath(path))
    with Store(state_dir, readonly=True) as store:
        row = store.query_one("SELECT * FROM files WHERE rawpath = ?", (path_raw(path),))
        if row is not None:
            out = {
                "path": row["path"], "type": "file", "state": row["state"], "kind": row["kind"], "digest": row["digest"],
                "size": row["size"], "error": row["error"], "first_seen": row["first_seen"], "updated": row["updated"],
                "same_content": [r["path"] for r in store.query("SELECT path FROM files WHERE digest = ? AND id != ? AND state != 'gone'", (row["digest"], row["id"]))],
                "jobs": [dict(id=j["id"], kind=j["kind"], state=j["state"], attempts=j["attempts"], error=j["error"])
                         for j in store.query("SELECT * FROM jobs WHERE digest = ? ORDER BY id", (row["digest"],))] if row["digest"] else [],
                "features": None,
            }
            if row["digest"]:
                analysis = store.get_features(row["digest"])
                if analysis is not None:
                    out["features"] = analysis.features
                    out["arrays"] = {name: list(a.shape) for name, a in analysis.arrays.items()}
            return out
        text = path_text(path)
        prefix = text.rstrip("/") + "/"
        files = store.query("SELECT path, state, kind, error FROM files WHERE state != 'gone' AND (folder = ? OR substr(folder, 1, ?) = ?) ORDER BY path", (text, len(prefix), prefix))
        folder = store.query_one("SELECT * FROM folders WHERE rawpath = ?", (path_raw(path),))
        if not files and folder is None:
            return {"path": text, "type": "unknown", "known": False}
        return {
            "path": text, "type": "folder",
            "preview": _folder(store, folder) if folder else None,
            "files": [dict(path=f["path"], state=f["state"], kind=f["kind"], error=f["error"]) for f in files],
        }
