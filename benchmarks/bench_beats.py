"""Beat tracking benchmark: montaged vs librosa on synthetic music with known beats.

Accuracy: a suite of synthetic tracks in kinds (the original 4/4 band tracks at 70..180 BPM with
swing and tempo drift; slow tracks with loud eighth-note hats; half-time grooves; drumless
strummed and piano music; 3/4; 6/8; live timing wander; long drumless intros; fast tracks),
encoded to MP3 so that both sides decode a lossy file with their own decoder (montaged: PyAV;
librosa: ``librosa.load`` via soundfile). Each is scored with ``mir_eval.beat.f_measure`` (70 ms
window, beats before 5 s ignored), tempo error at the annotated level (the quarter note; the
dotted quarter in 6/8) and the same F-measure on the downbeats. librosa has no downbeat
tracker: its column is the naive bar a 4/4 assumption gives (every 4th beat from its first).
The new kinds' tempi and seeds differ from those the rules were developed on and from the
tests' (``tests/test_audio_meter.py``).

Speed: a 3-minute AAC (.m4a) track through ``montaged.analysis.analyze_path`` (probe, decode and
analysis, what a daemon worker runs), pinned to one core, median/min/max of N runs after a
warm-up call on both sides (librosa's numba JIT is warm). CPU time (``time.process_time``) is
what the targets are judged on: the machine is shared, and wall time also counts the time other
processes hold the core; wall time is reported next to it. ``librosa.load`` cannot
open AAC without an ffmpeg binary (audioread has no backend here), so librosa's AAC pipeline is
decode + downmix + ``librosa.resample`` (what ``load`` does after decoding) +
``beat_track``; the same audio as WAV is also timed with plain ``librosa.load`` + ``beat_track``.
For AAC the decode and downmix are montaged's own (fast) code for both sides, so the AAC ratio
compares resampling + analysis only.

    .venv/bin/pip install librosa          # bench-only extra
    .venv/bin/python benchmarks/bench_beats.py            # full run, writes results/beats.json
    .venv/bin/python benchmarks/bench_beats.py --smoke    # 2 short tracks, a harness check
"""

from __future__ import annotations

import os

# One core for everything, BLAS and numba included: set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from montaged.analysis import analyze_path  # noqa: E402
from montaged.analysis import audio as music  # noqa: E402
from montaged.media.audio import decode  # noqa: E402
from montaged.synth import music as synth  # noqa: E402
try:
    from benchmarks.common import cpu_model
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from common import cpu_model

CACHE = ROOT / ".cache" / "beats"
RESULTS = ROOT / "results" / "beats.json"

SUITE = [
    # the original suite: 4/4 band tracks
    dict(name="slow-70", kind="band", bpm=70.0, duration=90.0, seed=11),
    dict(name="shuffle-84", kind="band", bpm=84.0, duration=120.0, swing=0.33, seed=12),
    dict(name="drift-96", kind="band", bpm=96.0, duration=150.0, drift=0.03, seed=13),
    dict(name="swing-110", kind="band", bpm=110.0, duration=60.0, swing=0.15, seed=14),
    dict(name="slowdown-124", kind="band", bpm=124.0, duration=180.0, drift=-0.04, seed=15),
    dict(name="straight-138", kind="band", bpm=138.0, duration=120.0, seed=16),
    dict(name="swing-drift-150", kind="band", bpm=150.0, duration=90.0, swing=0.2, drift=0.03, seed=17),
    dict(name="fast-165", kind="band", bpm=165.0, duration=75.0, seed=18),
    dict(name="fast-drift-180", kind="band", bpm=180.0, duration=120.0, drift=-0.03, seed=19),
    dict(name="ramp-76", kind="band", bpm=76.0, duration=150.0, drift=0.05, swing=0.1, seed=20),
    # slow, with eighth-note hats as loud as the beat
    dict(name="slow-hats-62", kind="slow", bpm=62.0, duration=90.0, hats=3.0, seed=71),
    dict(name="slow-hats-77", kind="slow", bpm=77.0, duration=90.0, hats=2.5, swing=0.1, seed=72),
    # half-time: kick on 1, snare on 3, eighth hats
    dict(name="halftime-66", kind="halftime", bpm=66.0, duration=90.0, style="halftime", hats=3.0, seed=73),
    dict(name="halftime-74", kind="halftime", bpm=74.0, duration=90.0, style="halftime", swing=0.2, seed=74),
    # drumless
    dict(name="strummed-82", kind="drumless", bpm=82.0, duration=90.0, style="strummed", seed=75),
    dict(name="piano-60", kind="drumless", bpm=60.0, duration=90.0, style="piano", seed=76),
    dict(name="piano-112", kind="drumless", bpm=112.0, duration=75.0, style="piano", seed=77),
    # 3/4
    dict(name="waltz-100", kind="3/4", bpm=100.0, duration=75.0, beats_per_bar=3, seed=78),
    dict(name="waltz-138", kind="3/4", bpm=138.0, duration=75.0, beats_per_bar=3, hats=2.0, seed=79),
    dict(name="waltz-strummed-72", kind="3/4", bpm=72.0, duration=90.0, beats_per_bar=3, style="strummed", seed=80),
    dict(name="waltz-piano-108", kind="3/4", bpm=108.0, duration=75.0, beats_per_bar=3, style="piano", seed=81),
    # 6/8 (tempo of the dotted quarter)
    dict(name="sixeight-62", kind="6/8", bpm=62.0, duration=90.0, beats_per_bar=2, subdivision=3, hats=2.0, seed=82),
    dict(name="sixeight-strummed-56", kind="6/8", bpm=56.0, duration=90.0, beats_per_bar=2, subdivision=3,
         style="strummed", seed=83),
    dict(name="sixeight-piano-54", kind="6/8", bpm=54.0, duration=90.0, beats_per_bar=2, subdivision=3,
         style="piano", seed=84),
    # live timing: tempo wander and per-note jitter
    dict(name="live-98", kind="live", bpm=98.0, duration=90.0, wander=0.03, jitter=0.01, seed=85),
    dict(name="live-halftime-68", kind="live", bpm=68.0, duration=90.0, style="halftime", wander=0.02,
         jitter=0.008, seed=86),
    dict(name="live-waltz-88", kind="live", bpm=88.0, duration=90.0, beats_per_bar=3, wander=0.03, jitter=0.01,
         seed=87),
    # long drumless intros (16 bars of chords before the drums)
    dict(name="intro-108", kind="intro", bpm=108.0, duration=100.0, seed=88,
         sections=[("intro", 16), ("verse", 8), ("breakdown", 4), ("drop", 12), ("outro", 4)]),
    dict(name="intro-strummed-92", kind="intro", bpm=92.0, duration=90.0, seed=89, hats=2.0,
         sections=[("intro", 16), ("verse", 8), ("drop", 8)]),
    # fast
    dict(name="fast-172-hats", kind="fast", bpm=172.0, duration=75.0, hats=2.0, seed=90),
    dict(name="fast-200", kind="fast", bpm=200.0, duration=75.0, swing=0.1, seed=91),
]
SMOKE = [
    dict(name="smoke-100", kind="band", bpm=100.0, duration=24.0, seed=1),
    dict(name="smoke-waltz-150", kind="3/4", bpm=150.0, duration=24.0, swing=0.25, beats_per_bar=3, seed=2),
]
SPEED_TRACK = dict(name="speed-3min", bpm=124.0, duration=180.0, drift=0.02, seed=7)
SMOKE_SPEED_TRACK = dict(name="speed-smoke", bpm=124.0, duration=20.0, seed=7)

TARGET_F = 0.95
TARGET_TEMPO = 0.04
TARGET_DOWNBEAT_F_34 = 0.9
TARGET_SECONDS = 0.30
TARGET_SPEEDUP = 3.0
_NOT_SYNTH = ("name", "kind")  # spec keys that are the suite's, not synth_track's


# --------------------------------------------------------------------------------------------
# Tracks


def _synth_fingerprint() -> str:
    return hashlib.sha1(Path(synth.__file__).read_bytes()).hexdigest()[:10]


def _track_path(spec: dict, ext: str) -> Path:
    params = {k: v for k, v in spec.items() if k not in _NOT_SYNTH}
    key = hashlib.sha1(json.dumps([params, _synth_fingerprint()], sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"{spec['name']}-{key}.{ext}"


def build(spec: dict, ext: str) -> tuple[Path, synth.TrackTruth]:
    """The track of ``spec`` as ``ext``, cached by spec and synthesiser source, and its truth
    (cached beside it as JSON: synthesising a track again only to learn its beats costs seconds)."""
    path = _track_path(spec, ext)
    truth_path = path.with_suffix(".truth.json")
    if path.exists() and truth_path.exists():
        d = json.loads(truth_path.read_text())
        return path, synth.TrackTruth(path=str(path), tempo=d["tempo"], beats=np.array(d["beats"]),
                                      downbeats=np.array(d["downbeats"]), duration=d["duration"],
                                      beats_per_bar=d["beats_per_bar"], meter=d["meter"], sections=d["sections"])
    samples, sr, truth = synth.synth_track(**{k: v for k, v in spec.items() if k not in _NOT_SYNTH})
    CACHE.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        synth.write_audio(str(path), samples, sr)
    tmp = truth_path.with_name(f".{truth_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"tempo": truth.tempo, "beats": truth.beats.tolist(), "downbeats": truth.downbeats.tolist(),
                               "duration": truth.duration, "beats_per_bar": truth.beats_per_bar, "meter": truth.meter,
                               "sections": truth.sections}))
    os.replace(tmp, truth_path)
    truth.path = str(path)
    return path, truth


def _build_only(spec: dict, ext: str) -> str:
    return str(build(spec, ext)[0])


def generate(tracks: list[tuple[dict, str]]) -> None:
    """Build the tracks that are not cached yet, two at a time (call before the process is
    pinned to one core: the workers would inherit the pinning)."""
    # One job per file: the smoke suite also holds the warm-up track, and two workers writing one
    # file would race for its temporary name.
    unique = {_track_path(spec, ext): (spec, ext) for spec, ext in tracks}
    missing = [(spec, ext) for path, (spec, ext) in unique.items()
               if not (path.exists() and path.with_suffix(".truth.json").exists())]
    if not missing:
        return
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1, len(missing))),
                             mp_context=get_context("spawn")) as pool:
        list(pool.map(_build_only, *zip(*missing)))
    print(f"  generated {len(missing)} track(s) in {time.perf_counter() - t:.0f} s", flush=True)


def run_montaged(path: Path) -> tuple[np.ndarray, float]:
    return _beats_and_tempo(analyze_path(str(path)).features)


def _beats_and_tempo(features: dict) -> tuple[np.ndarray, float]:
    return np.array(features["beats"]), float(features["tempo"])


def run_librosa(path: Path) -> tuple[np.ndarray, float]:
    import librosa

    y, sr = librosa.load(str(path), sr=22050)
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    return np.asarray(beats), float(np.atleast_1d(tempo)[0])


def run_librosa_aac(path: Path) -> tuple[np.ndarray, float]:
    """librosa.load's steps for a file it cannot open here: decode + downmix, resample, track.

    The decode + downmix is montaged's own fast path at the native rate (the quickest way this
    machine has to get mono samples out of AAC), so the comparison does not flatter montaged:
    the two differ only in resampling and analysis.
    """
    import librosa

    decoded = decode(str(path), rate=10**6, exact=False)  # factor 1: native rate, mono
    y = librosa.resample(decoded.samples, orig_sr=decoded.rate, target_sr=22050)
    tempo, beats = librosa.beat.beat_track(y=y, sr=22050, units="time")
    return np.asarray(beats), float(np.atleast_1d(tempo)[0])


def _decode_floor(path: Path) -> None:
    """FFmpeg's AAC decoder through PyAV with nothing else: no decoder can go below this."""
    import av

    with av.open(str(path)) as c:
        for _frame in c.decode(audio=0):
            pass


def score(truth: synth.TrackTruth, beats: np.ndarray, tempo: float, downbeats: np.ndarray) -> dict:
    """Beat F, tempo error at the annotated level, downbeat F (mir_eval, first 5 s ignored)."""
    import mir_eval

    def f(ref, est):
        return round(float(mir_eval.beat.f_measure(mir_eval.beat.trim_beats(np.asarray(ref, float)),
                                                   mir_eval.beat.trim_beats(np.asarray(est, float)))), 4)

    return {"f": f(truth.beats, beats), "tempo": round(tempo, 3),
            "tempo_error": round(float(tempo / truth.tempo - 1.0), 5), "downbeat_f": f(truth.downbeats, downbeats)}


# --------------------------------------------------------------------------------------------
# Timing


def timed(fns: dict, runs: int) -> dict:
    """Time every function ``runs`` times, interleaved (one of each per round), so that all of
    them see the same background load on a shared machine; wall and CPU seconds."""
    walls = {k: [] for k in fns}
    cpus = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {k: {"median": statistics.median(walls[k]), "min": min(walls[k]), "max": max(walls[k]),
                "cpu_median": statistics.median(cpus[k]), "cpu_min": min(cpus[k]), "cpu_max": max(cpus[k]),
                "runs": runs} for k in fns}


def machine() -> dict:
    model = cpu_model()
    import av
    import scipy

    info = {"cpu": model, "cores": os.cpu_count(), "pinned_to_cores": sorted(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "av": av.__version__, "load_average": [round(x, 2) for x in os.getloadavg()]}
    try:
        import librosa

        info["librosa"] = librosa.__version__
    except ImportError:
        info["librosa"] = None
    return info


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 short tracks and a short speed test (harness check)")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds of the speed measurements (default 9; smoke 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results JSON (default {RESULTS.relative_to(ROOT.parent)}; smoke: not written unless given)")
    parser.add_argument("--no-librosa", action="store_true", help="montaged only")
    parser.add_argument("--speed-only", action="store_true", help="skip the accuracy suite (results not written)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    suite = [] if args.speed_only else (SMOKE if args.smoke else SUITE)
    speed_spec = SMOKE_SPEED_TRACK if args.smoke else SPEED_TRACK
    generate([(SMOKE[0], "mp3"), *[(spec, "mp3") for spec in suite], (speed_spec, "m4a"), (speed_spec, "wav")])

    # Single core: pin the process (and any thread it starts) to one CPU.
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    use_librosa = not args.no_librosa
    if use_librosa:
        try:
            import librosa  # noqa: F401
        except ImportError:
            print("librosa is not installed (.venv/bin/pip install librosa); running montaged only")
            use_librosa = False

    runs = args.runs or (2 if args.smoke else 9)
    out = args.out if args.out is not None else (None if args.smoke or args.speed_only else RESULTS)

    # Warm-up both sides once: imports, FFT plans, librosa's numba JIT.
    warm, _t = build(SMOKE[0], "mp3")
    run_montaged(warm)
    if use_librosa:
        run_librosa(warm)

    rows = []
    for spec in suite:
        path, truth = build(spec, "mp3")
        t0 = time.perf_counter()
        features = analyze_path(str(path)).features
        m_time = time.perf_counter() - t0
        beats, tempo = _beats_and_tempo(features)
        row = {"track": spec["name"], "kind": spec["kind"], "bpm": spec["bpm"], "duration": spec["duration"],
               "meter": truth.meter, "swing": spec.get("swing", 0.0), "drift": spec.get("drift", 0.0),
               "true_tempo": round(truth.tempo, 3),
               "montaged": {**score(truth, beats, tempo, np.array(features["downbeats"])),
                            "meter": features["meter"]["label"], "confidence": features["confidence"],
                            "seconds": round(m_time, 4)}}
        if use_librosa:
            t0 = time.perf_counter()
            lb, lt = run_librosa(path)
            l_time = time.perf_counter() - t0
            row["librosa"] = {**score(truth, lb, lt, lb[::4]), "seconds": round(l_time, 4)}
        rows.append(row)
        _print_row(row)

    # Speed: 3-minute AAC, decode included, one core.
    aac, _ = build(speed_spec, "m4a")
    wav, _ = build(speed_spec, "wav")
    speed = {"track": speed_spec["name"], "duration": speed_spec["duration"], "runs": runs}
    fns = {
        "montaged_aac": lambda: run_montaged(aac),
        # where montaged's time goes, and the alternatives it was measured against
        "montaged_aac_decode_only": lambda: decode(str(aac), music.ANALYSIS_RATE, exact=False),
        "decode_exact_resampler": lambda: decode(str(aac), music.ANALYSIS_RATE, exact=True),
        "ffmpeg_aac_decode_floor": lambda: _decode_floor(aac),
        "montaged_wav": lambda: run_montaged(wav),
    }
    if use_librosa:
        fns["librosa_aac"] = lambda: run_librosa_aac(aac)
        fns["librosa_wav"] = lambda: run_librosa(wav)
    speed.update(timed(fns, runs))
    if use_librosa:
        for kind in ("aac", "wav"):
            speed[f"speedup_{kind}"] = speed[f"librosa_{kind}"]["median"] / speed[f"montaged_{kind}"]["median"]
            speed[f"speedup_{kind}_cpu"] = (speed[f"librosa_{kind}"]["cpu_median"]
                                            / speed[f"montaged_{kind}"]["cpu_median"])

    report = {"benchmark": "beats", "smoke": args.smoke, "machine": machine(), "tracks": rows, "speed": speed,
              "summary": _summary(rows, speed, use_librosa, args.smoke)}
    _print_report(report, use_librosa)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"\nwrote {out}")
    return 0


def _summary(rows: list[dict], speed: dict, use_librosa: bool, smoke: bool) -> dict:
    if not rows:
        s = {"montaged_aac_median_s": round(speed["montaged_aac"]["median"], 4),
             "montaged_aac_cpu_median_s": round(speed["montaged_aac"]["cpu_median"], 4), "targets": {}}
        if use_librosa:
            s["speedup_aac"] = round(speed["speedup_aac"], 2)
            s["speedup_aac_cpu"] = round(speed["speedup_aac_cpu"], 2)
        return s
    mf = [r["montaged"]["f"] for r in rows]
    waltz_db = [r["montaged"]["downbeat_f"] for r in rows if r["meter"] == "3/4"]
    s = {"montaged_mean_f": round(float(np.mean(mf)), 4),
         "montaged_min_f": round(float(np.min(mf)), 4),
         "montaged_max_tempo_error": round(float(max(abs(r["montaged"]["tempo_error"]) for r in rows)), 5),
         "montaged_mean_downbeat_f": round(float(np.mean([r["montaged"]["downbeat_f"] for r in rows])), 4),
         "montaged_min_downbeat_f_3/4": round(float(min(waltz_db)), 4) if waltz_db else None,
         "meter_right": sum(r["montaged"]["meter"] == r["meter"] for r in rows), "tracks": len(rows),
         "kinds": _kinds(rows, use_librosa),
         "montaged_aac_median_s": round(speed["montaged_aac"]["median"], 4),
         "montaged_aac_cpu_median_s": round(speed["montaged_aac"]["cpu_median"], 4)}
    targets = {"mean_f>=0.95": s["montaged_mean_f"] >= TARGET_F,
               "tempo_within_4%_every_track": s["montaged_max_tempo_error"] <= TARGET_TEMPO}
    if waltz_db:
        targets["downbeat_f>=0.9_every_3/4_track"] = min(waltz_db) >= TARGET_DOWNBEAT_F_34
    if not smoke:
        targets["3min_aac<=0.30s_cpu"] = s["montaged_aac_cpu_median_s"] <= TARGET_SECONDS
    if use_librosa:
        s["librosa_mean_f"] = round(float(np.mean([r["librosa"]["f"] for r in rows])), 4)
        s["speedup_aac"] = round(speed["speedup_aac"], 2)
        s["speedup_aac_cpu"] = round(speed["speedup_aac_cpu"], 2)
        s["speedup_wav"] = round(speed["speedup_wav"], 2)
        targets["f>=librosa_every_track"] = all(r["montaged"]["f"] >= r["librosa"]["f"] for r in rows)
        targets[">=3x_faster_than_librosa_aac_cpu"] = speed["speedup_aac_cpu"] >= TARGET_SPEEDUP
    s["targets"] = targets
    return s


def _kinds(rows: list[dict], use_librosa: bool) -> dict:
    """Per kind of track: mean beat F, worst tempo error and mean downbeat F on each side."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        out[kind] = {side: {"f": round(float(np.mean([r[side]["f"] for r in mine])), 4),
                            "max_tempo_error": round(float(max(abs(r[side]["tempo_error"]) for r in mine)), 5),
                            "downbeat_f": round(float(np.mean([r[side]["downbeat_f"] for r in mine])), 4)}
                     for side in (("montaged", "librosa") if use_librosa else ("montaged",))}
        out[kind]["tracks"] = len(mine)
    return out


def _print_row(r: dict) -> None:
    m = r["montaged"]
    line = (f"{r['track']:21s} {r['meter']:3s} {r['bpm']:6.1f} {r['duration']:4.0f}s | "
            f"montaged F={m['f']:.3f} tempo={m['tempo']:7.2f} ({m['tempo_error'] * 100:+.2f}%) "
            f"down F={m['downbeat_f']:.3f} {m['meter']:3s} {m['seconds']:.2f}s")
    if "librosa" in r:
        lb = r["librosa"]
        line += (f" | librosa F={lb['f']:.3f} tempo={lb['tempo']:7.2f} ({lb['tempo_error'] * 100:+.2f}%) "
                 f"down F={lb['downbeat_f']:.3f} {lb['seconds']:.2f}s")
    print(line, flush=True)


def _print_report(report: dict, use_librosa: bool) -> None:
    mach = report["machine"]
    print(f"\nmachine: {mach['cpu']}, {mach['cores']} cores (pinned to {mach['pinned_to_cores']}), "
          f"load average {mach['load_average']}, python {mach['python']}, numpy {mach['numpy']}, av {mach['av']}"
          + (f", librosa {mach['librosa']}" if use_librosa else ""))
    sp = report["speed"]
    print(f"\nspeed on {sp['track']} ({sp['duration']:.0f} s), seconds, median / min / max of N runs:")
    print(f"  {'':56s} {'cpu':>23s}   {'wall':>23s}")

    def fmt(key, label):
        t = sp[key]
        print(f"  {label:56s} {t['cpu_median']:7.3f} {t['cpu_min']:7.3f} {t['cpu_max']:7.3f}   "
              f"{t['median']:7.3f} {t['min']:7.3f} {t['max']:7.3f}  (N={t['runs']})")

    fmt("montaged_aac", "montaged analyze_path, AAC (probe+decode+analysis)")
    fmt("montaged_aac_decode_only", "  of which: decode (fast path)")
    fmt("decode_exact_resampler", "  for reference: decode via av.AudioResampler")
    fmt("ffmpeg_aac_decode_floor", "  for reference: bare PyAV AAC decode (the floor)")
    fmt("montaged_wav", "montaged analyze, WAV")
    if use_librosa:
        fmt("librosa_aac", "librosa AAC: same decode, librosa resample+beat_track")
        fmt("librosa_wav", "librosa load + beat_track, WAV")
        print(f"  speedup (median cpu): AAC {sp['speedup_aac_cpu']:.1f}x, WAV {sp['speedup_wav_cpu']:.1f}x; "
              f"(median wall): AAC {sp['speedup_aac']:.1f}x, WAV {sp['speedup_wav']:.1f}x")
    s = report["summary"]
    if not report["tracks"]:
        return
    print("\nper kind (mean beat F, worst tempo error, mean downbeat F):")
    for kind, k in s["kinds"].items():
        line = (f"  {kind:9s} N={k['tracks']:2d} montaged F={k['montaged']['f']:.3f} "
                f"tempo err {k['montaged']['max_tempo_error'] * 100:5.2f}% down F={k['montaged']['downbeat_f']:.3f}")
        if use_librosa:
            line += (f" | librosa F={k['librosa']['f']:.3f} tempo err {k['librosa']['max_tempo_error'] * 100:5.2f}% "
                     f"down F (every 4th beat)={k['librosa']['downbeat_f']:.3f}")
        print(line)
    print(f"\nmontaged mean F {s['montaged_mean_f']:.3f} (min {s['montaged_min_f']:.3f}), "
          f"max tempo error {s['montaged_max_tempo_error'] * 100:.2f}%, meter right on {s['meter_right']}/{s['tracks']}"
          + (f"; librosa mean F {s['librosa_mean_f']:.3f}" if use_librosa else ""))
    for name, ok in s["targets"].items():
        print(f"  target {name:32s} {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
