"""Preview speed: edit planning and the whole preview (plan + render + exports).

1. Planning: 2,000 candidate scenes (100 clips x 20 scenes) against a 3-minute track, 60 s
   preview. Target: < 100 ms.
2. Preview: a 60 s 640x360 preview from 12 x 20 s 1080p clips (two of them portrait phone clips,
   coded 1920x1080 with rotation=90; a mix of 25 and 30 fps) and a 3-minute track, for clips that
   are already analysed. Target: < 10 s on the machine it runs on. Measured twice: rendering
   from the 1080p originals, and from 360p proxies (``render.make_proxy``, made once after
   analysis; their cost is reported separately).

3. Folder shapes (``--shapes``, planning only, no media): two long single shots, six 10-s clips,
   many short clips, one long clip plus many short, mixed orientation, short footage; for each,
   the asked against the delivered duration, seconds shown twice, clips never shown, and every
   clip's share of the screen time against its share of the footage, over 5 seeds. Results go
   to ``benchmarks/results/preview_shapes.json``.

The media is generated with montaged.synth and cached in ``benchmarks/.cache/``. Features are
built from the generators' truth (exact cuts), so the numbers measure planning and rendering,
not analysis. Every measurement is repeated; median, min and max are reported with the machine.
Results go to ``benchmarks/results/preview.json``.

    .venv/bin/python benchmarks/bench_preview.py            # full (first run generates ~2 min of media)
    .venv/bin/python benchmarks/bench_preview.py --smoke    # tiny and quick, for CI
    .venv/bin/python benchmarks/bench_preview.py --shapes   # folder shapes: durations, screen time
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from montaged.analysis import Analysis  # noqa: E402
from montaged.montage.plan import plan_edit  # noqa: E402
from montaged.montage.preview import plan_folder, write_outputs  # noqa: E402
from montaged.montage.render import make_proxy  # noqa: E402
from montaged.synth.music import make_track  # noqa: E402
from montaged.synth.video import make_clip  # noqa: E402
try:
    from benchmarks.common import cpu_model
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from common import cpu_model

try:
    from montaged.config import PreviewConfig
except ImportError:  # pragma: no cover
    PreviewConfig = None

CACHE = ROOT / "benchmarks" / ".cache" / "preview"
RESULTS = ROOT / "benchmarks" / "results" / "preview.json"
SHAPES = ROOT / "benchmarks" / "results" / "preview_shapes.json"


def machine() -> dict:
    cpu = cpu_model()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "pyav": av.__version__,
            "libavcodec": ".".join(str(x) for x in av.library_versions.get("libavcodec", ())),
            "system": f"{platform.system()} {platform.release()}", "load_at_start": load}


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


# --- features from truth -------------------------------------------------------------------------


def clip_analysis(truth, seed: int) -> Analysis:
    rng = np.random.default_rng(seed)
    ft = np.asarray(truth.frame_times) - truth.frame_times[0]
    bounds = [0, *truth.cut_frames, truth.n_frames]
    scenes = []
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        scenes.append({"start": float(ft[a]), "end": float(ft[b]) if b < truth.n_frames else float(truth.duration),
                       "start_frame": a, "end_frame": b, "motion": float(rng.random()),
                       "sharpness": float(rng.uniform(0.3, 1)), "brightness": float(rng.uniform(0.3, 0.7)),
                       "contrast": 0.5, "colorfulness": 0.5, "signature": rng.random(16).tolist(),
                       "best_in": float(ft[a])})
    dw, dh = (truth.height, truth.width) if truth.rotation % 180 else (truth.width, truth.height)
    features = {"duration": truth.duration, "fps": truth.fps, "width": truth.width, "height": truth.height,
                "display_width": dw, "display_height": dh, "rotation": truth.rotation, "sar": 1.0,
                "scenes": scenes}
    return Analysis("video", features, {"frame_times": ft, "motion": rng.random(len(ft)).astype(np.float32)})


def track_analysis(truth) -> Analysis:
    levels = {"intro": "low", "verse": "mid", "breakdown": "low", "drop": "high", "outro": "low"}
    sections = [{"start": s["start"], "end": s["end"], "level": s.get("level") or levels.get(s.get("kind"), "mid")}
                for s in truth.sections]
    intro_end = next((s["end"] for s in truth.sections if s.get("kind") == "intro"), 0.0)
    energy = np.zeros(int(truth.duration * 10) + 1, np.float32)
    for s in sections:
        energy[int(s["start"] * 10):int(s["end"] * 10)] = {"low": 0.2, "mid": 0.5, "high": 0.9}[s["level"]]
    features = {"duration": truth.duration, "tempo": truth.tempo, "beats": truth.beats.tolist(),
                "downbeats": truth.downbeats.tolist(), "phrases": truth.downbeats[::4].tolist(),
                "beats_per_bar": truth.beats_per_bar, "confidence": 1.0, "energy_hz": 10, "sections": sections,
                "intro_end": float(intro_end)}
    return Analysis("audio", features, {"energy": energy})


def keyframe_times(path: Path) -> list[float]:
    """Keyframe times relative to the first frame, from packet flags (what the analysis stores)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in c.demux(stream) if p.pts is not None]
    first = min(pts for pts, _ in packets)
    return sorted(float((pts - first) * stream.time_base) for pts, key in packets if key)


def synthetic_scene_features(n_clips: int, scenes_per_clip: int, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    clips = []
    for c in range(n_clips):
        lengths = rng.uniform(1.0, 8.0, scenes_per_clip)
        bounds = np.concatenate([[0.0], np.cumsum(lengths)])
        fps = 30.0 if c % 2 else 25.0
        scenes = [{"start": float(bounds[i]), "end": float(bounds[i + 1]), "start_frame": int(bounds[i] * fps),
                   "end_frame": int(bounds[i + 1] * fps), "motion": float(rng.random()),
                   "sharpness": float(rng.random()), "brightness": float(rng.uniform(0.2, 0.8)),
                   "contrast": 0.5, "colorfulness": 0.5, "signature": rng.random(16).tolist(),
                   "best_in": float(bounds[i])} for i in range(scenes_per_clip)]
        n = int(bounds[-1] * fps)
        clips.append((f"clip{c:03d}.mp4",
                      {"duration": float(bounds[-1]), "fps": fps, "width": 1920, "height": 1080,
                       "display_width": 1920, "display_height": 1080, "rotation": 0, "sar": 1.0, "scenes": scenes},
                      {"frame_times": np.arange(n) / fps, "motion": rng.random(n).astype(np.float32)}))
    return clips


# --- folder shapes: asked against delivered duration, screen time per clip -----------------------


def shape_clip(name: str, shot_lengths: list[float], *, fps: float = 30.0, seed: int = 0, portrait: bool = False,
               fade_in: float = 0.0) -> tuple:
    """Features of a clip whose shots are known exactly (as the analysis reports true cuts)."""
    rng = np.random.default_rng(seed)
    bounds = np.round(np.concatenate([[0], np.cumsum(np.round(np.asarray(shot_lengths) * fps))])).astype(int)
    n = int(bounds[-1])
    scenes = [{"start": bounds[i] / fps, "end": bounds[i + 1] / fps, "start_frame": int(bounds[i]),
               "end_frame": int(bounds[i + 1]), "motion": float(rng.random()), "sharpness": float(rng.uniform(0.3, 1)),
               "brightness": float(rng.uniform(0.3, 0.7)), "contrast": 0.5, "colorfulness": 0.5,
               "signature": rng.random(16).tolist(), "best_in": bounds[i] / fps} for i in range(len(shot_lengths))]
    w, h = (1080, 1920) if portrait else (1920, 1080)
    features = {"duration": n / fps, "fps": fps, "width": 1920, "height": 1080, "display_width": w,
                "display_height": h, "rotation": 90 if portrait else 0, "sar": 1.0, "scenes": scenes, "flashes": []}
    motion = rng.random(n).astype(np.float32)
    return (name, features, {"frame_times": np.arange(n) / fps, "motion": motion})


def shape_music(duration: float = 200.0, bpm: float = 124.0) -> tuple:
    period = 60.0 / bpm
    beats = np.round(np.arange(0.2, duration - 0.05, period), 6)
    downbeats = beats[::4]
    bar = 4 * period
    intro_end = float(downbeats[4])
    sections, t, i = [{"start": 0.0, "end": intro_end, "level": "low"}], intro_end, 0
    while t < duration:
        sections.append({"start": t, "end": min(duration, t + 8 * bar), "level": ("mid", "high", "low", "high")[i % 4]})
        t, i = t + 8 * bar, i + 1
    energy = np.zeros(int(duration * 10) + 1, np.float32)
    for s in sections:
        energy[int(s["start"] * 10):int(s["end"] * 10)] = {"low": 0.2, "mid": 0.5, "high": 0.9}[s["level"]]
    features = {"duration": duration, "tempo": bpm, "beats": beats.tolist(), "downbeats": downbeats.tolist(),
                "phrases": downbeats[::4].tolist(), "beats_per_bar": 4, "confidence": 1.0, "energy_hz": 10,
                "sections": sections, "intro_end": intro_end}
    return ("track.m4a", features, {"energy": energy})


def folder_shapes() -> dict[str, tuple[list[tuple], float]]:
    """The folder shapes of issue #18: (clips, asked duration)."""
    phone = [shape_clip("long.mp4", [40.0], seed=1)]
    phone += [shape_clip(f"short{i}.mp4", [5.0, 4.0, 4.33][: 2 + i % 2], seed=10 + i) for i in range(6)]
    phone += [shape_clip("extra.mp4", [6.0, 7.0], seed=20)]
    return {
        "two long single shots (2 x 20 s)": ([shape_clip(f"shot{i}.mp4", [20.0], seed=i) for i in range(2)], 40.0),
        "six 10-s clips": ([shape_clip(f"c{i}.mp4", [4.0, 6.0], seed=i) for i in range(6)], 30.0),
        "many short clips (24 x 2.5 s)": ([shape_clip(f"s{i:02d}.mp4", [2.5], seed=i) for i in range(24)], 40.0),
        "one long clip plus many short": (phone, 60.0),
        "mixed orientation (3 + 3 x 12 s)": ([shape_clip(f"m{i}.mp4", [5.0, 7.0], seed=i, portrait=i % 2 == 1)
                                              for i in range(6)], 45.0),
        "short footage (2 x 8 s, asked 40)": ([shape_clip(f"f{i}.mp4", [8.0], seed=i) for i in range(2)], 40.0),
    }


def bench_shapes(seeds: int = 5) -> dict:
    """Plan every folder shape with a few seeds: delivered duration against the asked one, each
    clip's share of the screen time against its share of the footage, frames shown twice."""
    track = shape_music()
    out = {}
    for name, (clips, asked) in folder_shapes().items():
        footage = {c[0]: sum(s["end"] - s["start"] for s in c[1]["scenes"]) for c in clips}
        total = sum(footage.values())
        delivered, shares, missing, repeated, warnings = [], {k: [] for k in footage}, [], [], set()
        for seed in range(seeds):
            edit = plan_edit(clips, track, duration=asked, style="dynamic", fps=30, width=640, height=360, seed=seed)
            delivered.append(edit.duration)
            screen = {k: 0.0 for k in footage}
            for c in edit.cuts:
                screen[c.source] += c.record_out - c.record_in
            for k in footage:
                shares[k].append(screen[k] / edit.duration)
            missing.append(sum(1 for v in screen.values() if v == 0))
            repeated.append(_seconds_shown_twice(edit))
            warnings.update(edit.warnings)
        out[name] = {"asked": asked, "footage_s": round(total, 2), "delivered_s": stats(delivered),
                     "clips_never_shown": max(missing), "seconds_shown_twice": stats(repeated),
                     "share": {k: {"footage": round(footage[k] / total, 3),
                                   "screen": round(statistics.median(v), 3)} for k, v in shares.items()},
                     "warnings": sorted(warnings)}
    return out


def _seconds_shown_twice(edit) -> float:
    """Seconds of the preview that show source frames an earlier cut already showed."""
    seen: dict[str, list[tuple[float, float]]] = {}
    twice = 0.0
    for c in edit.cuts:
        for a, b in seen.get(c.source, []):
            twice += max(0.0, min(b, c.source_out) - max(a, c.source_in))
        seen.setdefault(c.source, []).append((c.source_in, c.source_out))
    return round(twice, 3)


def print_shapes(shapes: dict) -> None:
    for name, r in shapes.items():
        d = r["delivered_s"]
        print(f"{name}: footage {r['footage_s']:g} s, asked {r['asked']:g} s, delivered median {d['median']:.1f} s "
              f"(min {d['min']:.1f}), shown twice {r['seconds_shown_twice']['median']:.1f} s, "
              f"clips never shown {r['clips_never_shown']}")
        share = r["share"]
        if len(share) <= 8:
            print("    share footage -> screen: " + ", ".join(f"{k} {v['footage']:.2f}->{v['screen']:.2f}"
                                                          for k, v in share.items()))
        else:
            screens = [v["screen"] for v in share.values()]
            print(f"    {len(share)} clips of {next(iter(share.values()))['footage']:.3f} of the footage each: "
                  f"screen share {min(screens):.3f}..{max(screens):.3f}")
        for w in r["warnings"]:
            print(f"    warning: {w}")


# --- benchmarks ----------------------------------------------------------------------------------


def bench_plan(runs: int, music: Analysis, n_clips: int = 100, scenes_per_clip: int = 20) -> dict:
    clips = synthetic_scene_features(n_clips, scenes_per_clip)
    track = ("track.m4a", music.features, music.arrays)
    times, cuts = [], 0
    for i in range(runs):
        t = time.perf_counter()
        edit = plan_edit(clips, track, duration=60.0, style="dynamic", fps=30, width=640, height=360, seed=i)
        times.append(time.perf_counter() - t)
        cuts = len(edit.cuts)
    return {"candidates": n_clips * scenes_per_clip, "cuts": cuts, "seconds": stats(times), "target_s": 0.1,
            "met": statistics.median(times) < 0.1}


def make_media(folder: Path, n_clips: int, clip_seconds: float, size: tuple[int, int], track_seconds: float) -> dict:
    """Generate (or reuse) the clips and the track; returns their analyses by path."""
    folder.mkdir(parents=True, exist_ok=True)
    analyses = {}
    meta_path = folder / "truth.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    for i in range(n_clips):
        name = f"clip{i:02d}.mp4"
        portrait = i in (3, 8)
        fps = 25 if i % 3 == 1 else 30
        n = int(round(clip_seconds * fps))
        # 3 to 5 shots per clip at uneven positions.
        k = 2 + i % 3
        cuts = sorted({int(n * (j + 1) / (k + 1) + (i * 7 % 11) - 5) for j in range(k)})
        key = f"{name}:{size}:{clip_seconds}:{fps}:{portrait}:{cuts}"
        if meta.get(name, {}).get("key") != key or not (folder / name).is_file():
            print(f"  generating {name} ({size[0]}x{size[1]}, {fps} fps, {clip_seconds:g} s"
                  f"{', portrait' if portrait else ''})", flush=True)
            truth = make_clip(str(folder / name), duration=clip_seconds, fps=fps, size=size, cuts=cuts,
                              rotation=90 if portrait else 0, seed=i + 1, gop=fps * 2, crf=23)
            meta[name] = {"key": key, "truth": {k2: v for k2, v in truth.__dict__.items()}}
            meta_path.write_text(json.dumps(meta))
        from montaged.synth.video import ClipTruth

        truth = ClipTruth(**meta[name]["truth"])
        if "keyframe_times" not in meta[name]:
            meta[name]["keyframe_times"] = keyframe_times(folder / name)
            meta_path.write_text(json.dumps(meta))
        analyses[folder / name] = clip_analysis(truth, seed=i)
        analyses[folder / name].arrays["keyframe_times"] = np.asarray(meta[name]["keyframe_times"])
    track_key = f"track:{track_seconds}"
    track_path = folder / "track.m4a"
    if meta.get("track", {}).get("key") != track_key or not track_path.is_file():
        print(f"  generating track.m4a ({track_seconds:g} s)", flush=True)
        truth = make_track(str(track_path), bpm=124.0, duration=track_seconds, seed=7)
        meta["track"] = {"key": track_key, "tempo": truth.tempo, "beats": truth.beats.tolist(),
                         "downbeats": truth.downbeats.tolist(), "duration": truth.duration,
                         "beats_per_bar": truth.beats_per_bar, "sections": truth.sections}
        meta_path.write_text(json.dumps(meta))
    from montaged.synth.music import TrackTruth

    t = meta["track"]
    truth = TrackTruth(path=str(track_path), tempo=t["tempo"], beats=np.asarray(t["beats"]),
                       downbeats=np.asarray(t["downbeats"]), duration=t["duration"],
                       beats_per_bar=t["beats_per_bar"], sections=t["sections"])
    analyses[track_path] = track_analysis(truth)
    return analyses


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the render processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_preview(folder: Path, analyses: dict, settings, runs: int, proxies: dict | None = None) -> dict:
    times, plan_times, render_times, cpu = [], [], [], []
    edit = None
    for _ in range(runs):
        out = Path(tempfile.mkdtemp(prefix="bench-preview-"))
        try:
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            edit = plan_folder(folder, settings, analyses)
            t1 = time.perf_counter()
            write_outputs(edit, folder, out, settings, proxies=proxies)
            t2 = time.perf_counter()
            cpu.append(cpu_seconds() - c0)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        times.append(t2 - t0)
        plan_times.append(t1 - t0)
        render_times.append(t2 - t1)
    med = statistics.median(times)
    return {"preview_seconds": edit.duration, "cuts": len(edit.cuts), "seconds": stats(times),
            "cpu_seconds": stats(cpu), "plan_seconds": stats(plan_times), "render_and_export_seconds": stats(render_times),
            "realtime_multiple": edit.duration / med, "target_s": 10.0, "met": med < 10.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny media and one run: checks the benchmark works")
    parser.add_argument("--runs", type=int, default=None, help="preview runs (default 3, smoke 1)")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/preview.json")
    parser.add_argument("--shapes", action="store_true", help="only plan the folder shapes (two long shots, many "
                        "short clips, ...): asked against delivered duration, screen time per clip; no media")
    args = parser.parse_args(argv)
    if args.shapes:
        logging.getLogger("montaged").setLevel(logging.ERROR)  # the shapes' warnings are in the report
        shapes = bench_shapes()
        print_shapes(shapes)
        if not args.no_write:
            SHAPES.parent.mkdir(parents=True, exist_ok=True)
            SHAPES.write_text(json.dumps({"machine": machine(), "shapes": shapes}, indent=2) + "\n")
            print(f"wrote {SHAPES.relative_to(ROOT)}")
        return 0

    smoke = args.smoke
    # Planning warnings (e.g. a smoke track shorter than the preview) are expected here.
    logging.getLogger("montaged").setLevel(logging.ERROR)
    runs = args.runs or (1 if smoke else 3)
    if smoke:
        n_clips, clip_s, size, track_s, duration = 3, 3.0, (320, 180), 20.0, 8.0
        folder = CACHE.parent / "preview-smoke"
    else:
        n_clips, clip_s, size, track_s, duration = 12, 20.0, (1920, 1080), 180.0, 60.0
        folder = CACHE
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, PyAV {info['pyav']}, "
          f"load {info['load_at_start']}")
    analyses = make_media(folder, n_clips, clip_s, size, track_s)
    music = analyses[folder / "track.m4a"]

    plan = bench_plan(5 if smoke else 21, music)
    s = plan["seconds"]
    print(f"plan, {plan['candidates']} candidate scenes -> {plan['cuts']} cuts: median {s['median'] * 1000:.1f} ms "
          f"(min {s['min'] * 1000:.1f}, max {s['max'] * 1000:.1f}); target < 100 ms: {'met' if plan['met'] else 'MISSED'}")

    settings = PreviewConfig(duration=duration)
    results = {"machine": info, "smoke": smoke, "plan": plan,
               "media": {"clips": n_clips, "clip_seconds": clip_s, "size": list(size), "track_seconds": track_s,
                         "portrait_clips": 2 if n_clips > 8 else 0, "fps": "25 and 30"}}
    direct = bench_preview(folder, analyses, settings, runs)
    s = direct["seconds"]
    print(f"preview {direct['preview_seconds']:.1f} s from {size[1]}p originals ({direct['cuts']} cuts): median "
          f"{s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f}; CPU {direct['cpu_seconds']['median']:.1f} s), "
          f"{direct['realtime_multiple']:.1f}x real time; "
          f"target < 10 s: {'met' if direct['met'] else 'MISSED'}")
    results["preview_from_originals"] = direct

    # Proxies are made once per clip after analysis; they are cached like the media. The cost of
    # making one is measured on two clips (a landscape and a portrait one) every run.
    proxy_dir = folder / "proxies"
    proxy_dir.mkdir(exist_ok=True)
    clips = sorted(p for p in analyses if p.suffix == ".mp4")
    proxies, proxy_times = {}, []
    for path in clips:
        dst = proxy_dir / f"{path.stem}.360p.mp4"
        if not dst.is_file() or dst.stat().st_mtime < path.stat().st_mtime:
            make_proxy(path, dst, height=360)
        proxies[path.name] = str(dst)
    scratch = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    try:
        for path in (clips[0], clips[3] if len(clips) > 3 else clips[-1]):
            t = time.perf_counter()
            make_proxy(path, scratch / path.name, height=360)
            proxy_times.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"proxy: {statistics.median(proxy_times):.2f} s per {clip_s:g} s clip (made once, after analysis)")
    with_proxies = bench_preview(folder, analyses, settings, runs, proxies=proxies)
    s = with_proxies["seconds"]
    print(f"preview {with_proxies['preview_seconds']:.1f} s from 360p proxies: median {s['median']:.2f} s "
          f"(min {s['min']:.2f}, max {s['max']:.2f}; CPU {with_proxies['cpu_seconds']['median']:.1f} s), "
          f"{with_proxies['realtime_multiple']:.1f}x real time; "
          f"target < 10 s: {'met' if with_proxies['met'] else 'MISSED'}")
    results["preview_from_proxies"] = with_proxies
    results["proxy_seconds_per_clip"] = stats(proxy_times)
    results["proxy_seconds_per_clip"]["clip_seconds"] = clip_s

    serial = bench_preview(folder, analyses, replace(settings, render_processes=1), 1, proxies=proxies)
    print(f"same with one render process: {serial['seconds']['median']:.2f} s, CPU {serial['cpu_seconds']['median']:.1f} s "
          f"(parallel speed-up x{serial['seconds']['median'] / s['median']:.2f})")
    results["preview_from_proxies_one_process"] = serial

    results["load_at_end"] = os.getloadavg()[0]
    if not args.no_write and not smoke:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
