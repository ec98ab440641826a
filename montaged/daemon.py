"""The daemon: wires the watcher, the store, the job states and the executor into one main loop.

Everything that changes state happens on the main thread, in :meth:`Daemon.tick`. Other threads
only produce: watchdog puts raw events on a queue, the hashing threads return digests through
futures, worker processes return results through futures. Signal handlers only set flags
(huey's habit); the loop acts on them.

Signals: SIGTERM or SIGINT = graceful stop (no new work; running jobs get ``stop_timeout``
seconds to finish, then they are left queued for the next start; exit 0). A second one = stop
now. SIGHUP = reload the configuration (new watch roots are picked up without a restart).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import signal
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from montaged import __version__, jobs
from montaged.config import Settings, load_settings
from montaged.digest import hash_file
from montaged.errors import ConfigError, ManifestError, MontagedError, StoreError
from montaged.executors import LocalExecutor, make_executor
from montaged.jobs import JobKind
from montaged.lock import StateLock, daemon_pid  # noqa: F401 (daemon_pid: public here too)
from montaged.store import Store, path_text, utcnow
from montaged.watch import Decision, Observers, RawEvent, Settler, root_of, root_online, scan_root

log = logging.getLogger("montaged.daemon")

LEASE_SECONDS = 90.0
TICK = 0.2
PROXY_TIMEOUT_FACTOR = 10  # proxy jobs get this many times workers.job_timeout (see _check_timeouts)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None, notifier=None, journal: bool = False):
        self.settings = settings
        self.journal = journal  # logging goes to journald (`montaged logs` reads journalctl then)
        self.config_path = config_path
        self.notifier = notifier
        # queue.Queue, not SimpleQueue: a timed get on the C SimpleQueue was seen to block for
        # good once a signal had interrupted it, which froze the loop after SIGHUP + SIGTERM.
        self.events: "queue.Queue[RawEvent]" = queue.Queue()
        self.stop_requested = 0  # number of stop signals received
        self.reload_requested = False
        self.store: Store | None = None
        self.lock: StateLock | None = None
        self.executor: LocalExecutor | None = None
        self.observers: Observers | None = None
        self.settler: Settler | None = None
        self.hashing: ThreadPoolExecutor | None = None
        # Re-keying a store from before BLAKE3 hashes every file again: on a thread of its own,
        # so that a file dropped in meanwhile is not queued behind the whole store.
        self.rekey_hashing: ThreadPoolExecutor | None = None
        self.hash_futures: dict[Future, tuple[int, str, os.stat_result | None, bool]] = {}
        # The store still keys features by BLAKE2b digests: hash both ways (digest.py).
        self._legacy_digests = False
        self.roots: dict[str, dict] = {}
        self.started = time.time()
        self._last = {"leases": 0.0, "meta": 0.0, "folders": 0.0, "roots": 0.0, "progress": 0.0, "forget": 0.0, "summary": 0.0}
        self._meta_written: dict | None = None
        self._progress_pending: dict[int, tuple[float, float | None]] = {}
        self._catch_up = False  # after the state directory was full (see _wait_for_space)

    # ---- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        try:
            self.start()
        except MontagedError as exc:
            log.error("%s", exc)
            self.close()
            return 2 if isinstance(exc, (ConfigError, StoreError)) else 1
        try:
            while self.stop_requested == 0:
                try:
                    self.tick()
                except (sqlite3.OperationalError, OSError) as exc:
                    if not _disk_full(exc):
                        raise
                    self._wait_for_space(exc)
            self._graceful_stop()
        finally:
            self.close()
        # Stopped cleanly: a late second SIGTERM during interpreter teardown (which restores the
        # default handler) must not turn exit 0 into "killed by SIGTERM".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("montaged stopped")
        return 0

    def start(self) -> None:
        s = self.settings
        state = s.paths.state
        state.mkdir(parents=True, exist_ok=True)
        self.lock = StateLock(state)
        self.lock.acquire()
        self.store = Store(state, check_integrity=True)
        resumed = jobs.requeue_interrupted(self.store)
        if resumed:
            log.info("resuming %d job(s) interrupted by the last stop", resumed)
        self.executor = make_executor(s)
        self.executor.on_done = self._wake
        self.hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="montaged-hash")
        roots = [str(r) for r in s.paths.watch]
        self.settler = Settler(s, roots)
        self.observers = Observers(s, self.events)
        self._legacy_digests = self.store.has_legacy_digests()
        for root in roots:
            self._bring_root_online(root, initial=True)
        for file_id, path in jobs.files_needing_digest(self.store):
            self._hash(file_id, path)
        if self._legacy_digests:
            self._rekey_legacy_files()
        self._write_meta(force=True)
        log.info(
            "montaged %s started: watching %s, output %s, state %s",
            __version__, ", ".join(roots), s.paths.output, s.paths.state,
        )
        if self.notifier:
            self.notifier.ready()

    def close(self) -> None:
        if self.observers:
            self.observers.stop()
        if self.executor:
            for job in self.executor.shutdown(wait=False):
                if self.store:
                    jobs.requeue_uncharged(self.store, job)
        for pool in (self.hashing, self.rekey_hashing):
            if pool:
                pool.shutdown(wait=False, cancel_futures=True)
        if self.store:
            try:
                self.store.set_meta("daemon", {**(self._meta_written or {}), "running": False, "stopped": utcnow()})
            except Exception as exc:  # noqa: BLE001 - closing must go on
                log.warning("could not record the stop in the store: %s", exc)
            self.store.close()
        if self.lock:
            self.lock.release()

    def _install_signals(self) -> None:
        def stop(signum, _frame):
            self.stop_requested += 1
            if self.stop_requested == 1:
                log.info("received %s: finishing running jobs (up to %.0fs), then stopping", signal.Signals(signum).name, self.settings.daemon.stop_timeout)
            else:
                log.warning("received %s again: stopping now; running jobs resume on the next start", signal.Signals(signum).name)

        def reload(_signum, _frame):
            self.reload_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _graceful_stop(self) -> None:
        if self.notifier:
            self.notifier.stopping()
        deadline = time.monotonic() + self.settings.daemon.stop_timeout
        self.observers.stop()
        while self.executor.running_jobs() and self.stop_requested < 2 and time.monotonic() < deadline:
            self._collect_outcomes()
            time.sleep(0.05)
        self._collect_outcomes()
        left = self.executor.shutdown(wait=False)
        for job in left:
            jobs.requeue_uncharged(self.store, job)
        if left:
            log.info("left %d running job(s) queued; they resume on the next start", len(left))

    # ---- the main loop ---------------------------------------------------------------------------
    def tick(self) -> None:
        """One pass of the main loop. Waits up to TICK for a filesystem event."""
        self._test_hang_hook()
        if self._catch_up:
            self._catch_up = False
            self._catch_up_after_full_disk()
        wait = self.settler.manifest_wait()
        try:
            # A settling manifest is the one wait a preview's latency depends on: wake for it.
            first = self.events.get(timeout=TICK if wait is None else min(TICK, wait + 0.002))
        except queue.Empty:
            first = None
        if self.reload_requested:
            self.reload_requested = False
            self._reload()
        if first is not None:
            self._handle_raw(first)
            for _ in range(10000):  # bounded: a flood of events must not starve the rest
                try:
                    self._handle_raw(self.events.get_nowait())
                except queue.Empty:
                    break
        for decision in self.settler.due():
            self._apply(decision)
        self._collect_hashes()
        self._collect_outcomes()
        now = time.monotonic()
        if now - self._last["folders"] >= 0.5:
            self._last["folders"] = now
            self._check_folders()
        if self.stop_requested == 0:
            self._dispatch()
        self._record_progress(now)
        self._check_timeouts()
        if now - self._last["leases"] >= LEASE_SECONDS / 3:
            self._last["leases"] = now
            jobs.renew_leases(self.store, [j.id for j in self.executor.running_jobs()], LEASE_SECONDS)
            self._reap_lost_jobs()
        if now - self._last["forget"] >= min(60.0, max(1.0, self.settings.daemon.forget_after / 2)):
            self._last["forget"] = now
            released = jobs.forget_gone(self.store, self.settings.daemon.forget_after)
            if released:
                log.info("released the features of %d deleted file(s)", released)
        if now - self._last["roots"] >= max(2.0, self.settings.watch.poll_interval):
            self._last["roots"] = now
            self._check_roots()
        self._write_meta()
        if self.notifier and self.notifier.enabled:
            if self.notifier.watchdog_due(now):
                self.notifier.watchdog()
            if now - self._last["summary"] >= 1.0:  # two aggregate queries: not every tick
                self._last["summary"] = now
                self.notifier.status(self.summary())

    def _wait_for_space(self, exc: BaseException) -> None:
        """The state directory's file system is full: nothing can be recorded. Crashing would
        only make systemd restart us into the same wall, so roll back, wait until a write works
        again, then catch up as a restart would: rescan the roots (a decision taken during the
        failed tick is lost), hash files left pending, requeue jobs whose outcome was lost."""
        if self.store.conn.in_transaction:
            try:
                self.store.conn.execute("ROLLBACK")
            except sqlite3.Error as again:
                log.debug("rollback after a full disk: %s", again)
        log.error("cannot write to the state directory %s: %s; waiting for free space", self.settings.paths.state, exc)
        while self.stop_requested == 0:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.stop_requested == 0:
                if self.notifier and self.notifier.watchdog_due(time.monotonic()):
                    self.notifier.watchdog()
                time.sleep(0.2)
            try:
                self._write_meta(force=True)
                break
            except (sqlite3.OperationalError, OSError) as again:
                if not _disk_full(again):
                    raise
        self._catch_up = True  # done by the next tick, where a new failure is handled again

    def _catch_up_after_full_disk(self) -> None:
        log.info("the state directory has free space again; catching up")
        tracked = {j.id for j in self.executor.running_jobs()}
        for row in self.store.query("SELECT * FROM jobs WHERE state = 'running'"):
            if row["id"] not in tracked:
                jobs.requeue_uncharged(self.store, jobs.Job.from_row(row))
        for file_id, path in jobs.files_needing_digest(self.store):
            self._hash(file_id, path)
        for root, info in self.roots.items():
            if info["online"]:
                self._scan(root, root)

    def _test_hang_hook(self) -> None:
        """Test-only (MONTAGED_TEST_HOOKS=1): while ``state/hang-main-loop`` exists the main loop
        hangs, so a test can see that systemd's watchdog pings stop."""
        if os.environ.get("MONTAGED_TEST_HOOKS") == "1":
            marker = self.settings.paths.state / "hang-main-loop"
            while marker.exists() and self.stop_requested < 2:
                time.sleep(0.05)

    # ---- events and decisions --------------------------------------------------------------------
    def _handle_raw(self, event: RawEvent) -> None:
        if event.kind == "wake":
            return
        for decision in self.settler.feed(event):
            self._apply(decision)

    def _apply(self, d: Decision) -> None:
        roots = [r for r, info in self.roots.items() if info["online"]]
        try:
            if d.kind == "complete":
                root = root_of(d.path, roots)
                if root is None:
                    return
                file_id, needs_digest = jobs.record_file(self.store, d.path, root, d.stat)
                if needs_digest:
                    log.info("new or changed file %s", d.path, extra={"path": d.path})
                    self._hash(file_id, d.path, d.stat)
            elif d.kind == "manifest":
                root = root_of(d.path, roots)
                if root is None:
                    return
                folder = os.path.dirname(d.path)
                log.info("manifest seen in %s", folder, extra={"folder": folder, "path": d.path})
                jobs.manifest_seen(self.store, folder, root, d.stat.st_mtime_ns, self.settings.preview.debounce_seconds)
                self._last["folders"] = 0.0
            elif d.kind == "manifest_removed":
                folder = os.path.dirname(d.path)
                log.info("manifest removed from %s; its preview is no longer updated", folder, extra={"folder": folder})
                jobs.manifest_removed(self.store, folder)
            elif d.kind == "gone":
                gone = jobs.file_gone(self.store, d.path)
                if gone:
                    log.info("deleted: %s", d.path, extra={"path": d.path})
                    self._inputs_changed(d.path)
            elif d.kind == "moved":
                root = root_of(d.dest, roots)
                if root and jobs.file_moved(self.store, d.path, d.dest, root):
                    log.info("moved %s -> %s", d.path, d.dest, extra={"path": d.dest})
                    self._inputs_changed(d.path)
                    self._inputs_changed(d.dest)
            elif d.kind == "rescan":
                targets = [d.path] if d.path else roots
                if not d.path:
                    log.warning("file events were lost (inotify queue overflow); rescanning %s", ", ".join(roots))
                for target in targets:
                    self._scan(target, root_of(target, roots) or target)
        except OSError as exc:
            log.warning("cannot handle %s: %s", d.path, exc, extra={"path": d.path})

    def _inputs_changed(self, path: str) -> None:
        for folder in jobs.folders_containing(self.store, path):
            if folder["state"] in ("ready", "failed"):
                jobs.folder_inputs_changed(self.store, os.fsdecode(bytes(folder["rawpath"])), self.settings.preview.debounce_seconds)
            elif folder["state"] == "waiting":
                # Its last input may be in: look now, not at the next half-second folder check
                # (on average 0.25 s more before a cold preview starts).
                self._last["folders"] = 0.0

    # ---- hashing ---------------------------------------------------------------------------------
    def _hash(self, file_id: int, path: str, st: os.stat_result | None = None, rekey: bool = False) -> None:
        if rekey:
            if self.rekey_hashing is None:
                self.rekey_hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="montaged-rekey")
            pool = self.rekey_hashing
        else:
            pool = self.hashing
        future = pool.submit(hash_file, path, legacy=self._legacy_digests)
        self.hash_futures[future] = (file_id, path, st, rekey)
        future.add_done_callback(lambda _f: self._wake())

    def _rekey_legacy_files(self) -> None:
        """Files keyed by a BLAKE2b digest (a store from before BLAKE3) that are unchanged since:
        hash them again, both ways, so that set_digest moves their features to the BLAKE3 digest.
        A changed file was already sent to hashing by the scan, as any changed file is."""
        count = 0
        for file_id, path, recorded in jobs.files_with_legacy_digests(self.store):
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone or offline: the scan and the watcher deal with it
            if (st.st_size, st.st_mtime_ns, st.st_ino) == recorded:
                self._hash(file_id, path, st, rekey=True)
                count += 1
        if count:
            log.info("re-keying %d file(s) from BLAKE2b to BLAKE3 digests: hashing them again, "
                     "without analysing them again", count)

    def _wake(self) -> None:
        """Make the main loop's wait end now (called from other threads when work finished)."""
        self.events.put(RawEvent("wake", ""))

    def _collect_hashes(self) -> None:
        for future in [f for f in self.hash_futures if f.done()]:
            file_id, path, st, rekey = self.hash_futures.pop(future)
            try:
                digests = future.result()
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    jobs.file_gone(self.store, path)
                    continue
                message = f"cannot read the file: {exc.strerror or exc}"
                log.warning("%s: %s", path, message, extra={"path": path})
                jobs.file_failed(self.store, file_id, message)
                continue
            state = jobs.set_digest(self.store, file_id, digests.current, st, legacy=digests.legacy)
            if state == "analyzed":
                if not rekey:
                    log.info("already analysed (same content seen before): %s", path, extra={"path": path})
                    self._inputs_changed(path)
            elif state == "pending":
                self._hash(file_id, path)  # changed while hashing: hash the new content
        if self._legacy_digests and not self.hash_futures:
            self._legacy_digests = self.store.has_legacy_digests()
            if not self._legacy_digests:
                log.info("every stored analysis is now keyed by its BLAKE3 digest")

    # ---- jobs ------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        from montaged.tasks import analyze_task, proxy_task, render_task

        # A read first: an idle daemon must not open a write transaction five times a second.
        if not jobs.work_available(self.store):
            return
        for pool, kinds in (("render", ("render",)), ("analysis", ("analyze",)), ("proxy", ("proxy",))):
            free = self.executor.free_slots(pool)
            if free <= 0:
                continue
            for job in jobs.claim_jobs(self.store, free, LEASE_SECONDS, kinds):
                if job.kind == JobKind.ANALYZE:
                    path = self._job_file_path(job)
                    if path is None:
                        jobs.fail_job(self.store, job, "the file is gone", retryable=False, max_attempts=1, backoff=0)
                        continue
                    log.info("analysing %s", path, extra={"path": path, "job": job.id})
                    self.executor.submit(job, pool, analyze_task, path)
                elif job.kind == JobKind.PROXY:
                    path = self._job_file_path(job)
                    if path is None:
                        jobs.fail_job(self.store, job, "the file is gone", retryable=False, max_attempts=1, backoff=0)
                        continue
                    dest = str(self.store.proxy_path(job.digest))
                    self.executor.submit(job, pool, proxy_task, path, dest, self.settings.preview.proxy_height)
                else:
                    log.info("rendering the preview of %s", job.path, extra={"folder": job.path, "job": job.id})
                    self.executor.submit(job, pool, render_task, job.payload)

    def _job_file_path(self, job) -> str | None:
        """The current path of a file with the job's content (it may have moved since)."""
        row = self.store.query_one(
            "SELECT rawpath FROM files WHERE digest = ? AND state != 'gone' ORDER BY (id = ?) DESC LIMIT 1",
            (job.digest, job.file_id),
        )
        return os.fsdecode(bytes(row["rawpath"])) if row else None

    def _collect_outcomes(self) -> None:
        w = self.settings.workers
        for out in self.executor.poll():
            job = out.job
            ctx = {"job": job.id, "path": job.path}
            if out.ok:
                if job.kind == JobKind.ANALYZE:
                    jobs.finish_analysis(self.store, job, out.result)
                    log.info("analysed %s", job.path, extra=ctx)
                    self._inputs_changed(job.path)
                    if out.result.kind == "video" and self.settings.preview.proxies:
                        jobs.enqueue_proxy(self.store, job)
                elif job.kind == JobKind.RENDER:
                    preview = out.result.get("preview", "")
                    jobs.finish_render(self.store, job, preview)
                    log.info("preview ready: %s", preview, extra={"job": job.id, "folder": job.path, "path": preview})
                else:
                    jobs.finish_job(self.store, job)
                    if job.kind == JobKind.PROXY:
                        log.info("render proxy made for %s", job.path, extra=ctx)
            elif not out.charged:
                jobs.requeue_uncharged(self.store, job)
            else:
                state = jobs.fail_job(self.store, job, out.error, retryable=out.retryable, max_attempts=w.max_attempts, backoff=w.retry_backoff)
                level = logging.WARNING if state == "queued" else logging.ERROR
                log.log(level, "%s %s: %s (%s)", job.kind, job.path, out.error, "will retry" if state == "queued" else state, extra=ctx)
                if job.kind == JobKind.RENDER and state == "queued":
                    jobs.note_render_retry(self.store, job, out.error)

    def _record_progress(self, now: float) -> None:
        for job_id, fraction in self.executor.drain_progress().items():
            elapsed = self.executor.elapsed(job_id)
            eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
            self._progress_pending[job_id] = (round(fraction, 3), None if eta is None else round(eta, 1))
        if self._progress_pending and now - self._last["progress"] >= 0.5:
            self._last["progress"] = now
            jobs.set_progress(self.store, self._progress_pending)
            self._progress_pending = {}

    def _check_timeouts(self) -> None:
        for job in self.executor.running_jobs():
            limit = self.settings.workers.job_timeout
            if job.kind == JobKind.PROXY:
                # A proxy is made only with idle CPU (SCHED_IDLE): under a long burst of other
                # work it may not run at all for a while. The limit still catches a hang.
                limit *= PROXY_TIMEOUT_FACTOR
            if self.executor.elapsed(job.id) > limit:
                log.error("%s %s timed out after %.0fs; killing its worker", job.kind, job.path, limit, extra={"job": job.id, "path": job.path})
                self.executor.kill(job.id, f"timed out after {limit:.0f}s")

    def _reap_lost_jobs(self) -> None:
        """Jobs the database thinks are running but no worker runs (lost futures): retry them."""
        tracked = {j.id for j in self.executor.running_jobs()}
        w = self.settings.workers
        for job in jobs.expired_leases(self.store):
            if job.id not in tracked:
                jobs.fail_job(self.store, job, "its worker was lost", retryable=True, max_attempts=w.max_attempts, backoff=w.retry_backoff)

    # ---- folders ---------------------------------------------------------------------------------
    def _check_folders(self) -> None:
        for folder in jobs.waiting_folders(self.store):
            try:
                self._check_folder(folder)
            except ManifestError as exc:
                log.error("%s", exc, extra={"folder": folder["path"]})
                jobs.folder_failed(self.store, folder["id"], str(exc))
            except MontagedError as exc:
                log.error("preview of %s: %s", folder["path"], exc, extra={"folder": folder["path"]})
                jobs.folder_failed(self.store, folder["id"], str(exc))

    def _check_folder(self, folder) -> None:
        from montaged.montage.preview import folder_inputs

        path = Path(os.fsdecode(bytes(folder["rawpath"])))
        if not (path / self.settings.preview.manifest).is_file():
            jobs.manifest_removed(self.store, str(path))
            return
        _, inputs = folder_inputs(path, self.settings.preview)
        if not inputs.ready:
            jobs.folder_waiting_note(self.store, folder["id"], "waiting for expected files: " + ", ".join(str(m) for m in inputs.missing))
            return
        wanted = [*inputs.clips, inputs.music]
        states = jobs.file_states(self.store, wanted)
        for p, (state, _, _) in states.items():
            if state == "unknown" and not self.settler.wants(p):
                # e.g. a symlink while follow_symlinks is off: never analysed, so never waited for
                states[p] = ("ignored", None, "ignored by the watch settings (watch.ignore, watch.follow_symlinks)")
        unsettled = [p for p, (state, _, _) in states.items() if state in ("unknown", "pending", "queued", "running")]
        if unsettled:
            for p in unsettled:
                if states[p][0] == "unknown" and p not in self.settler.pending:
                    self.settler.add(p)  # complete but not seen yet (e.g. still settling)
            jobs.reprioritise_folder(self.store, folder["path"])
            jobs.folder_waiting_note(self.store, folder["id"], f"waiting for {len(unsettled)} of {len(wanted)} files to be analysed")
            return
        music_state, music_digest, music_error = states[str(inputs.music)]
        if music_state != "analyzed":
            raise ManifestError(f"the music file {inputs.music.name} could not be analysed: {music_error or music_state}")
        warnings = [
            f"clip {Path(p).relative_to(path)} skipped: {err or state}"
            for p, (state, _, err) in states.items()
            if p != str(inputs.music) and state != "analyzed"
        ]
        analyses, proxies = {}, {}
        for p, (state, digest, _) in states.items():
            if state == "analyzed":
                analysis = self.store.get_features(digest)
                if analysis is not None:
                    analyses[Path(p)] = analysis
                    proxy = self.store.proxy_path(digest)
                    if analysis.kind == "video" and self.settings.preview.proxies and proxy.exists():
                        proxies[str(Path(p).relative_to(path))] = str(proxy)
        self._plan_and_queue(folder, path, analyses, warnings, proxies)

    def _plan_and_queue(self, folder, path: Path, analyses: dict, warnings: list[str], proxies: dict | None = None) -> None:
        import dataclasses

        from montaged.montage.preview import plan_folder

        started = time.perf_counter()
        edit = plan_folder(path, self.settings.preview, analyses)
        warnings = warnings + list(getattr(edit, "warnings", []) or [])
        out_dir = self.output_dir(path, folder["root"])
        payload = {
            "edit": edit.to_dict(),
            "folder": str(path),
            "out_dir": str(out_dir),
            "preview": dataclasses.asdict(self.settings.preview),
            "proxies": proxies or {},  # {source as named in the edit: proxy path}
        }
        job_id = jobs.start_render(self.store, folder["id"], folder["path"], payload, warnings)
        log.info(
            "planned %d cuts for %s in %.0f ms; render job %d queued (%d of %d clips from proxies)",
            len(edit.to_dict()["cuts"]), path, (time.perf_counter() - started) * 1000, job_id,
            len(proxies or {}), sum(1 for a in analyses.values() if a.kind == "video"),
            extra={"folder": str(path), "job": job_id},
        )

    def output_dir(self, folder: Path, root_text: str) -> Path:
        root = next((r for r in self.settings.paths.watch if path_text(r) == root_text), None)
        rel = folder.relative_to(root) if root else Path(folder.name)
        return self.settings.paths.output / rel

    # ---- roots -----------------------------------------------------------------------------------
    def _bring_root_online(self, root: str, initial: bool = False) -> None:
        info = self.roots.setdefault(root, {"path": root, "observer": None, "online": False, "error": None})
        devs = self.store.get_meta("root_devices", {})
        online, why = root_online(root, devs.get(root))
        if not online:
            if info["online"] or initial:
                log.warning("watch root %s is offline: %s; its files are kept, not marked deleted", root, why, extra={"path": root})
            if info["online"]:
                self.observers.stop_root(root)
            info.update(online=False, error=why, observer=None)
            return
        try:
            state = self.observers.start(root)
        except OSError as exc:
            info.update(online=False, error=f"cannot watch: {exc.strerror or exc}")
            log.error("cannot watch %s: %s", root, exc, extra={"path": root})
            return
        devs[root] = os.stat(root).st_dev
        self.store.set_meta("root_devices", devs)
        info.update(online=True, error=state.error, observer=state.observer)
        if not initial:
            log.info("watch root %s is online again; rescanning it", root, extra={"path": root})
        self._scan(root, root)

    def _check_roots(self) -> None:
        for root, info in self.roots.items():
            devs = self.store.get_meta("root_devices", {})
            online, why = root_online(root, devs.get(root))
            if online and not info["online"]:
                self._bring_root_online(root)
            elif not online and info["online"]:
                log.warning("watch root %s went offline: %s; its files are kept", root, why, extra={"path": root})
                self.observers.stop_root(root)
                info.update(online=False, error=why, observer=None)

    def _scan(self, target: str, root: str) -> None:
        """Reconcile ``target`` (a root or a folder under it) with the store: handle what was
        added, changed, moved or removed as if its events had been seen."""
        started = time.perf_counter()
        known = jobs.known_files(self.store, target)
        by_inode = {(v[2], v[0], v[1]): p for p, v in known.items()}
        seen = set()
        manifests = 0
        for kind, path, st in scan_root(target, self.settings):
            if kind == "manifest":
                manifests += 1
                self.settler.add(path)
                continue
            seen.add(path)
            old = known.get(path)
            if old and old == (st.st_size, st.st_mtime_ns, st.st_ino):
                continue
            moved_from = by_inode.get((st.st_ino, st.st_size, st.st_mtime_ns))
            if moved_from and moved_from != path and not os.path.exists(moved_from):
                self._apply(Decision("moved", moved_from, path))
                seen.add(moved_from)
                continue
            self.settler.add(path)
        for path in known:
            if path not in seen and not os.path.lexists(path):
                self._apply(Decision("gone", path))
        log.info("scanned %s in %.2fs: %d media files, %d manifests", target, time.perf_counter() - started, len(seen), manifests, extra={"path": target})

    # ---- reload ----------------------------------------------------------------------------------
    def _reload(self) -> None:
        if self.notifier:
            self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the current one:\n%s", exc)
            if self.notifier:
                self.notifier.ready()
            return
        old_roots = set(self.roots)
        new_roots = [str(r) for r in new.paths.watch]
        if new.paths.state != self.settings.paths.state:
            log.warning("paths.state changed; this takes effect only after a restart")
        self.settings = new
        self.settler.settings = new
        self.settler.roots = new_roots
        self.settler.manifest_name = new.preview.manifest
        self.observers.settings = new
        for root in old_roots - set(new_roots):
            log.info("no longer watching %s", root, extra={"path": root})
            self.observers.stop_root(root)
            del self.roots[root]
        for root in new_roots:
            if root not in old_roots:
                log.info("now watching %s", root, extra={"path": root})
                self._bring_root_online(root)
        log.info("configuration reloaded")
        if self.notifier:
            self.notifier.ready()

    # ---- reporting -------------------------------------------------------------------------------
    def summary(self) -> str:
        counts = dict(self.store.query("SELECT state, COUNT(*) FROM files WHERE state != 'gone' GROUP BY state"))
        folders = dict(self.store.query("SELECT state, COUNT(*) FROM folders GROUP BY state"))
        parts = [f"{counts.get('analyzed', 0)} analysed"]
        queued = counts.get("queued", 0) + counts.get("pending", 0)
        if queued:
            parts.append(f"{queued} queued")
        if counts.get("running"):
            parts.append(f"{counts['running']} running")
        bad = counts.get("failed", 0) + counts.get("quarantined", 0)
        if bad:
            parts.append(f"{bad} failed")
        if folders.get("rendering"):
            parts.append(f"{folders['rendering']} folder{'s' if folders['rendering'] > 1 else ''} rendering")
        if folders.get("waiting"):
            parts.append(f"{folders['waiting']} waiting")
        return ", ".join(parts)

    def _write_meta(self, force: bool = False) -> None:
        meta = {
            "running": True,
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started,
            "state_dir": str(self.settings.paths.state),
            "output": str(self.settings.paths.output),
            "config": str(self.settings.source) if self.settings.source else None,
            "journal": self.journal,
            "roots": [dict(r) for r in self.roots.values()],  # copies: compared with the last write
            "executor": self.executor.info() if self.executor else None,
        }
        if force or meta != self._meta_written:
            self.store.set_meta("daemon", meta)
            self._meta_written = meta
