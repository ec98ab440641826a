"""Watching the ingest roots: filesystem events in, *complete* files out.

Three stages, none of which blocks another:

1. watchdog observers (inotify, or polling for network file systems) call :class:`_Handler`,
   which only puts the raw event on a queue: a slow file never stalls the other events.
2. :class:`Settler`, driven by the daemon's main loop, turns raw events into decisions: a file is
   complete once it is closed after writing (or was moved in, or found by a scan) and its size and
   mtime have not changed for ``settle_seconds``. Renames, deletions and manifests are passed on.
3. :func:`scan_root` walks a root (at start-up, after an inotify queue overflow, and when an
   offline root comes back) so that what happened while nobody watched is handled the same way.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Iterator

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEventHandler,
)
from watchdog.observers.polling import PollingObserver

from montaged.config import Settings
from montaged.mediatypes import is_media

log = logging.getLogger("montaged.watch")

# File systems on which inotify sees only local changes: poll them.
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "virtiofs", "ceph", "glusterfs", "davfs", "sshfs"}


# ------------------------------------------------------------------------------------------------
# What is a candidate at all


def is_ignored(name: str, patterns: tuple[str, ...]) -> bool:
    """Names that are never analysed: dotfiles (rsync's ``.name.XXXXXX``, ``.syncthing.*``),
    partial downloads, editor backups. Matched against the file name only."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def path_ignored(path: str, root: str, patterns: tuple[str, ...]) -> bool:
    """A path is ignored if any component below the root is (a hidden folder hides its files)."""
    rel = os.path.relpath(path, root)
    return any(is_ignored(part, patterns) for part in rel.split(os.sep) if part not in (".", ""))


def root_of(path: str, roots: list[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def fs_type(path: str) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mounts)."""
    best, kind = "", ""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError as exc:
        log.warning("cannot read /proc/self/mounts (%s); assuming a local file system", exc)
    return kind


def choose_observer(path: str, setting: str) -> str:
    if setting != "auto":
        return setting
    kind = fs_type(path)
    if kind in NETWORK_FS or kind.startswith("fuse"):
        return "polling"
    return "inotify"


# ------------------------------------------------------------------------------------------------
# Stage 1: raw events onto a queue


@dataclass(frozen=True)
class RawEvent:
    kind: str  # created | modified | closed | moved | deleted | dir_deleted | dir_moved | overflow | wake
    path: str
    dest: str | None = None
    at: float = field(default_factory=time.monotonic)


class _Handler(FileSystemEventHandler):
    def __init__(self, events: "queue.Queue[RawEvent]"):
        self.events = events

    def on_any_event(self, event) -> None:  # runs on watchdog's thread: enqueue and return
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileMovedEvent):
            self.events.put(RawEvent("moved", src, os.fsdecode(event.dest_path)))
        elif isinstance(event, DirMovedEvent):
            self.events.put(RawEvent("dir_moved", src, os.fsdecode(event.dest_path)))
        elif isinstance(event, FileClosedEvent):
            self.events.put(RawEvent("closed", src))
        elif isinstance(event, FileCreatedEvent):
            # Also what a move into the tree from outside looks like: no writer implied.
            self.events.put(RawEvent("created", src))
        elif isinstance(event, FileModifiedEvent):
            self.events.put(RawEvent("modified", src))
        elif isinstance(event, FileDeletedEvent):
            self.events.put(RawEvent("deleted", src))
        elif isinstance(event, DirDeletedEvent):
            self.events.put(RawEvent("dir_deleted", src))
        elif isinstance(event, (FileOpenedEvent, FileClosedNoWriteEvent)):
            return  # reads (including our own hashing and analysis) change nothing


class _OverflowSpy(logging.Handler):
    """watchdog reports an inotify queue overflow only as a log warning; turn it into an event so
    the daemon rescans and no file is missed."""

    def __init__(self, events: "queue.Queue[RawEvent]"):
        super().__init__(level=logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.events.put(RawEvent("overflow", ""))


@dataclass
class RootState:
    path: str
    observer: str = "inotify"  # what actually runs
    online: bool = False
    error: str | None = None
    watching: bool = False


class Observers:
    """One observer per root; inotify where it works, polling where it cannot (network file
    systems, or when the inotify watch/instance limit is exhausted)."""

    def __init__(self, settings: Settings, events: "queue.Queue[RawEvent]"):
        self.settings = settings
        self.events = events
        self.roots: dict[str, RootState] = {}
        self._observers: dict[str, object] = {}
        self._spy = _OverflowSpy(events)
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._spy)
        logging.getLogger("watchdog.observers.inotify").addHandler(self._spy)

    def start(self, root: str) -> RootState:
        state = self.roots.setdefault(root, RootState(root))
        if state.watching:
            return state
        wanted = choose_observer(root, self.settings.watch.observer)
        try:
            self._start(root, wanted)
            state.observer, state.error = wanted, None
        except OSError as exc:
            if wanted == "inotify" and exc.errno in (errno.ENOSPC, errno.EMFILE):
                log.warning(
                    "inotify limit reached for %s (%s); polling it every %.1fs instead. Raise "
                    "fs.inotify.max_user_watches / max_user_instances to get instant events back.",
                    root, exc.strerror, self.settings.watch.poll_interval, extra={"path": root},
                )
                self._start(root, "polling")
                state.observer = "polling"
                state.error = f"inotify limit reached ({exc.strerror}); polling instead"
            else:
                raise
        state.watching = True
        return state

    def _start(self, root: str, kind: str) -> None:
        if kind == "polling":
            observer = PollingObserver(timeout=self.settings.watch.poll_interval)
        else:
            from watchdog.observers.inotify import InotifyObserver

            observer = InotifyObserver()
        observer.schedule(_Handler(self.events), root, recursive=True)
        observer.daemon = True
        try:
            observer.start()
        except OSError:
            observer.stop()
            raise
        self._observers[root] = observer

    def stop_root(self, root: str) -> None:
        observer = self._observers.pop(root, None)
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        if root in self.roots:
            self.roots[root].watching = False

    def stop(self) -> None:
        for root in list(self._observers):
            self.stop_root(root)
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._spy)
        logging.getLogger("watchdog.observers.inotify").removeHandler(self._spy)


# ------------------------------------------------------------------------------------------------
# Stage 2: settling


@dataclass
class Candidate:
    path: str
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time of the last observed change
    writing: bool  # a write was seen and no close after it
    closed: bool = False  # its writer closed it (or renamed it into place) since the last change


@dataclass(frozen=True)
class Decision:
    """What the daemon must do, produced by :class:`Settler`."""

    kind: str  # complete | manifest | manifest_removed | moved | gone | rescan
    path: str
    dest: str | None = None
    stat: os.stat_result | None = None


class Settler:
    """Debounces raw events into decisions. Pure bookkeeping plus ``os.stat``; the main loop calls
    :meth:`feed` with events and :meth:`due` on every tick."""

    # A writer that keeps a file open without closing it (and without writing) this long is
    # assumed finished; if it writes again, the file is re-analysed (the result is replaced).
    OPEN_WRITER_GRACE = 60.0
    # A manifest is a few bytes written at once; once closed it only needs a moment. (A manifest
    # read half-written fails to parse and is read again at its next close: nothing is lost.)
    # The main loop wakes for it (manifest_wait), so this is the whole delay it adds.
    MANIFEST_SETTLE = 0.1

    def __init__(self, settings: Settings, roots: list[str]):
        self.settings = settings
        self.roots = roots
        self.manifest_name = settings.preview.manifest
        self.pending: dict[str, Candidate] = {}
        # Folders whose manifest arrived (folder -> monotonic time): the user says the folder
        # is complete, so its closed files need not wait out settle_seconds.
        self.signalled: dict[str, float] = {}

    def _wanted(self, path: str) -> str | None:
        """'media', 'manifest' or None for a path inside a root."""
        root = root_of(path, self.roots)
        if root is None or path_ignored(path, root, self.settings.watch.ignore):
            return None
        name = os.path.basename(path)
        if name == self.manifest_name:
            return "manifest"
        if is_media(name):
            if not self.settings.watch.follow_symlinks and os.path.islink(path):
                return None
            if os.path.islink(path) and not _link_inside(path, root):
                return None
            return "media"
        return None

    def wants(self, path: str) -> bool:
        """Would this path ever be analysed under the current settings?"""
        return self._wanted(path) == "media"

    def add(self, path: str, *, writing: bool = False, now: float | None = None, closed: bool = False) -> None:
        """Track ``path`` until it is complete (scans and moves-in call this directly).
        ``closed``: its writer is known to be done with it (a close or a rename into place)."""
        try:
            st = os.stat(path)
        except OSError:
            self.pending.pop(path, None)
            return
        if not _is_regular(st):
            return
        now = time.monotonic() if now is None else now
        old = self.pending.get(path)
        if old and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns) and not writing:
            old.writing = False
            old.closed = old.closed or closed
            return
        self.pending[path] = Candidate(path, st.st_size, st.st_mtime_ns, now, writing, closed and not writing)

    def feed(self, event: RawEvent) -> list[Decision]:
        """Take one raw event; return decisions that need no waiting (moves, deletions)."""
        out: list[Decision] = []
        if event.kind == "overflow":
            return [Decision("rescan", "")]
        if event.kind in ("created", "modified", "closed"):
            if self._wanted(event.path):
                self.add(event.path, writing=event.kind == "modified", now=event.at,
                         closed=event.kind == "closed")
                if event.kind == "closed" and event.path in self.pending:
                    self.pending[event.path].writing = False
                    self.pending[event.path].closed = True
        elif event.kind in ("moved", "dir_moved"):
            self.pending.pop(event.path, None)
            src_root = root_of(event.path, self.roots)
            dest_root = root_of(event.dest, self.roots) if event.dest else None
            if event.kind == "moved":
                src_kind = self._wanted(event.path) if src_root else None
                dest_kind = self._wanted(event.dest) if dest_root else None
                if src_kind == "media" and dest_kind == "media":
                    out.append(Decision("moved", event.path, event.dest))
                    self.add(event.dest, now=event.at)  # known -> no work; unknown -> analysed
                elif dest_kind:
                    # x.part -> x, or moved in from outside: complete once it has settled.
                    self.add(event.dest, now=event.at, closed=True)
                    if src_kind == "manifest":
                        out.append(Decision("manifest_removed", event.path))
                elif src_kind == "media":
                    out.append(Decision("gone", event.path))
                elif src_kind == "manifest":
                    out.append(Decision("manifest_removed", event.path))
            else:
                if src_root and dest_root:
                    out.append(Decision("moved", event.path, event.dest))
                elif src_root:
                    out.append(Decision("gone", event.path))
                if dest_root:
                    out.append(Decision("rescan", event.dest))  # pick up what the folder holds
        elif event.kind == "deleted":
            self.pending.pop(event.path, None)
            kind = self._wanted_name(event.path)
            if kind == "manifest":
                out.append(Decision("manifest_removed", event.path))
            elif kind == "media":
                out.append(Decision("gone", event.path))
        elif event.kind == "dir_deleted":
            prefix = event.path.rstrip("/") + "/"
            for p in [p for p in self.pending if p.startswith(prefix)]:
                del self.pending[p]
            out.append(Decision("gone", event.path))
        return out

    def _wanted_name(self, path: str) -> str | None:
        """Like _wanted, for a path that no longer exists (no stat, no link checks)."""
        root = root_of(path, self.roots)
        if root is None or path_ignored(path, root, self.settings.watch.ignore):
            return None
        name = os.path.basename(path)
        return "manifest" if name == self.manifest_name else ("media" if is_media(name) else None)

    def _signalled(self, path: str, now: float) -> bool:
        """Is ``path`` in (or under) a folder whose manifest arrived recently?"""
        for folder, at in list(self.signalled.items()):
            if now - at > self.OPEN_WRITER_GRACE:
                del self.signalled[folder]
            elif path.startswith(folder + os.sep):
                return True
        return False

    def manifest_wait(self, now: float | None = None) -> float | None:
        """Seconds until the first closed manifest waiting here has settled (None: none waits),
        so that the main loop wakes for it rather than at its next tick."""
        now = time.monotonic() if now is None else now
        settle = min(self.MANIFEST_SETTLE, self.settings.watch.settle_seconds)
        waits = [settle - (now - c.changed_at) for p, c in self.pending.items()
                 if not c.writing and os.path.basename(p) == self.manifest_name]
        return max(0.0, min(waits)) if waits else None

    def due(self, now: float | None = None) -> list[Decision]:
        """Candidates that have been quiet for ``settle_seconds`` and are unchanged on disk.

        A manifest says its folder is complete: from then on (for ``OPEN_WRITER_GRACE``), files
        in that folder that their writer closed are complete at once, and come out before the
        manifest's own decision, so the preview waits for nothing but their analysis. A file
        written again later is simply analysed again.
        """
        now = time.monotonic() if now is None else now
        out = []
        manifest_settle = min(self.MANIFEST_SETTLE, self.settings.watch.settle_seconds)
        for path, cand in self.pending.items():
            if (os.path.basename(path) == self.manifest_name and not cand.writing
                    and now - cand.changed_at >= manifest_settle):
                self.signalled[os.path.dirname(path)] = now
        # Manifests last: the files they wait for are then already decided.
        order = sorted(self.pending.items(), key=lambda item: os.path.basename(item[0]) == self.manifest_name)
        for path, cand in order:
            quiet = now - cand.changed_at
            is_manifest = os.path.basename(path) == self.manifest_name
            if is_manifest and not cand.writing:
                settle = manifest_settle
            elif cand.closed and not cand.writing and self.signalled and self._signalled(path, now):
                settle = 0.0
            else:
                settle = self.settings.watch.settle_seconds
            if quiet < settle or (cand.writing and quiet < max(self.OPEN_WRITER_GRACE, 10 * settle)):
                continue
            try:
                st = os.stat(path)
            except OSError:
                del self.pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns, cand.changed_at = st.st_size, st.st_mtime_ns, now
                cand.closed = False  # changed with no event: not known to be done any more
                continue
            del self.pending[path]
            kind = "manifest" if is_manifest else "complete"
            out.append(Decision(kind, path, stat=st))
        return out


def _is_regular(st: os.stat_result) -> bool:
    import stat as stat_mod

    return stat_mod.S_ISREG(st.st_mode)


def _link_inside(path: str, root: str) -> bool:
    """A symlink is followed only when it resolves inside its watch root."""
    real = os.path.realpath(path)
    real_root = os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


# ------------------------------------------------------------------------------------------------
# Stage 3: scanning


def scan_root(root: str, settings: Settings) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield (kind, path, stat) for every media file and manifest under ``root``.
    ``kind`` is 'media' or 'manifest'. Unreadable folders are logged and skipped."""
    patterns = settings.watch.ignore
    follow = settings.watch.follow_symlinks
    manifest = settings.preview.manifest
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot read folder %s: %s", folder, exc.strerror or exc, extra={"path": folder})
            continue
        for entry in entries:
            if is_ignored(entry.name, patterns):
                continue
            try:
                if entry.is_symlink():
                    if not follow or not _link_inside(entry.path, root):
                        continue
                    if entry.is_dir(follow_symlinks=True):
                        continue  # never recurse through links: no loops, no escapes
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if entry.name == manifest:
                    yield "manifest", entry.path, entry.stat(follow_symlinks=True)
                elif is_media(entry.name):
                    st = entry.stat(follow_symlinks=True)
                    if _is_regular(st):
                        yield "media", entry.path, st
            except OSError as exc:
                log.warning("cannot stat %s: %s", entry.path, exc.strerror or exc, extra={"path": entry.path})


def root_online(root: str, expected_dev: int | None) -> tuple[bool, str | None]:
    """Is the root there? A root whose device changed and that is now empty is an unmounted
    mount point: offline, and its files are *not* deleted."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return False, "folder does not exist (not mounted yet?)"
    except OSError as exc:
        return False, f"cannot open folder: {exc.strerror or exc}"
    import stat as stat_mod

    if not stat_mod.S_ISDIR(st.st_mode):
        return False, "not a folder"
    if not os.access(root, os.R_OK | os.X_OK):
        return False, "permission denied"
    if expected_dev is not None and st.st_dev != expected_dev:
        try:
            empty = not any(True for _ in os.scandir(root))
        except OSError:
            empty = True
        if empty:
            return False, "file system not mounted (the folder is empty and on another device than before)"
    return True, None
