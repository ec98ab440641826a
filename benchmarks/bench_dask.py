"""Overhead of the distributed path: the same files analysed by the local process pool and by a
local Dask cluster of the same size (2 worker processes x 1 thread, ``LocalCluster(processes=True)``).

Both go through montaged's executor interface the way the daemon drives it (``free_slots``,
``submit``, ``poll``), with warm workers (a first, unmeasured batch imports everything), polled
every 5 ms so that the daemon's 0.2 s tick does not hide the executors' own latency. Runs are
interleaved (local, dask, then dask, local...) so both see the same machine load, and the
overhead is the median of the per-run ratios dask/local (robust to load drifting over minutes).

Two figures:

- batch: wall time to analyse the whole set (``--clips`` 640x360 clips of 4 s, 30 fps, plus
  ``--tracks`` 20 s WAV tracks), median/min/max over ``--runs``;
- round trip: per-job latency of a no-op job (submit -> outcome), 40 jobs with 2 slots, which is
  what the distributed path adds to every analysis (pickling, scheduler, events, result fetch).

    .venv/bin/python benchmarks/bench_dask.py             # 12 clips + 4 tracks, 5 runs
    .venv/bin/python benchmarks/bench_dask.py --smoke     # 2 clips, 1 run: a harness check

Writes ``benchmarks/results/dask.json`` (``--no-write`` to skip). Media is generated once into
``benchmarks/.cache/dask/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from montaged.config import settings_from_dict  # noqa: E402
from montaged.executors import LocalExecutor  # noqa: E402
from montaged.jobs import Job  # noqa: E402
from montaged.synth.music import make_track  # noqa: E402
from montaged.synth.video import make_clip  # noqa: E402
from montaged.tasks import analyze_task  # noqa: E402
try:
    from benchmarks.common import cpu_model
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from common import cpu_model

CACHE = ROOT / "benchmarks" / ".cache" / "dask"
RESULTS = ROOT / "benchmarks" / "results" / "dask.json"
WORKERS = 2


def noop_task(path: str) -> str:
    """A job that does nothing: its round trip is the executor's own cost."""
    return path


def machine() -> dict:
    cpu = cpu_model()
    import distributed

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "distributed": distributed.__version__, "system": f"{platform.system()} {platform.release()}",
            "load_at_start": os.getloadavg()[0]}


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def make_media(folder: Path, clips: int, tracks: int, clip_s: float) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(clips):
        p = folder / f"clip{i:02d}_{clip_s:g}s.mp4"
        if not p.exists():
            make_clip(str(p), duration=clip_s, size=(640, 360), seed=i, motion="pan")
        paths.append(str(p))
    for i in range(tracks):
        p = folder / f"track{i:02d}.wav"
        if not p.exists():
            make_track(str(p), bpm=96 + 8 * i, duration=20.0, seed=i, channels=2, sample_rate=44100)
        paths.append(str(p))
    return paths


_next_id = iter(range(1, 10**9))


def run_batch(executor, fn, args: list[str]) -> tuple[float, list[float]]:
    """Analyse every path like the daemon would; returns (wall seconds, per-job seconds)."""
    todo = list(args)
    submitted: dict[int, float] = {}
    latencies = []
    started = time.perf_counter()
    while todo or submitted:
        while todo and executor.free_slots("analysis") > 0:
            job = Job(next(_next_id), "analyze", "running", todo[0], None, None, None, 0, None)
            executor.submit(job, "analysis", fn, todo.pop(0))
            submitted[job.id] = time.perf_counter()
        for out in executor.poll():
            if not out.ok:
                raise SystemExit(f"job {out.job.path} failed: {out.error}")
            latencies.append(time.perf_counter() - submitted.pop(out.job.id))
        executor.drain_progress()
        time.sleep(0.005)
    return time.perf_counter() - started, latencies


def wait_for_dask(executor, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while executor.info()["analysis_on"] != "dask" or executor.info()["threads"] < WORKERS:
        if time.monotonic() > deadline:
            raise SystemExit(f"the Dask executor did not connect: {executor.info()}")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 clips, one run: checks the benchmark works")
    parser.add_argument("--runs", type=int, default=None, help="measured batches per executor (default 5, smoke 1)")
    parser.add_argument("--clips", type=int, default=12, help="640x360 clips in the set")
    parser.add_argument("--tracks", type=int, default=4, help="20 s WAV tracks in the set")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/dask.json")
    args = parser.parse_args(argv)
    from distributed import LocalCluster

    from montaged.dask_executor import DaskExecutor

    runs = args.runs or (1 if args.smoke else 5)
    clips, tracks, clip_s = (2, 0, 2.0) if args.smoke else (args.clips, args.tracks, 4.0)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, distributed {info['distributed']}, "
          f"load {info['load_at_start']:.1f}")
    paths = make_media(CACHE, clips, tracks, clip_s)
    print(f"set: {clips} clips 640x360 {clip_s:g} s + {tracks} tracks of 20 s; {WORKERS} workers x 1 thread each side")

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
    settings = settings_from_dict({
        "paths": {"watch": [str(CACHE)], "output": str(CACHE.parent / "dask-out"), "state": str(CACHE.parent / "dask-state")},
        "workers": {"executor": "dask", "dask_scheduler": cluster.scheduler_address, "processes": WORKERS},
    })
    local = LocalExecutor(WORKERS)
    dask = DaskExecutor(settings)
    try:
        wait_for_dask(dask)
        for ex in (local, dask):  # warm-up: worker start, imports, first decode
            run_batch(ex, analyze_task, paths[:WORKERS])
            run_batch(ex, noop_task, ["warm"] * WORKERS)
        batch = {"local": [], "dask": []}
        trip = {"local": [], "dask": []}
        for i in range(runs):
            # Alternate which goes first: the load of a shared machine drifts within a pair too.
            pair = (("local", local), ("dask", dask))
            for name, ex in pair if i % 2 == 0 else pair[::-1]:
                wall, _ = run_batch(ex, analyze_task, paths)
                batch[name].append(wall)
                _, lat = run_batch(ex, noop_task, [f"noop{i}-{k}" for k in range(8 if args.smoke else 40)])
                trip[name].append(statistics.median(lat))
                print(f"run {i + 1}/{runs} {name:5s}: batch {wall:6.2f} s, no-op round trip {trip[name][-1] * 1000:6.1f} ms", flush=True)
        if dask.submitted["local"]:
            raise SystemExit(f"{dask.submitted['local']} job(s) fell back to the local pool: the Dask numbers are not clean")
    finally:
        dask.shutdown(wait=False)
        local.shutdown(wait=False)
        cluster.close()

    b = {k: stats(v) for k, v in batch.items()}
    t = {k: stats(v) for k, v in trip.items()}
    # Each run's dask batch against the local batch measured right next to it: robust to the
    # load drifting over the minutes of the benchmark, unlike a ratio of the two medians.
    ratios = stats([d / lo for d, lo in zip(batch["dask"], batch["local"])])
    overhead = ratios["median"] - 1
    per_job = (t["dask"]["median"] - t["local"]["median"]) * 1000
    for name in ("local", "dask"):
        print(f"{name:5s}: batch median {b[name]['median']:.2f} s (min {b[name]['min']:.2f}, max {b[name]['max']:.2f}); "
              f"round trip median {t[name]['median'] * 1000:.1f} ms (min {t[name]['min'] * 1000:.1f}, max {t[name]['max'] * 1000:.1f})")
    print(f"dask vs local, paired runs: batch time x{ratios['median']:.3f} (min x{ratios['min']:.3f}, max x{ratios['max']:.3f}), "
          f"{overhead * 100:+.1f}% median; {per_job:+.1f} ms per job round trip")
    result = {"machine": info, "smoke": args.smoke,
              "set": {"clips": clips, "clip_seconds": clip_s, "size": [640, 360], "tracks": tracks, "track_seconds": 20.0, "workers": WORKERS, "threads_per_worker": 1},
              "batch_seconds": b, "noop_round_trip_seconds": t,
              "dask_over_local_batch_ratio": ratios,
              "dask_overhead": {"batch_fraction": overhead, "per_job_ms": per_job}}
    if not args.no_write and not args.smoke:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, RESULTS)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
