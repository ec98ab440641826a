"""Analysis on a Dask cluster (``workers.executor = "dask"``), behind the executor interface.

Composition: a :class:`distributed.Client` runs the ``analysis`` pool on the cluster's workers; a
:class:`~montaged.executors.LocalExecutor` keeps the ``render`` pool on this machine (a preview
reads every clip and writes next to the daemon) and stands in for ``analysis`` while the
scheduler cannot be used (``workers.dask_fallback = "local"``; with ``"wait"`` jobs stay queued).

Only the daemon's main thread calls the executor. A background thread owns the connection: it
connects (with a short timeout, so a dead scheduler never stalls the main loop and systemd's
watchdog), watches for the connection dropping, reconnects when the scheduler is back, keeps the
worker list, and checks every new worker before trusting it: a tiny function stats one real
file of each watch root (and imports montaged) on the worker, because a worker that does not
see the media at the same path (NFS not mounted there) would fail every job it gets. It
publishes what it knows as one immutable :class:`_View` that the main thread reads.

How failures map to montaged's attempts (the same rules as the local pool):

- The analysis raised: classified by :func:`~montaged.executors.classify_error` (a
  ``MediaError`` is not retried), one attempt charged.
- The worker running it died (crash, OOM kill, machine lost): Dask reports ``KilledWorker``; one
  attempt charged, and the daemon's retry runs wherever the scheduler places it. Dask itself
  first reruns a task whose worker died up to ``distributed.scheduler.allowed-failures`` times
  (default 3); start the scheduler with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` so
  that one death is one attempt, as with the local pool (the value is logged at connect).
- A worker retired or stopped gracefully: Dask reschedules its tasks itself; nothing charged.
- The scheduler went away: the client cancels every future; the jobs go back to the queue
  uncharged and run on the local pool (or wait) until the scheduler is back.
- The job timed out (:meth:`DaskExecutor.kill`): its future is cancelled and one attempt is
  charged. Dask cannot interrupt a running thread, so that worker thread stays busy until the
  function returns.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import stat
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from montaged import executors
from montaged.errors import ConfigError
from montaged.executors import LocalExecutor, Outcome, classify_error

log = logging.getLogger("montaged.dask")

TOPIC = "montaged"  # Dask event topic of the worker-side wrapper (start, progress)
CONNECT_TIMEOUT = 5.0  # seconds per connection attempt (it runs off the main thread)
RECONNECT_EVERY = 2.0  # seconds between attempts while the scheduler is unreachable
REFRESH_EVERY = 1.0  # seconds between worker-list refreshes while connected
PROBE_TIMEOUT = 20.0  # seconds a worker gets to answer the shared-storage check
PROGRESS_EVERY = 0.5  # seconds between progress events of one job


# ------------------------------------------------------------------------------------------------
# Worker side (runs inside a Dask worker process; needs montaged installed there)

_task = threading.local()  # the job this worker thread runs: a Dask worker runs several threads


class _EventProgress:
    """Takes the local pool's message pipe's place on a Dask worker: forwards each job's
    progress as a Dask event (at most every PROGRESS_EVERY s), so ``status`` shows remote jobs'
    progress too. The job comes from the thread, not the message: threads share the module."""

    def __init__(self, worker):
        self.worker = worker

    def send(self, message: tuple) -> None:
        job = getattr(_task, "job", None)
        if job is None or message[0] != "progress":
            return
        now = time.monotonic()
        if now - _task.sent < PROGRESS_EVERY:
            return
        _task.sent = now
        self.worker.log_event(TOPIC, {"event": "progress", "job": job, "key": _task.key, "fraction": float(message[2])})


def run_remote(job_id: int, fn: Callable, args: tuple) -> Any:
    """What a Dask worker runs for a job: announce where it runs, then run ``fn(*args)``."""
    from distributed import get_worker

    worker = get_worker()
    if not isinstance(executors._messages, _EventProgress):
        # report_progress() sends to executors._messages when _current_job is set; on a Dask
        # worker both are ours for good (the job itself comes from the thread-local).
        executors._messages = _EventProgress(worker)
        executors._current_job = -1
    key = worker.get_current_task() if hasattr(worker, "get_current_task") else None
    _task.job, _task.key, _task.sent = job_id, key, 0.0
    worker.log_event(TOPIC, {"event": "start", "job": job_id, "key": key, "worker": worker.address,
                             "host": socket.gethostname(), "pid": os.getpid()})
    try:
        return fn(*args)
    finally:
        _task.job = None


def probe_worker(witnesses: list[tuple[str, int | None]]) -> dict:
    """Run on each worker (``Client.run``) before it gets jobs: can it read what the daemon sees?

    ``witnesses``: (path, size) of one real file per watch root, or (root, None) for an empty
    root. Returns {"host", "version", "problems": [plain-words text]}."""
    import montaged

    problems = []
    for path, size in witnesses:
        try:
            st = os.stat(path)
            if size is None:
                if not stat.S_ISDIR(st.st_mode):
                    problems.append(f"{path} is not a folder")
                else:
                    os.listdir(path)
                continue
            with open(path, "rb") as fh:
                fh.read(1)
            if st.st_size != size:
                problems.append(f"{path} has {st.st_size} bytes there, {size} on the daemon's machine (a different file system at the same path?)")
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc.strerror or exc}")
    return {"host": socket.gethostname(), "version": montaged.__version__, "problems": problems}


# ------------------------------------------------------------------------------------------------
# Daemon side


def find_witnesses(roots: list[str], limit: int = 500) -> list[tuple[str, int | None]]:
    """One regular, non-hidden file per watch root (breadth-first, at most ``limit`` entries
    looked at), so the check catches an empty mount point standing where the share should be."""
    witnesses = []
    for root in roots:
        if not os.path.isdir(root):
            continue  # offline on the daemon's side too: nothing to compare
        found = None
        folders, seen = [root], 0
        while folders and found is None and seen < limit:
            folder = folders.pop(0)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                log.debug("shared-storage check: cannot list %s (%s); looking elsewhere", folder, exc)
                continue
            for entry in entries:
                seen += 1
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        found = (entry.path, entry.stat(follow_symlinks=False).st_size)
                        break
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                except OSError as exc:  # removed or unreadable since the listing
                    log.debug("shared-storage check: skipping %s (%s)", entry.path, exc)
                    continue
        witnesses.append(found or (root, None))
    return witnesses


@dataclass(frozen=True)
class _View:
    """What the connection thread knows, published as one immutable value."""

    client: Any = None  # distributed.Client while connected
    workers: dict = field(default_factory=dict)  # address -> nthreads (every connected worker)
    verified: frozenset = frozenset()  # workers that passed the shared-storage check
    refused: dict = field(default_factory=dict)  # address -> why it gets no jobs
    error: str | None = None
    allowed_failures: int | None = None
    lost: bool = False  # the client is trying to reconnect


    @property
    def threads(self) -> int:
        return sum(n for addr, n in self.workers.items() if addr in self.verified)

    def usable(self) -> bool:
        return self.client is not None and not self.lost and self.client.status == "running" and self.threads > 0


@dataclass
class _Remote:
    job: Any
    future: Any
    key: str
    started: float = field(default_factory=time.monotonic)
    worker: str | None = None
    host: str | None = None
    killed_reason: str | None = None


class DaskExecutor:
    """The executor interface of :class:`LocalExecutor`, with ``analysis`` on Dask."""

    kind = "dask"

    def __init__(self, settings, *, connect_timeout: float = CONNECT_TIMEOUT):
        try:
            import distributed  # noqa: F401 - checked here, where the daemon can say what to do
        except ImportError as exc:
            raise ConfigError([f'workers.executor = "dask" needs the Dask client on this machine ({exc}): pip install "montaged[dask]"']) from None

        w = settings.workers
        self.address = w.dask_scheduler
        self.fallback = w.dask_fallback
        self.roots = [str(r) for r in settings.paths.watch]
        self.connect_timeout = connect_timeout
        self.local = LocalExecutor(w.processes, render_processes=1, memory_limit_mb=w.memory_limit_mb)
        self._on_done_hook: Callable[[], None] | None = None
        self.progress: dict[int, float] = {}
        self.submitted: Counter = Counter()  # jobs sent to "dask", "local" (fallback), "render"
        self._progress_changed: dict[int, float] = {}
        self._view = _View(error=f"connecting to the Dask scheduler at {self.address}")
        self._first_attempt = threading.Event()
        self._stop = threading.Event()
        self._remote: dict[int, _Remote] = {}  # main thread only
        self._settled: "queue.Queue[tuple]" = queue.Queue()  # (job id, key, kind, value) from callbacks
        self._events: "queue.Queue[dict]" = queue.Queue()  # worker events (start, progress)
        self._loop = None  # distributed.utils.LoopRunner, made by the connection thread
        self._thread = threading.Thread(target=self._connection_loop, name="montaged-dask", daemon=True)
        self._thread.start()

    # ---- the interface ---------------------------------------------------------------------------
    def info(self) -> dict:
        view = self._view
        usable = view.usable()
        if usable:
            using = "dask"
        elif self.fallback == "local":
            using = "local"
        else:
            using = "waiting"
        error = view.error
        if not usable and not error:
            # The client noticed a loss before the connection thread's next round.
            running = view.client is not None and view.client.status == "running"
            error = f"no usable Dask workers at {self.address}" if running else f"lost the connection to the Dask scheduler at {self.address}"
        if not usable:
            error += "; " + (
                f"analysing on the local process pool ({self.local.sizes['analysis']} processes) until it is back"
                if self.fallback == "local" else "analysis waits until it is back"
            )
        return {
            "kind": self.kind,
            "workers": len(view.workers),
            "threads": view.threads,
            "render_workers": self.local.sizes["render"],
            "scheduler": self.address,
            "error": error,
            "connected": view.client is not None and not view.lost,
            "analysis_on": using,
            "fallback": self.fallback,
            "refused_workers": sorted(view.refused),
            "allowed_failures": view.allowed_failures,
        }

    def free_slots(self, pool: str) -> int:
        if pool != "analysis":
            return self.local.free_slots(pool)
        view = self._view
        if view.usable():
            return view.threads - len(self._remote)
        if not self._first_attempt.is_set() or self.fallback != "local":
            return 0  # first connection attempt still running, or "wait": keep jobs queued
        return self.local.free_slots("analysis")

    def submit(self, job, pool: str, fn: Callable, *args) -> None:
        view = self._view
        key = f"montaged-{getattr(job.kind, 'value', job.kind)}-{job.id}-{uuid.uuid4().hex[:12]}"
        if pool == "analysis" and not view.usable() and self.fallback == "wait":
            # Dask became unusable since free_slots() said yes: back to the queue, uncharged.
            self._remote[job.id] = _Remote(job, None, key)
            self._settled.put((job.id, key, "lost", "the Dask scheduler became unusable"))
            return
        if pool != "analysis" or not view.usable():
            self.submitted["local" if pool == "analysis" else pool] += 1
            self.local.submit(job, pool, fn, *args)
            return
        self.submitted["dask"] += 1
        # Workers that failed the shared-storage check get no jobs; without refusals, leave the
        # scheduler free to use workers that joined since the last check.
        workers = sorted(view.verified) if view.refused else None
        try:
            future = view.client.submit(run_remote, job.id, fn, args, key=key, pure=False, retries=0, workers=workers)
        except (RuntimeError, OSError, ValueError) as exc:  # the client closed under us
            log.warning("could not send job %s to Dask (%s); it goes back to the queue", job.id, exc, extra={"job": job.id})
            self._remote[job.id] = _Remote(job, None, key)
            self._settled.put((job.id, key, "lost", str(exc)))
            return
        self._remote[job.id] = _Remote(job, future, key)
        future.add_done_callback(lambda f, job_id=job.id, key=key: self._on_done(job_id, key, f))

    def running_jobs(self) -> list:
        return [r.job for r in self._remote.values()] + self.local.running_jobs()

    def drain_progress(self) -> dict[int, float]:
        """{job id: fraction} reported since the last call, by local and remote jobs."""
        self._read_events()
        changed = {**self.local.drain_progress(), **self._progress_changed}
        self._progress_changed = {}
        self.progress.update(changed)
        return changed

    def _read_events(self) -> None:
        # Kept until drain_progress() hands them out: poll() reads events too (to learn where a
        # job runs), and must not swallow progress.
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            run = self._remote.get(event.get("job"))
            if run is None or (event.get("key") and event["key"] != run.key):
                continue  # a finished job, or an older attempt of this one
            if event.get("event") == "start":
                run.worker, run.host = event.get("worker"), event.get("host")
                log.debug("job %s started on Dask worker %s (%s)", run.job.id, run.worker, run.host, extra={"job": run.job.id})
            elif event.get("event") == "progress":
                self._progress_changed[run.job.id] = float(event.get("fraction", 0.0))

    def elapsed(self, job_id: int) -> float:
        run = self._remote.get(job_id)
        if run is not None:
            return time.monotonic() - run.started
        return self.local.elapsed(job_id)

    def kill(self, job_id: int, reason: str) -> None:
        run = self._remote.get(job_id)
        if run is None:
            self.local.kill(job_id, reason)
            return
        if run.killed_reason is not None:
            return
        run.killed_reason = reason
        client = self._view.client
        if run.future is not None and client is not None:
            try:
                client.cancel([run.future], reason="montaged-timeout", msg=reason)
            except (RuntimeError, OSError, TimeoutError) as exc:
                log.debug("cancelling job %s: %s", job_id, exc)
        if run.worker:
            log.warning("job %s cancelled on Dask worker %s; Dask cannot stop a running thread, so that worker thread stays busy until the analysis returns",
                        job_id, run.worker, extra={"job": job_id})
        # Report now rather than wait for the cancellation to come back from the scheduler.
        self._settled.put((job_id, run.key, "killed", reason))

    def poll(self) -> list[Outcome]:
        self._read_events()
        self._release_stranded()
        outcomes = self.local.poll()
        while True:
            try:
                job_id, key, kind, value = self._settled.get_nowait()
            except queue.Empty:
                break
            run = self._remote.get(job_id)
            if run is None or run.key != key:
                continue
            del self._remote[job_id]
            self.progress.pop(job_id, None)
            self._progress_changed.pop(job_id, None)
            outcomes.append(self._outcome(run, kind, value))
        return outcomes

    def _release_stranded(self) -> None:
        """The scheduler is up but has no usable worker left: jobs waiting there for one go back
        to the queue (uncharged), to run on the local pool instead of waiting for a timeout."""
        view = self._view
        if self.fallback != "local" or view.client is None or view.lost or view.threads > 0 or not view.error:
            return
        for run in list(self._remote.values()):
            if run.worker is None and run.killed_reason is None and run.future is not None:
                run.killed_reason = ""  # ours; the cancellation coming back is not reported again
                try:
                    view.client.cancel([run.future], reason="montaged-no-workers")
                except (RuntimeError, OSError, TimeoutError) as exc:
                    log.debug("cancelling job %s: %s", run.job.id, exc)
                self._settled.put((run.job.id, run.key, "lost", "no Dask worker left to run it"))

    def _outcome(self, run: _Remote, kind: str, value) -> Outcome:
        job = run.job
        where = f"Dask worker {run.worker}" if run.worker else "a Dask worker"
        if run.killed_reason:
            return Outcome(job, error=run.killed_reason, retryable=True)
        if kind == "ok":
            log.info("job %s ran on %s%s in %.1fs", job.id, where, f" ({run.host})" if run.host else "",
                     time.monotonic() - run.started, extra={"job": job.id, "path": job.path})
            return Outcome(job, result=value)
        if kind == "error":
            from distributed.scheduler import KilledWorker

            if isinstance(value, KilledWorker):
                last = getattr(getattr(value, "last_worker", None), "address", None) or run.worker
                return Outcome(job, error=f"the Dask worker running it died ({last or 'unknown worker'})", retryable=True)
            message, retryable = classify_error(value)
            return Outcome(job, error=message, retryable=retryable)
        # cancelled by the scheduler going away, or the result could not be fetched: not the
        # job's fault, so it goes back to the queue uncharged.
        return Outcome(job, error=f"interrupted: {value}", charged=False)

    @property
    def on_done(self) -> Callable[[], None] | None:
        """Called when a job ends (see LocalExecutor.on_done), remote or local."""
        return self._on_done_hook

    @on_done.setter
    def on_done(self, hook: Callable[[], None] | None) -> None:
        self._on_done_hook = self.local.on_done = hook

    def _on_done(self, job_id: int, key: str, future) -> None:
        """Runs in Dask's callback thread: fetch the result there, never on the main loop."""
        try:
            self._settle(job_id, key, future)
        finally:
            if self._on_done_hook is not None:
                self._on_done_hook()

    def _settle(self, job_id: int, key: str, future) -> None:
        from distributed.client import FutureCancelledError

        try:
            if future.status == "finished":
                self._settled.put((job_id, key, "ok", future.result(timeout=120)))
            elif future.status == "error":
                self._settled.put((job_id, key, "error", future.exception(timeout=30)))
            else:
                self._settled.put((job_id, key, "lost", f"the Dask task was {future.status}"))
        except FutureCancelledError as exc:
            self._settled.put((job_id, key, "lost", f"the Dask task was cancelled ({exc.reason})"))
        except (OSError, TimeoutError, RuntimeError) as exc:  # lost connection while fetching
            self._settled.put((job_id, key, "lost", f"its result could not be fetched: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a result that fails to arrive must still end the job
            self._settled.put((job_id, key, "lost", f"its result could not be fetched: {type(exc).__name__}: {exc}"))

    def shutdown(self, *, wait: bool, timeout: float = 0.0) -> list:
        if self._stop.is_set():  # the daemon may call it twice (graceful stop, then close)
            return self.local.shutdown(wait=False)
        deadline = time.monotonic() + (timeout if wait else 0.0)
        while wait and self._remote and time.monotonic() < deadline:
            if all(r.future is None or r.future.done() for r in self._remote.values()):
                break
            time.sleep(0.05)
        # Every job whose outcome was not collected must run again: its result was never stored.
        unfinished = [r.job for r in self._remote.values()]
        self._stop.set()
        client = self._view.client
        if client is not None:
            futures = [r.future for r in self._remote.values() if r.future is not None]
            try:
                if futures:
                    client.cancel(futures, reason="montaged-stop")
            except (RuntimeError, OSError, TimeoutError) as exc:
                log.debug("cancelling at shutdown: %s", exc)
        self._remote.clear()
        self._thread.join(timeout=self.connect_timeout + 1)
        self._close_client(self._view.client)
        if self._loop is not None and not self._thread.is_alive():
            self._loop.stop()
        unfinished += self.local.shutdown(wait=wait, timeout=max(0.0, deadline - time.monotonic()))
        return unfinished

    # ---- the connection thread -------------------------------------------------------------------
    def _connection_loop(self) -> None:
        was_usable = None  # None: first attempt; log every change of usability once
        while not self._stop.is_set():
            view = self._view
            try:
                view = self._next_view(view)
            except Exception as exc:  # noqa: BLE001 - this thread must survive any cluster error
                log.debug("Dask connection thread: %s: %s", type(exc).__name__, exc, exc_info=True)
                self._close_client(view.client)
                view = _View(error=f"Dask scheduler at {self.address}: {type(exc).__name__}: {exc}")
            if self._stop.is_set():
                self._close_client(view.client)
                return
            self._view = view
            # Before logging: info() already reports this attempt's outcome, and free_slots()
            # must agree with it from the same moment.
            self._first_attempt.set()
            usable = view.usable()
            if usable != was_usable:
                self._log_change(view, usable, first=was_usable is None)
                was_usable = usable
            self._stop.wait(REFRESH_EVERY if view.client is not None else RECONNECT_EVERY)

    def _next_view(self, view: _View) -> _View:
        client = view.client
        if client is None:
            return self._connect()
        if client.status == "running":
            if view.lost:
                # It reconnected by itself (a quick scheduler restart): a new scheduler knows
                # nothing of our subscription, and its workers may be new machines.
                client.subscribe_topic(TOPIC, self._on_event)
                return self._refresh(_View(client=client, allowed_failures=view.allowed_failures))
            return self._refresh(view)
        if client.status in ("closing", "closed"):
            # It gave up reconnecting: start afresh on the next round.
            return _View(error=f"cannot reach the Dask scheduler at {self.address}")
        # "connecting": the client retries for connect_timeout by itself. Closing it now would
        # only make it log a traceback; its futures are already cancelled.
        return _View(client=client, lost=True, allowed_failures=view.allowed_failures,
                     error=f"lost the connection to the Dask scheduler at {self.address}")

    def _log_change(self, view: _View, usable: bool, first: bool) -> None:
        if usable:
            log.info("%s the Dask scheduler at %s: %d worker(s), %d thread(s) for analysis",
                     "using" if first else "back to", self.address, len(view.verified), view.threads)
            return
        then = ("analysing on the local process pool until it is back" if self.fallback == "local"
                else "analysis waits until it is back (workers.dask_fallback = \"wait\")")
        log.error("%s; %s", view.error or f"no usable Dask workers at {self.address}", then)

    def _connect(self) -> _View:
        from distributed import Client

        if self._loop is None:
            from distributed.utils import LoopRunner

            # One event loop for every client we make: a Client that fails to connect leaves
            # its own loop thread behind, one per attempt, for as long as the scheduler is down.
            self._loop = LoopRunner(asynchronous=False)
            self._loop.start()
        try:
            client = Client(self.address, timeout=self.connect_timeout, set_as_default=False, name="montaged", loop=self._loop.loop)
        except (OSError, TimeoutError) as exc:
            return _View(error=f"cannot reach the Dask scheduler at {self.address}: {_reason(exc)}")
        client.subscribe_topic(TOPIC, self._on_event)
        allowed = None
        try:
            allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        except Exception as exc:  # noqa: BLE001 - only informative; a scheduler may refuse pickles
            log.debug("could not read the scheduler's allowed-failures: %s", exc)
        if allowed:
            log.warning("the Dask scheduler at %s reruns a task whose worker died up to %d times before montaged counts one failed attempt; "
                        "start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 to count every death", self.address, allowed)
        return self._refresh(_View(client=client, allowed_failures=allowed))

    def _on_event(self, event: tuple) -> None:
        """Runs on the client's event loop: hand the worker's message to the main thread."""
        self._events.put(event[1])

    def _refresh(self, view: _View) -> _View:
        """Update the worker list; check the workers not seen before."""
        # Ask the scheduler directly (as Client.scheduler_info's docstring advises): the client's
        # cached identity is overwritten every 2 s by a periodic update that carries no worker
        # list, and reading it just after our own update was seen to return zero workers.
        info = view.client.sync(view.client.scheduler.identity, n_workers=-1, callback_timeout=PROBE_TIMEOUT)
        workers = {addr: int(w.get("nthreads", 1)) for addr, w in info.get("workers", {}).items()}
        verified = {a for a in view.verified if a in workers}
        refused = {a: why for a, why in view.refused.items() if a in workers}
        new = [a for a in workers if a not in verified and a not in refused]
        if new:
            ok, bad = self._check_workers(view.client, new)
            verified |= ok
            refused.update(bad)
        error = None
        if refused:
            error = "; ".join(f"worker {a} gets no jobs: {why}" for a, why in sorted(refused.items()))
            if not verified:
                error = f"no Dask worker can read the media: {error}"
        elif not workers:
            error = f"the Dask scheduler at {self.address} has no workers"
        return _View(client=view.client, workers=workers, verified=frozenset(verified), refused=refused,
                     error=error, allowed_failures=view.allowed_failures)

    def _check_workers(self, client, addresses: list[str]) -> tuple[set, dict]:
        witnesses = find_witnesses(self.roots)
        results = client.run(probe_worker, witnesses, workers=addresses, on_error="return", callback_timeout=PROBE_TIMEOUT)
        ok, bad = set(), {}
        for addr in addresses:
            result = results.get(addr)
            if isinstance(result, BaseException):
                bad[addr] = f"montaged cannot run there ({type(result).__name__}: {result})"
            elif not isinstance(result, dict):
                bad[addr] = "it did not answer the shared-storage check"
            elif result["problems"]:
                bad[addr] = ("it does not see the media at the daemon's paths (mount the shared storage at the same path there): "
                             + "; ".join(result["problems"]))
            else:
                ok.add(addr)
                from montaged import __version__

                if result.get("version") != __version__:
                    log.warning("Dask worker %s (%s) runs montaged %s, the daemon %s", addr, result.get("host"), result.get("version"), __version__)
                log.info("Dask worker %s (%s) can read the watch folders", addr, result.get("host"))
        for addr, why in bad.items():
            log.error("Dask worker %s gets no jobs: %s", addr, why)
        return ok, bad

    def _close_client(self, client) -> None:
        if client is None:
            return
        try:
            client.close(timeout=2)
        except (OSError, TimeoutError, RuntimeError) as exc:
            log.debug("closing the Dask client: %s", exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
