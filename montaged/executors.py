"""Where jobs run: a local process pool (default) or, later, a Dask cluster, behind one interface.

The daemon hands a job and a module-level function to :meth:`LocalExecutor.submit` and collects
:class:`Outcome`s with :meth:`LocalExecutor.poll`. Workers never touch the database.

Why per-job bookkeeping around ``concurrent.futures.ProcessPoolExecutor``: when one worker dies
(segfault, ``os._exit``, the OOM killer), the pool breaks and *every* running future fails with
``BrokenProcessPool``. Each worker reports its pid when it starts a job, so after a breakage the
job whose worker died on its own (exit code other than the SIGTERM the pool sends the rest) is
charged an attempt, and the others are requeued uncharged. The pool is then rebuilt.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable

from montaged.errors import MediaError, ManifestError, MontagedError
from montaged.lifeline import end_with_parent

log = logging.getLogger("montaged.executors")


@dataclass
class Outcome:
    job: Any  # jobs.Job
    result: Any = None
    error: str | None = None
    retryable: bool = True
    charged: bool = True  # False: requeue without charging an attempt (another job broke the pool)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Running:
    job: Any
    future: Future
    pool: str
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # when the worker said it began: timeouts count from here
    pid: int | None = None
    killed_reason: str | None = None


# ------------------------------------------------------------------------------------------------
# Worker side

_messages = None  # the write end of the daemon's message pipe (a multiprocessing Connection)
_current_job: int | None = None


# Modules a pool's jobs import, loaded by a background thread as each worker starts, so that
# no job pays for them (their imports form no cycle, so a job importing one of them meanwhile
# just waits for it). The music analysis imports scipy.fft (~0.45 s): the first music file after
# a daemon start paid that on its way to a preview, and music tends to land last (cold
# time-to-preview, benchmarks/bench_e2e.py).
PRELOAD = {"analysis": ("montaged.analysis.audio", "montaged.analysis.video")}


def _preload(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except (ImportError, MemoryError) as exc:  # the job that needs it reports it; a warm-up has no one to tell
            log.debug("preloading %s failed: %s", name, exc)


def _worker_init(messages, memory_limit_mb: int = 0, nice: int = 0, preload: tuple[str, ...] = ()) -> None:
    global _messages
    _messages = messages
    end_with_parent()  # a daemon killed alone must not leave its workers running (lifeline.py)
    if preload:
        threading.Thread(target=_preload, args=(preload,), name="montaged-preload", daemon=True).start()
    if nice:
        os.nice(nice)
        # A niced worker works only with CPU nobody else wants: SCHED_IDLE, where Linux has it.
        # Nice alone is not enough: FFmpeg's decoder and x264's threads each count with the
        # niced weight, and together they took ~20% of the cores from a render running beside.
        # The threads are created later and inherit the policy.
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Ctrl-C in a foreground daemon reaches the whole process group: the daemon decides what
    # happens to running jobs, so workers ignore SIGINT (as rq's work-horse does).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def report_progress(fraction: float) -> None:
    """Progress callback handed to analysis and render functions inside a worker."""
    if _messages is not None and _current_job is not None:
        try:
            _tell("progress", _current_job, float(fraction))
        except (OSError, ValueError) as exc:  # progress is advisory; never let it fail a job
            logging.getLogger("montaged.worker").debug("progress not sent: %s", exc)


def _tell(kind: str, job_id: int, fraction: float) -> None:
    # One write of a few dozen bytes, synchronous (a worker that dies right after "start" has
    # still told its pid) and without a lock: a pipe takes writes up to PIPE_BUF (4 KiB) whole,
    # whoever writes beside. A multiprocessing queue's lock, held by a worker at the moment the
    # pool terminated it, stayed held: every later worker blocked on its first message, before
    # its job's timeout even started, and analysis stopped for good.
    _messages.send((kind, job_id, fraction, os.getpid()))


def _run(job_id: int, fn: Callable, args: tuple) -> Any:
    global _current_job
    _current_job = job_id
    if _messages is not None:
        _tell("start", job_id, 0.0)
    try:
        return fn(*args)
    finally:
        _current_job = None


# ------------------------------------------------------------------------------------------------
# Daemon side


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """(message for people, retryable?). Bad input is not retried; anything else may be passing."""
    if isinstance(exc, (MediaError, ManifestError)):
        return str(exc), False
    if isinstance(exc, MontagedError):
        return str(exc), True
    if isinstance(exc, MemoryError):
        return "ran out of memory", True
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else ""), True
    return f"internal error: {type(exc).__name__}: {exc}", True


class LocalExecutor:
    """Process pools on this machine: ``analysis`` (``processes`` workers), ``render`` (one
    warm worker, so a preview never queues behind analysis and starts without import cost) and
    ``proxy`` (one niced worker: proxies are made with the CPU nobody else wants)."""

    kind = "process"

    def __init__(self, processes: int, *, render_processes: int = 1, memory_limit_mb: int = 0):
        self.memory_limit_mb = memory_limit_mb
        self.sizes = {"analysis": processes or os.cpu_count() or 1, "render": max(1, render_processes), "proxy": 1}
        self._ctx = multiprocessing.get_context("spawn")
        # Workers tell us when they start a job (with their pid) and how far they are: see _tell.
        self._inbox, self._outbox = self._ctx.Pipe(duplex=False)
        self._pools: dict[str, ProcessPoolExecutor | None] = {"analysis": None, "render": None, "proxy": None}
        self._running: dict[int, _Running] = {}
        # pid -> Process of every worker we have seen, per pool: a broken pool forgets its
        # processes, but their exit codes tell which job killed its worker.
        self._workers: dict[str, dict[int, object]] = {"analysis": {}, "render": {}, "proxy": {}}
        self.pool_rebuilds = 0
        self.progress: dict[int, float] = {}
        self._unreported: dict[int, float] = {}
        # Called (from a pool's thread) when a job's future completes: the daemon wakes its main
        # loop with it, so a free worker gets its next job now rather than at the next tick.
        self.on_done: Callable[[], None] | None = None

    def info(self) -> dict:
        return {"kind": self.kind, "workers": self.sizes["analysis"], "render_workers": self.sizes["render"], "scheduler": None, "error": None}

    def _pool(self, name: str) -> ProcessPoolExecutor:
        pool = self._pools[name]
        if pool is None:
            # Spawned workers inherit this environment. There is already one worker per core:
            # a BLAS library starting its own threads in each only fights for the same cores
            # (the music analysis took ~40% more CPU with them).
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(var, "1")
            pool = ProcessPoolExecutor(
                max_workers=self.sizes[name], mp_context=self._ctx,
                # The render pool is not limited: it fans out to its own segment processes.
                initializer=_worker_init,
                initargs=(self._outbox, self.memory_limit_mb if name == "analysis" else 0, 10 if name == "proxy" else 0,
                          PRELOAD.get(name, ())),
            )
            self._pools[name] = pool
            if self.sizes[name] > 1:
                # Start every worker now. CPython's submit() wakes the pool's manager thread
                # *before* it spawns a new worker, so the manager may go back to waiting without
                # that worker's sentinel and never see it die (a job killed for its timeout then
                # stays "running" for good). These no-ops' results wake it once all are up.
                for _ in range(self.sizes[name]):
                    pool.submit(os.getpid)
        return pool

    def free_slots(self, pool: str) -> int:
        busy = sum(1 for r in self._running.values() if r.pool == pool)
        return self.sizes[pool] - busy

    def submit(self, job, pool: str, fn: Callable, *args) -> None:
        executor = self._pool(pool)
        try:
            future = executor.submit(_run, job.id, fn, args)
        except BrokenProcessPool:
            # A worker died since the last poll(). The job it ran is blamed when its future
            # fails (poll() then rebuilds the pool); this one never started: a cancelled future
            # hands it back uncharged. With nothing running to fail, an idle worker died:
            # nobody will notice the breakage, so drop the pool now.
            if not any(r.pool == pool for r in self._running.values()):
                self._pools[pool] = None
                executor.shutdown(wait=False, cancel_futures=True)
                self.pool_rebuilds += 1
            future = Future()
            future.cancel()
        self._workers[pool].update(getattr(executor, "_processes", None) or {})
        self._running[job.id] = _Running(job, future, pool)
        future.add_done_callback(self._notify_done)

    def _notify_done(self, _future) -> None:
        hook = self.on_done
        if hook is not None:
            hook()

    def running_jobs(self) -> list:
        return [r.job for r in self._running.values()]

    def drain_progress(self) -> dict[int, float]:
        """{job id: fraction} of the running jobs that reported progress since the last call."""
        self._read_messages()
        changed, self._unreported = self._unreported, {}
        return {job_id: f for job_id, f in changed.items() if job_id in self._running}

    def _read_messages(self, limit: int | None = 1000) -> None:
        """Read what workers sent (start with pid, progress). Progress is kept until
        drain_progress() hands it out: poll() and kill() read messages too. At most ``limit``
        messages: workers reporting faster than we read must not keep the main loop here."""
        changed = {}
        budget = float("inf") if limit is None else limit
        while budget > 0:
            budget -= 1
            try:
                if not self._inbox.poll():
                    break
                kind, job_id, fraction, pid = self._inbox.recv()
            except (OSError, EOFError, ValueError) as exc:
                log.debug("progress channel: %s", exc)
                break
            run = self._running.get(job_id)
            if run is None:
                continue
            if kind == "start":
                run.pid, run.started = pid, time.monotonic()
            else:
                changed[job_id] = fraction
        self.progress.update(changed)
        self._unreported.update(changed)

    def elapsed(self, job_id: int) -> float:
        """Seconds the job has been running in its worker (0 until it started: a worker being
        spawned on a loaded machine must not eat into the job's timeout)."""
        run = self._running.get(job_id)
        return time.monotonic() - run.started if run and run.started is not None else 0.0

    def kill(self, job_id: int, reason: str) -> None:
        """Stop a job now (its timeout ran out): kill its worker; the pool breaks and is rebuilt."""
        self._read_messages()
        run = self._running.get(job_id)
        if run is None or run.killed_reason:
            return  # already being killed: its outcome arrives with the next poll
        run.killed_reason = reason
        if run.pid:
            # Already exited on its own: its outcome arrives with the next poll() all the same.
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)
        else:
            run.future.cancel()

    def poll(self) -> list[Outcome]:
        """Outcomes of the jobs that ended since the last call."""
        self._read_messages()
        done = [r for r in self._running.values() if r.future.done()]
        if not done:
            return []
        outcomes: list[Outcome] = []
        broken_pools = set()
        for run in done:
            exc = run.future.exception() if not run.future.cancelled() else None
            if isinstance(exc, BrokenProcessPool):
                broken_pools.add(run.pool)
                continue
            del self._running[run.job.id]
            self.progress.pop(run.job.id, None)
            if run.future.cancelled():
                outcomes.append(Outcome(run.job, error=run.killed_reason or "cancelled", charged=run.killed_reason is not None))
            elif exc is not None:
                message, retryable = classify_error(exc)
                outcomes.append(Outcome(run.job, error=message, retryable=retryable))
            else:
                outcomes.append(Outcome(run.job, result=run.future.result()))
        for pool in broken_pools:
            outcomes += self._recover_broken(pool)
        return outcomes

    def _recover_broken(self, pool_name: str) -> list[Outcome]:
        """A worker of ``pool_name`` died: blame its job, requeue the others, rebuild the pool."""
        pool = self._pools[pool_name]
        processes = {**self._workers[pool_name], **(getattr(pool, "_processes", None) or {})}
        runs = [r for r in self._running.values() if r.pool == pool_name]
        # Wait until every running future of this pool has failed (they fail together).
        for r in runs:
            try:
                r.future.exception(timeout=10)
            except Exception as exc:  # noqa: BLE001 - only waiting for the future to settle
                log.debug("future of job %s did not settle: %s", r.job.id, exc)
        self._read_messages(limit=None)  # every "start" of this pool's dead workers
        exit_codes = {pid: _exit_code(proc, timeout=5) for pid, proc in processes.items()}
        self._workers[pool_name] = {}
        outcomes = []
        culprits = []
        for r in runs:
            code = exit_codes.get(r.pid)
            if r.killed_reason or (r.pid is not None and code not in (None, -signal.SIGTERM)):
                culprits.append((r, code))
        if not culprits:
            # Could not tell who died: charge the jobs whose worker's fate is unknown, else those
            # that had not said which worker ran them, else all (a job that crashes its worker
            # must reach max_attempts, even unrecognised).
            log.warning("could not tell which %s job's worker died (job, pid: exit code): %s", pool_name,
                        {r.job.id: (r.pid, exit_codes.get(r.pid)) for r in runs})
            culprits = ([(r, None) for r in runs if r.pid is not None and exit_codes.get(r.pid) is None]
                        or [(r, None) for r in runs if r.pid is None] or [(r, None) for r in runs])
        blamed = {id(r) for r, _ in culprits}
        for r, code in culprits:
            outcomes.append(Outcome(r.job, error=r.killed_reason or _death_message(code), retryable=True))
        for r in runs:
            if id(r) not in blamed:
                outcomes.append(Outcome(r.job, error="interrupted by another job's crash", charged=False))
            del self._running[r.job.id]
            self.progress.pop(r.job.id, None)
        self._pools[pool_name] = None
        pool.shutdown(wait=False, cancel_futures=True)
        self.pool_rebuilds += 1
        log.warning("a %s worker died; the pool is rebuilt and the other jobs are requeued", pool_name)
        return outcomes

    def shutdown(self, *, wait: bool, timeout: float = 0.0) -> list:
        """Stop the pools. With ``wait``, running jobs get ``timeout`` seconds to finish first.
        Returns the jobs that were still running (to be resumed by the next start)."""
        if wait and self._running:
            deadline = time.monotonic() + timeout
            while self._running and time.monotonic() < deadline:
                if not any(not r.future.done() for r in self._running.values()):
                    break
                time.sleep(0.05)
        unfinished = [r.job for r in self._running.values() if not r.future.done()]
        for name, pool in self._pools.items():
            if pool is None:
                continue
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                if proc.is_alive():
                    proc.kill()
            for proc in processes:
                proc.join(timeout=5)
            self._pools[name] = None
        return unfinished


def _exit_code(proc, timeout: float) -> int | None:
    """The worker's exit code, or None if it still runs after ``timeout``. The pool's own thread
    reaps its workers too: when both call waitpid, the loser gets ECHILD and, for a moment until
    the winner stores it, sees no exit code (that charged a good job for a neighbour's crash)."""
    deadline = time.monotonic() + timeout
    proc.join(timeout)
    # Dead (its sentinel pipe closed) but no code yet: the other thread is storing it.
    while proc.exitcode is None and wait([proc.sentinel], 0) and time.monotonic() < deadline:
        time.sleep(0.005)
    return proc.exitcode


def _death_message(code: int | None) -> str:
    if code is None:
        return "the worker process died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT):
            # The decoder (or numpy) crashed on this input: say so, the signal is for the log.
            return f"the worker process crashed on this file ({name})"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with status {code}"


def make_executor(settings) -> LocalExecutor:
    if settings.workers.executor == "dask":
        from montaged.dask_executor import DaskExecutor  # optional dependency

        return DaskExecutor(settings)
    return LocalExecutor(settings.workers.processes, render_processes=1, memory_limit_mb=settings.workers.memory_limit_mb)
