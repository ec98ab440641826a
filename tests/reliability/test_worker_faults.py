"""Analysis workers that crash in every way at once: SIGKILL (what the kernel's OOM killer sends),
SIGSEGV (a decoder bug), MemoryError under the workers.memory_limit_mb address-space limit, and a
hang (job timeout). Each bad job is retried, then quarantined with a reason a person can act on;
every good job, including those interrupted when a neighbour took the pool down, completes
without being charged an attempt. (tests/test_daemon.py covers os._exit and a lone timeout.)"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, cli, wait_until
from tests.reliability.conftest import SOAK, record, rel_config

pytestmark = pytest.mark.slow

FAULTS = {
    "__kill__": "killed by SIGKILL",
    "__segv__": "crashed on this file (SIGSEGV)",
    "__oom__": "ran out of memory",
    "__hang__": "timed out after 6s",
}


def test_every_kind_of_worker_fault_is_retried_then_quarantined(rlayout, tracks, small_media):
    root = rlayout["root"]
    cfg = rel_config(rlayout["config"], watch=[root], output=rlayout["out"], state=rlayout["state"],
                     workers__max_attempts=2, workers__job_timeout=6, workers__memory_limit_mb=1536)
    bad = {}
    good = []
    with DaemonProcess(cfg, rlayout["state"]) as d:
        # Interleave bad and good files so that good jobs run next to crashing ones.
        for i, (hook, _) in enumerate(FAULTS.items()):
            bad[hook] = root / f"{hook}{i}.wav"
            shutil.copy(tracks[i], bad[hook])
            good.append(root / f"good{i}.wav")
            shutil.copy(tracks[i + 4], good[-1])
        good.append(root / "clip.mp4")
        shutil.copy(small_media["clips"][0], good[-1])

        def settled():
            jobs = [j for j in d.jobs() if j["kind"] == "analyze"]  # (the clip also gets a proxy job)
            return len(jobs) == len(bad) + len(good) and all(j["state"] in ("done", "quarantined", "failed") for j in jobs) and jobs

        jobs = wait_until(settled, 150, interval=0.3, what="every job in a final state")
        by_path = {Path(j["path"]).name: j for j in jobs}
        for hook, path in bad.items():
            job = by_path[path.name]
            assert job["state"] == "quarantined", job
            assert job["attempts"] == 2, job
            assert FAULTS[hook] in job["error"], job
        for path in good:
            job = by_path[path.name]
            said = [line for line in d.log_path.read_text(errors="replace").splitlines() if path.name in line]
            assert job["state"] == "done" and job["attempts"] == 0, (job, said)
        doc = d.status()
        problems = {Path(p["path"]).name: p for p in doc["problems"]}
        assert set(problems) == {p.name for p in bad.values()}
        for hook, path in bad.items():
            assert FAULTS[hook] in problems[path.name]["error"]
        assert doc["files"]["analyzed"] == len(good)
        assert not doc["running"]
        # The daemon is fine, and a person can put the quarantined jobs back.
        assert d.proc.poll() is None
        r = cli("retry", "--failed", config=cfg)
        assert r.returncode == 0 and f"requeued {len(bad)}" in r.stdout, r.stdout + r.stderr
        assert d.proc.poll() is None
    record("worker faults: kinds quarantined with a reason", ", ".join(f"{h.strip('_')}: {m}" for h, m in FAULTS.items()))


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc: no psutil needed)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def test_idle_worker_killed_by_the_oom_killer_does_not_take_the_daemon_down(rlayout, tracks):
    """The kernel's OOM killer may pick an *idle* worker. Nothing was running on it, so no job
    fails, but the pool is broken: the next job handed to it must still run."""
    root = rlayout["root"]
    with DaemonProcess(rlayout["config"], rlayout["state"]) as d:
        shutil.copy(tracks[0], root / "first.wav")
        wait_until(lambda: d.status()["files"]["analyzed"] == 1, 60, what="first file analysed")
        wait_until(lambda: not d.status()["running"], 30, what="idle workers")
        workers = [p for p in children(d.proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        assert workers, "no worker process found"
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(1.0)  # let the pool notice
        for i in (1, 2, 3):
            shutil.copy(tracks[i], root / f"after{i}.wav")
        wait_until(lambda: d.status()["files"]["analyzed"] == 4, 60, what="files after the kill analysed")
        assert d.proc.poll() is None, d.output()
        assert all(j["attempts"] == 0 for j in d.jobs()), d.jobs()


def test_crash_after_crash_never_charges_a_good_job_nor_stalls(tracks, tmp_path, monkeypatch):
    """Round after round, workers crash (SIGKILL, SIGSEGV) next to good jobs, straight through
    the executor the daemon uses. Each crash breaks the pool; every good job must still finish
    uncharged and nothing may stall. Found this way: a good job charged for a neighbour's crash
    when the pool's own thread reaped the dead worker first, and analysis stopped for good when
    a worker was terminated holding the progress queue's lock."""
    from types import SimpleNamespace

    from montaged.executors import LocalExecutor
    from montaged.tasks import analyze_task

    monkeypatch.setenv("MONTAGED_TEST_HOOKS", "1")  # the spawned workers inherit it
    names = ["__kill__a.wav", "good1.wav", "__segv__b.wav", "good2.wav", "good3.wav", "__kill__c.wav", "good4.wav"]
    for name in names:
        shutil.copy(tracks[0], tmp_path / name)
    rounds = 40 if SOAK else 8
    ex = LocalExecutor(2)
    charged, next_id = [], 0
    try:
        for r in range(rounds):
            queue = []
            for name in names:
                next_id += 1
                queue.append(SimpleNamespace(id=next_id, path=str(tmp_path / name)))
            left = {j.id for j in queue}
            deadline = time.monotonic() + 120
            while left:
                assert time.monotonic() < deadline, f"round {r}: stalled with {sorted(left)} unfinished"
                while queue and ex.free_slots("analysis") > 0:
                    job = queue.pop(0)
                    ex.submit(job, "analysis", analyze_task, job.path)
                for out in ex.poll():
                    if not out.ok and not out.charged:
                        queue.append(out.job)  # interrupted by a neighbour: runs again
                        continue
                    left.discard(out.job.id)
                    if Path(out.job.path).name.startswith("good") and not out.ok:
                        charged.append((r, Path(out.job.path).name, out.error))
                time.sleep(0.01)
    finally:
        ex.shutdown(wait=False)
    assert not charged, charged
    assert ex.pool_rebuilds >= 3 * rounds
    record("worker faults: pool breakages in a row", f"{ex.pool_rebuilds} in {rounds} rounds, good jobs charged 0")
