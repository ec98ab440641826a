"""End-to-end benchmarks through the real daemon: a ``montaged run`` subprocess, a real watch
folder with inotify, real files copied in, the preview measured on disk.

3. Time-to-preview, warm: the 12-clip folder (12 x 20 s 1080p H.264, 1-s GOP, a third of them
   portrait phone clips coded 1920x1080 with rotation=90, a mix of 25 and 30 fps) and a 3-minute
   AAC track are copied in and analysed; then ``montage.toml`` (``duration = 60``) is dropped.
   Measured: seconds from the manifest's close to the rename of ``preview.mp4`` (its inode is
   polled every 10 ms). Re-triggered with another ``seed``: the manifest is removed (the folder is
   forgotten) and written again, so every run is a first manifest (no re-render debounce).
4. Time-to-preview, cold: a fresh daemon (empty state, pools warmed up on a tiny folder), then the
   same 12 clips and track are copied into a new folder at 40x their real time (chunked writes
   with sleeps: 20 s of footage takes 0.5 s), the manifest dropped right after the last file.
   Measured: seconds from the manifest's close to the preview's rename.
5. Scale: 2,000 distinct 1-second WAVs in 20 folders, tracked and analysed by one daemon. Then
   ``montaged status --json`` (CLI subprocess wall time) and ``status_document`` (library call)
   latency, the daemon's memory (VmRSS / VmHWM, main process and workers), and its idle CPU over
   30 s (utime + stime of the daemon and every descendant, from /proc, before and after).

The daemon runs with the built-in defaults (settle 3 s, 2 analysis processes, 640x360 preview)
except for the paths. Media is generated with montaged.synth and cached in
``benchmarks/.cache/e2e``; the three 1080p encodes are bench_video's (``SHARED_CLIPS``, cached in
``benchmarks/.cache/video``, made there two at a time when missing).
Results go to ``benchmarks/results/e2e.json``.

    .venv/bin/python -m benchmarks.bench_e2e              # full
    .venv/bin/python -m benchmarks.bench_e2e --smoke      # 2 tiny clips, seconds: the harness check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
try:
    from benchmarks.common import cpu_model, memory_gib
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from common import cpu_model, memory_gib

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = ROOT / "benchmarks" / ".cache" / "e2e"
RESULTS = ROOT / "benchmarks" / "results" / "e2e.json"

TARGET_WARM_S = 10.0
TARGET_COLD_S = 20.0
TARGET_STATUS_MS = 300.0
TARGET_IDLE_CPU = 1.0  # percent of one core
COPY_SPEED = 40.0  # x real time: 20 s of footage in 0.5 s
POLL = 0.01  # seconds between looks at the preview's inode
MEDIA_VERSION = 2  # bump to regenerate the cached media
CAMERA_BITRATE = 17_000_000  # a phone's 1080p30 H.264, as bench_video uses


@dataclass(frozen=True)
class Spec:
    clips: int
    unique: int  # clips actually encoded; the others are distinct copies of them
    clip_seconds: float
    size: tuple[int, int]
    track_seconds: float
    preview_seconds: float
    warm_runs: int
    cold_runs: int
    scale_files: int
    idle_seconds: float
    status_runs: int
    settle_seconds: float | None = None  # None: the daemon's default (3 s); the smoke run shortens it


# Three encodes (bench_video's, see SHARED_CLIPS), each copied to four distinct files: a camera-like
# 20 s 1080p encode is ~60 s of CPU, and every file costs the daemon the same whether its pictures
# repeat another's or not.
FULL = Spec(clips=12, unique=3, clip_seconds=20.0, size=(1920, 1080), track_seconds=180.0, preview_seconds=60.0,
            warm_runs=5, cold_runs=3, scale_files=2000, idle_seconds=30.0, status_runs=11)
SMOKE = Spec(clips=2, unique=2, clip_seconds=3.0, size=(320, 180), track_seconds=12.0, preview_seconds=5.0,
             warm_runs=2, cold_runs=1, scale_files=20, idle_seconds=1.0, status_runs=3, settle_seconds=0.5)
# What a cold daemon chews on first, so its pools are started: content unlike the measured media
# (other lengths), or the measured files would be recognised by their digest and not analysed.
WARMUP = Spec(clips=1, unique=1, clip_seconds=2.0, size=(320, 180), track_seconds=8.0, preview_seconds=3.0,
              warm_runs=0, cold_runs=0, scale_files=0, idle_seconds=0.0, status_runs=0)


# --- reporting helpers ---------------------------------------------------------------------------


def stats(values: list[float], ndigits: int = 3) -> dict:
    return {"median": round(statistics.median(values), ndigits), "min": round(min(values), ndigits),
            "max": round(max(values), ndigits), "runs": len(values)}


def machine() -> dict:
    cpu = cpu_model()
    import av

    mem = memory_gib()
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)), "memory_gib": mem,
            "python": platform.python_version(),
            "numpy": np.__version__, "pyav": av.__version__, "system": f"{platform.system()} {platform.release()}"}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def say(message: str) -> None:
    print(message, flush=True)


# --- media ---------------------------------------------------------------------------------------


# The camera clips are three of bench_video's suite: the same kind of footage (1-s GOP, sensor
# noise, 17 Mbit/s) and, generated once for both benchmarks, a camera-like encode fewer on a
# fresh clone (~60 s of CPU each).
SHARED_CLIPS = ("1080p30-gop30", "1080p25-gop25", "1080p30-gop30-rot90")


def clip_plan(spec: Spec) -> list[dict]:
    """make_clip arguments of every clip: 25 and 30 fps, portrait phone clips (coded landscape,
    rotation 90, as phones record), a 1-s GOP, 2 to 5 cuts at uneven places; at 1080p,
    camera-like: sensor noise and 17 Mbit/s, so decoding costs what real footage costs (those
    are bench_video's clips, ``"suite"`` names them).

    Only ``spec.unique`` clips are encoded; clip ``i`` beyond those is a copy of clip
    ``i % unique`` made distinct by an MP4 ``free`` box (see :func:`distinct_copy`): different
    content digest, so it is analysed and decoded like any other file, at the cost of a file copy."""
    camera = spec.size[1] >= 720
    plan = []
    portrait = 3 if spec.unique > 3 else spec.unique - 1
    for i in range(spec.clips):
        name = f"clip{i:02d}.mp4"
        if i >= spec.unique:
            plan.append({**plan[i % spec.unique], "name": name, "copy_of": plan[i % spec.unique]["name"],
                         "copy": i // spec.unique})
            continue
        if camera and i < len(SHARED_CLIPS):
            suite = _suite_spec(SHARED_CLIPS[i])
            plan.append({"name": name, "suite": suite["name"], "duration": spec.clip_seconds, "fps": suite["fps"],
                         "size": list(suite["size"]), "gop": suite["gop"], "rotation": suite.get("rotation", 0),
                         "noise": suite.get("noise", 0.02), "bitrate": suite.get("bitrate", CAMERA_BITRATE)})
            continue
        fps = 25 if i % 3 == 1 else 30
        n = int(round(spec.clip_seconds * fps))
        k = 2 + i % 3
        jitter = (i * 7 % 11) - 5 if n > 200 else 0
        cuts = sorted({int(n * (j + 1) / (k + 1)) + jitter for j in range(k)})
        plan.append({"name": name, "duration": spec.clip_seconds, "fps": fps,
                     "size": list(spec.size), "cuts": cuts, "gop": fps, "rotation": 90 if i == portrait else 0,
                     "seed": i + 1, "noise": 0.02 if camera else 0.0, "bitrate": CAMERA_BITRATE if camera else None})
    return plan


def _suite_spec(name: str) -> dict:
    from benchmarks import bench_video

    return next(s for s in bench_video.SUITE if s["name"] == name)


def _shared_clips(plan: list[dict], seconds: float) -> dict[str, Path]:
    """bench_video's clips the plan names (generated there, two at a time, when missing)."""
    from benchmarks import bench_video

    specs = [_suite_spec(a["suite"]) for a in plan if "suite" in a and "copy_of" not in a]
    if not specs:
        return {}
    bench_video.generate(specs, seconds)
    return {s["name"]: bench_video.make_suite_clip(s, seconds)[0] for s in specs}


def distinct_copy(src: Path, dst: Path, tag: str) -> None:
    """Copy an MP4 and append a top-level ``free`` box holding ``tag``: players and demuxers skip
    ``free`` boxes, so the copy decodes exactly like the original but has another digest."""
    payload = f"montaged-bench copy {tag}".encode()
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "ab") as f:
        f.write(struct.pack(">I4s", 8 + len(payload), b"free") + payload)
    os.replace(tmp, dst)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` with ``src``'s bytes: a hard link (no second copy of a 40 MB clip in the cache)
    or, across file systems, a copy."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _make_clip(path: str, args: dict) -> str:
    from montaged.synth.video import make_clip

    make_clip(path, duration=args["duration"], fps=args["fps"], size=tuple(args["size"]), cuts=args["cuts"],
              gop=args["gop"], rotation=args["rotation"], seed=args["seed"], noise=args["noise"], bitrate=args["bitrate"])
    return path


def _make_track(path: str, seconds: float) -> str:
    from montaged.synth.music import make_track

    make_track(path, bpm=124.0, duration=seconds, seed=7)
    return path


def media(spec: Spec, cache: Path = CACHE) -> dict:
    """The clips and the track (generated once, two at a time, then reused): {name: path}, plus
    {"_seconds": {name: real-time length}}."""
    folder = cache / f"{spec.size[1]}p-{spec.clip_seconds:g}s"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "media.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    todo = []
    plan = clip_plan(spec)
    shared = _shared_clips(plan, spec.clip_seconds)
    for args in plan:
        if "copy_of" in args:
            continue
        if "suite" in args:
            source = shared[args["suite"]]
            key = json.dumps([MEDIA_VERSION, args, source.name], sort_keys=True)
            if index.get(args["name"]) != key or not (folder / args["name"]).is_file():
                link_or_copy(source, folder / args["name"])
                index[args["name"]] = key
                index_path.write_text(json.dumps(index, indent=1))
            continue
        key = json.dumps([MEDIA_VERSION, args], sort_keys=True)
        if index.get(args["name"]) != key or not (folder / args["name"]).is_file():
            todo.append(("clip", args, key))
    track_key = json.dumps([MEDIA_VERSION, "track", spec.track_seconds])
    if index.get("track.m4a") != track_key or not (folder / "track.m4a").is_file():
        todo.append(("track", None, track_key))
    if todo:
        say(f"  generating {len(todo)} media file(s) in {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder} "
            f"(cached for later runs)")
        started = time.perf_counter()
        workers = max(1, min(2, os.cpu_count() or 1, len(todo)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = []
            for kind, args, key in todo:
                if kind == "clip":
                    futures.append((args["name"], key, pool.submit(_make_clip, str(folder / args["name"]), args)))
                else:
                    futures.append(("track.m4a", key, pool.submit(_make_track, str(folder / "track.m4a"), spec.track_seconds)))
            for name, key, future in futures:
                future.result()
                index[name] = key
                index_path.write_text(json.dumps(index, indent=1))
                say(f"    {name} ({time.perf_counter() - started:.0f} s)")
    for args in plan:
        if "copy_of" in args:
            key = json.dumps([MEDIA_VERSION, args, index.get(args["copy_of"])], sort_keys=True)
            if index.get(args["name"]) != key or not (folder / args["name"]).is_file():
                distinct_copy(folder / args["copy_of"], folder / args["name"], f"{args['copy']} of {args['copy_of']}")
                index[args["name"]] = key
                index_path.write_text(json.dumps(index, indent=1))
    files = {a["name"]: folder / a["name"] for a in plan}
    files["track.m4a"] = folder / "track.m4a"
    seconds = {a["name"]: a["duration"] for a in plan}
    seconds["track.m4a"] = spec.track_seconds
    return {"files": files, "seconds": seconds, "plan": plan}


def write_wav(path: Path, seed: int, seconds: float = 1.0, rate: int = 22050) -> None:
    """A short, distinct mono WAV: clicks at a seed-dependent tempo over quiet noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = rng.standard_normal(n).astype(np.float32) * 0.05
    period = int(rate * 60.0 / rng.uniform(90, 150))
    for start in range(0, n, period):
        x[start:start + 200] += np.hanning(400)[200:].astype(np.float32)[: n - start] * 0.8
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def slow_copy(src: Path, dst: Path, seconds: float, chunk: int = 256 * 1024) -> None:
    """Copy ``src`` so that it takes ``seconds``: chunked writes with sleeps, as a card reader or
    a network copy delivers a file (open for writing the whole time, closed at the end)."""
    size = src.stat().st_size
    rate = size / max(seconds, 1e-6)
    start = time.monotonic()
    done = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            data = fin.read(chunk)
            if not data:
                break
            fout.write(data)
            fout.flush()
            done += len(data)
            ahead = start + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


# --- the daemon ----------------------------------------------------------------------------------


def write_config(path: Path, root: Path, output: Path, state: Path, settle_seconds: float | None = None) -> Path:
    lines = ["[paths]", f"watch = [{json.dumps(str(root))}]", f"output = {json.dumps(str(output))}",
             f"state = {json.dumps(str(state))}"]
    if settle_seconds is not None:
        lines += ["", "[watch]", f"settle_seconds = {settle_seconds}"]
    if os.geteuid() == 0:
        lines += ["", "[daemon]", "allow_root = true"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    """``montaged run`` in its own session, stopped (and its process group killed) on exit."""

    def __init__(self, work: Path, name: str, settle_seconds: float | None = None):
        self.work = work / name
        self.root = self.work / "ingest"
        self.output = self.work / "previews"
        self.state = self.work / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = write_config(self.work / "montaged.toml", self.root, self.output, self.state, settle_seconds)
        self.log_path = self.work / "daemon.out"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "Daemon":
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "MONTAGED_CONFIG", "STATE_DIRECTORY")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "montaged", "run", "--config", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.wait(lambda: self._ready(), timeout, "the daemon to start")
        return self

    def _ready(self) -> bool:
        doc = self.status()
        roots = doc["daemon"]["roots"]
        return bool(doc["daemon"]["running"] and roots and all(r["observer"] for r in roots))

    def status(self) -> dict:
        from montaged.status import status_document

        return status_document(self.state)

    def wait(self, predicate, timeout: float, what: str, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}) while waiting for {what}:\n{self.tail()}")
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def folder(self, path: Path) -> dict | None:
        for f in self.status()["folders"]:
            if f["path"] == str(path):
                return f
        return None

    def analysed(self, paths: list[Path]) -> bool:
        from montaged.store import Store

        wanted = {str(p) for p in paths}
        with Store(self.state, readonly=True) as store:
            if not store.current:
                return False
            rows = store.query("SELECT path, state, error FROM files WHERE state != 'gone'")
        done = {r["path"]: r for r in rows if r["path"] in wanted}
        bad = [f"{p}: {r['error']}" for p, r in done.items() if r["state"] in ("failed", "quarantined")]
        if bad:
            raise RuntimeError("files could not be analysed: " + "; ".join(bad))
        return len(done) == len(wanted) and all(r["state"] == "analyzed" for r in done.values())

    def background_done(self) -> bool:
        """No proxy job queued or running (true at once for a daemon that makes none)."""
        from montaged.status import job_list

        return not any(j["kind"] == "proxy" and j["state"] in ("queued", "running") for j in job_list(self.state))

    def pids(self) -> list[int]:
        """The daemon and all its descendants (analysis, render and segment workers)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (+ cutime + cstime: children already reaped) of ``pids``, in clock ticks."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total


def memory(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(line.split()[1]) / 1024, 1)  # MiB
    except OSError:
        pass
    return out


def wait_replaced(path: Path, before: int | None, timeout: float) -> float:
    """Poll ``path`` every POLL seconds until it exists with an inode other than ``before``;
    returns the monotonic time it was seen. Cheap (one stat), so it does not slow the render."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(path).st_ino != before:
                return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(POLL)
    raise RuntimeError(f"no new {path.name} after {timeout:.0f} s")


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def write_manifest(path: Path, duration: float, seed: int) -> float:
    """Write the manifest; returns the monotonic time of its close."""
    with open(path, "w") as f:
        f.write(f'title = "bench"\nmusic = "track.m4a"\nduration = {duration:g}\nseed = {seed}\n')
    return time.monotonic()


def check_preview(path: Path, duration: float) -> dict:
    """The preview is a real H.264 + AAC file as long as its edit list says (and near the asked
    length: the plan ends on a beat), so a number is never measured on a broken output."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "codec": v.codec_context.name,
                "audio": c.streams.audio[0].codec_context.name if c.streams.audio else None,
                "duration": round(float(c.duration / 1e6), 2) if c.duration else None}
    edl = path.with_name("preview.edl.json")
    planned = json.loads(edl.read_text())["duration"] if edl.is_file() else duration
    info["cuts"] = len(json.loads(edl.read_text())["cuts"]) if edl.is_file() else None
    if (info["codec"] != "h264" or info["audio"] != "aac" or not info["duration"]
            or abs(info["duration"] - planned) > 0.2 or abs(planned - duration) > 0.1 * duration + 1.0):
        raise RuntimeError(f"unexpected preview {path}: {info}, planned {planned} s, asked {duration} s")
    return info


def _render_job_seconds(daemon: Daemon) -> list[dict]:
    from montaged.status import job_list

    return [j for j in job_list(daemon.state) if j["kind"] == "render"]


# --- 3. warm -------------------------------------------------------------------------------------


def bench_warm(work: Path, spec: Spec, files: dict) -> dict:
    with Daemon(work, "warm", spec.settle_seconds) as d:
        folder = d.root / "trip"
        folder.mkdir()
        t = time.monotonic()
        for name, src in files["files"].items():
            shutil.copyfile(src, folder / name)
        paths = [folder / n for n in files["files"]]
        d.wait(lambda: d.analysed(paths), 900, "the analysis of the warm folder", interval=0.5)
        analysis_s = time.monotonic() - t
        say(f"  warm folder: {len(paths)} files copied and analysed in {analysis_s:.1f} s")
        # Work the daemon does after the analysis, in idle time (low-resolution proxies, when it
        # makes them): "already analysed" means that is finished too.
        d.wait(lambda: d.background_done(), 1800, "the daemon's background jobs", interval=1.0)
        background_s = time.monotonic() - t - analysis_s
        if background_s > 1.0:
            say(f"  background jobs (proxies) finished {background_s:.1f} s later")
        preview = d.output / "trip" / "preview.mp4"
        manifest = folder / "montage.toml"
        runs = []
        for k in range(spec.warm_runs):
            if manifest.exists():
                manifest.unlink()
                d.wait(lambda: d.folder(folder) is None, 60, "the folder to be forgotten")
            before = inode(preview)
            load_before = load()
            t0 = write_manifest(manifest, spec.preview_seconds, seed=k + 1)
            t1 = wait_replaced(preview, before, 300)
            seconds = t1 - t0
            ready = d.wait(lambda: (f := d.folder(folder)) and f["state"] in ("ready", "failed") and f, 300,
                           "the folder to be ready")
            if ready["state"] != "ready":
                raise RuntimeError(f"warm preview failed: {ready['error']}")
            info = check_preview(preview, spec.preview_seconds)
            runs.append({"seconds": round(seconds, 3), "seed": k + 1, "load": load_before, "preview": info})
            say(f"  warm run {k + 1}: {seconds:.2f} s (load {load_before})")
        times = [r["seconds"] for r in runs]
        med = statistics.median(times)
        return {"analysis_seconds": round(analysis_s, 2), "background_seconds": round(background_s, 2), "runs": runs, "seconds": stats(times),
                "target_s": TARGET_WARM_S, "met": med <= TARGET_WARM_S,
                "note": "manifest removed and written again between runs: every run is a first manifest"}


# --- 4. cold -------------------------------------------------------------------------------------


def warm_up(d: Daemon, spec: Spec, tiny: dict) -> None:
    """Bring the daemon to the state of one that has been running: both pools started (one tiny
    analysis and one tiny preview), so the measurement does not include interpreter start-up."""
    folder = d.root / "warm-up"
    folder.mkdir()
    for name, src in tiny["files"].items():
        shutil.copyfile(src, folder / name)
    d.wait(lambda: d.analysed([folder / n for n in tiny["files"]]), 300, "the warm-up analysis")
    write_manifest(folder / "montage.toml", WARMUP.preview_seconds, seed=1)
    ready = d.wait(lambda: (f := d.folder(folder)) and f["state"] in ("ready", "failed") and f, 300, "the warm-up preview")
    if ready["state"] != "ready":
        raise RuntimeError(f"warm-up preview failed: {ready['error']}")


def bench_cold(work: Path, spec: Spec, files: dict, tiny: dict) -> dict:
    runs = []
    for k in range(spec.cold_runs):
        with Daemon(work, f"cold{k + 1}", spec.settle_seconds) as d:
            warm_up(d, spec, tiny)
            time.sleep(1.0)
            folder = d.root / "trip"
            folder.mkdir()
            preview = d.output / "trip" / "preview.mp4"
            load_before = load()
            t_copy = time.monotonic()
            # Clips first, the music last (the worst case: the music is needed by the plan).
            for name, src in files["files"].items():
                slow_copy(src, folder / name, files["seconds"][name] / COPY_SPEED)
            copy_s = time.monotonic() - t_copy
            t0 = write_manifest(folder / "montage.toml", spec.preview_seconds, seed=1)
            try:
                t1 = wait_replaced(preview, None, 900)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; folder: {d.folder(folder)}; running: {d.status()['running']}") from None
            ready = d.wait(lambda: (f := d.folder(folder)) and f["state"] in ("ready", "failed") and f, 300,
                           "the folder to be ready")
            if ready["state"] != "ready":
                raise RuntimeError(f"cold preview failed: {ready['error']}")
            info = check_preview(preview, spec.preview_seconds)
            run = {"seconds": round(t1 - t0, 3), "copy_seconds": round(copy_s, 2),
                   "since_copy_started": round(t1 - t_copy, 2), "load": load_before, "preview": info}
            runs.append(run)
            say(f"  cold run {k + 1}: {run['seconds']:.2f} s after the manifest (copy took {copy_s:.1f} s; "
                f"{run['since_copy_started']:.1f} s from the first byte; load {load_before})")
    times = [r["seconds"] for r in runs]
    return {"runs": runs, "seconds": stats(times), "target_s": TARGET_COLD_S, "met": statistics.median(times) <= TARGET_COLD_S,
            "copy_speed": COPY_SPEED}


# --- 5. scale ------------------------------------------------------------------------------------


def bench_scale(work: Path, spec: Spec) -> dict:
    from montaged.status import status_document

    d = Daemon(work, "scale", spec.settle_seconds)
    per_folder = 100 if spec.scale_files >= 100 else spec.scale_files
    t = time.perf_counter()
    paths = []
    for i in range(spec.scale_files):
        folder = d.root / f"set{i // per_folder:02d}"
        folder.mkdir(exist_ok=True)
        path = folder / f"take{i:04d}.wav"
        write_wav(path, seed=10_000 + i)
        paths.append(path)
    say(f"  {len(paths)} WAVs written in {time.perf_counter() - t:.1f} s")
    d.start()
    try:
        t = time.monotonic()

        def all_done():
            files = d.status()["files"]
            bad = files["failed"] + files["quarantined"]
            if bad:
                raise RuntimeError(f"{bad} of the scale files failed:\n{d.tail()}")
            return files["analyzed"] >= len(paths)

        d.wait(all_done, 1800, f"{len(paths)} files to be analysed", interval=1.0)
        analysis_s = time.monotonic() - t
        say(f"  {len(paths)} files tracked and analysed in {analysis_s:.1f} s ({len(paths) / analysis_s:.0f} files/s)")
        doc = d.status()
        observers = sorted({r["observer"] for r in doc["daemon"]["roots"]})
        time.sleep(3.0)  # let the last writes (progress, meta) land

        cli = [str(Path(sys.executable).with_name("montaged")), "status", "--json", "--config", str(d.config)]
        if not Path(cli[0]).exists():
            cli = [sys.executable, "-m", "montaged", *cli[1:]]
        cli_ms, lib_ms = [], []
        for _ in range(spec.status_runs):
            t0 = time.perf_counter()
            out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
            cli_ms.append((time.perf_counter() - t0) * 1000)
            if out.returncode != 0:
                raise RuntimeError(f"montaged status --json exited {out.returncode}: {out.stderr}")
            doc = json.loads(out.stdout)
            if doc["files"]["analyzed"] < len(paths):
                raise RuntimeError(f"status shows {doc['files']['analyzed']} analysed files, expected {len(paths)}")
        for _ in range(spec.status_runs * 2 + 1):
            t0 = time.perf_counter()
            status_document(d.state)
            lib_ms.append((time.perf_counter() - t0) * 1000)
        say(f"  status --json: median {statistics.median(cli_ms):.0f} ms (CLI), "
            f"{statistics.median(lib_ms):.1f} ms (library)")

        pids = d.pids()
        main_mem = memory(d.proc.pid)
        workers = [memory(p) for p in pids if p != d.proc.pid]
        load_before = load()
        tick = os.sysconf("SC_CLK_TCK")
        windows = []
        n_windows = 3 if spec.idle_seconds >= 3 else 1
        window = spec.idle_seconds / n_windows
        t_all, c_all = time.monotonic(), cpu_ticks(d.pids())
        for _ in range(n_windows):
            t0, c0 = time.monotonic(), cpu_ticks(d.pids())
            time.sleep(window)
            c1, t1 = cpu_ticks(d.pids()), time.monotonic()
            windows.append(100.0 * (c1 - c0) / tick / (t1 - t0))
        idle = 100.0 * (cpu_ticks(d.pids()) - c_all) / tick / (time.monotonic() - t_all)
        say(f"  idle CPU over {spec.idle_seconds:.0f} s: {idle:.2f} % of one core "
            f"(daemon + {len(pids) - 1} workers; observer {', '.join(o for o in observers if o)})")
    finally:
        d.stop()
    status_med = statistics.median(cli_ms)
    return {
        "files": len(paths), "folders": (len(paths) + per_folder - 1) // per_folder, "observer": observers,
        "analysis_seconds": round(analysis_s, 1), "files_per_second": round(len(paths) / analysis_s, 1),
        "status_cli_ms": stats(cli_ms, 1), "status_library_ms": stats(lib_ms, 2),
        "status_target_ms": TARGET_STATUS_MS, "status_met": status_med < TARGET_STATUS_MS,
        "daemon_memory_mib": main_mem, "worker_memory_mib": workers, "processes": len(pids),
        "idle_seconds": spec.idle_seconds, "idle_cpu_percent": round(idle, 3),
        "idle_cpu_windows_percent": stats(windows, 3), "idle_target_percent": TARGET_IDLE_CPU,
        "idle_met": idle < TARGET_IDLE_CPU, "load_at_idle_start": load_before,
    }


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 tiny clips, a short track, 40 files: checks the harness")
    parser.add_argument("--warm-runs", type=int, default=None, help="warm time-to-preview runs (default 5; smoke 2)")
    parser.add_argument("--cold-runs", type=int, default=None, help="cold time-to-preview runs (default 3; smoke 1)")
    parser.add_argument("--scale-files", type=int, default=None, help="files for the scale test (default 2000; smoke 40)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle CPU window (default 30; smoke 2)")
    parser.add_argument("--only", default="warm,cold,scale", help="comma-separated: warm, cold, scale")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default {RESULTS.relative_to(ROOT)}; smoke: not written unless given)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temporary folder, removed after)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"media cache (default {CACHE.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # A stopped benchmark (Ctrl-C, SIGTERM, timeout) still stops the daemons it started.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    base = SMOKE if args.smoke else FULL
    overrides = {k: v for k, v in {"warm_runs": args.warm_runs, "cold_runs": args.cold_runs, "scale_files": args.scale_files,
                                   "idle_seconds": args.idle_seconds}.items() if v is not None}
    spec = Spec(**{**asdict(base), **overrides, "size": base.size})
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    out = args.out if args.out is not None else (None if args.smoke else RESULTS)

    info = machine()
    say(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']}, "
        f"PyAV {info['pyav']}; load average {load()}")
    report = {"benchmark": "e2e", "smoke": args.smoke, "machine": info, "load_at_start": load(),
              "spec": asdict(spec), "config": "built-in defaults except [paths] (settle_seconds 3, 2 analysis "
              "processes, 640x360 preview, x264 superfast crf 23)" + (f"; smoke: settle_seconds {spec.settle_seconds}"
                                                                     if spec.settle_seconds is not None else "")}
    t_total = time.perf_counter()
    if only & {"warm", "cold"}:
        files = media(spec, args.cache)
        report["media"] = {"clips": spec.clips, "encoded": spec.unique, "clip_seconds": spec.clip_seconds, "size": list(spec.size),
                           "bitrate": files["plan"][0]["bitrate"], "noise": files["plan"][0]["noise"],
                           "track_seconds": spec.track_seconds, "gop_seconds": 1,
                           "portrait": sum(1 for a in files["plan"] if a["rotation"]), "fps": sorted({a["fps"] for a in files["plan"]})}
    work = args.work or Path(tempfile.mkdtemp(prefix="montaged-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = []
    try:
        # Each part on its own: a part that fails (a daemon bug, a timeout) is recorded with its
        # reason and the others are still measured.
        for part in ("warm", "cold", "scale"):
            if part not in only:
                continue
            if part == "warm":
                say(f"time-to-preview, warm ({spec.clips} x {spec.clip_seconds:g} s {spec.size[1]}p clips, "
                    f"{spec.preview_seconds:g} s preview):")
                run = lambda: bench_warm(work, spec, files)  # noqa: E731
            elif part == "cold":
                say(f"time-to-preview, cold (copied at {COPY_SPEED:g}x real time, manifest right after):")
                run = lambda: bench_cold(work, spec, files, media(WARMUP, args.cache))  # noqa: E731
            else:
                say(f"scale ({spec.scale_files} files):")
                run = lambda: bench_scale(work, spec)  # noqa: E731
            try:
                report[part] = run()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                say(f"  {part} FAILED: {exc}")
                report[f"{part}_error"] = str(exc)[:4000]
                failed.append(part)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["load_at_end"] = load()
    report["seconds"] = round(time.perf_counter() - t_total, 1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out)
        say(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
