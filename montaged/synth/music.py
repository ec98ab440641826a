"""Synthetic music with known beats, downbeats and sections, for tests, the demo and benchmarks.

A track is drums (kick, snare, hi-hats, a crash on section starts), bass and chords, arranged in
sections that stress a beat tracker the way real music does: an intro without percussion (only
chord stabs carry the beat), a verse, a breakdown without kick, a loud drop and a fading outro.
The tempo may drift slowly (``drift``) or wander like a live band (``wander``, ``jitter``), and
off-beat eighths may swing (``swing``). ``style`` changes the band: ``"halftime"`` drums (kick on
1, snare on 3, eighth hats), or no drums at all (``"strummed"`` guitar-like chords, ``"piano"``:
bass notes and chords). ``beats_per_bar`` 3 is a waltz; ``beats_per_bar=2, subdivision=3`` is 6/8
(the beat is the dotted quarter, three eighths each). The returned :class:`TrackTruth` holds the
exact beat and downbeat times that the audio was built from.

:func:`synth_track` is pure (returns samples); :func:`make_track` also encodes them with PyAV, the
codec chosen from the file extension (.wav .m4a .mp3 .flac .ogg .opus; .mp4 and .mkv give a
tiny picture track with the music as AAC, for "the audio track of a video file").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import av
import numpy as np

log = logging.getLogger("montaged.synth.music")

SECTION_KINDS = ("intro", "verse", "breakdown", "drop", "outro")

# Which instruments play in each section, and how loud. The levels are what the energy
# analysis should find: percussion-free parts are quiet, the drop is loud.
_ARRANGEMENT = {
    #            pad   stabs bass  kick  snare hat   crash level
    "intro":     (0.30, 0.55, 0.00, 0.00, 0.00, 0.00, 0.0, "low"),
    "verse":     (0.20, 0.00, 0.50, 0.85, 0.55, 0.22, 0.5, "mid"),
    "breakdown": (0.30, 0.30, 0.20, 0.00, 0.20, 0.12, 0.0, "low"),
    "drop":      (0.30, 0.25, 0.75, 1.00, 0.75, 0.32, 0.7, "high"),
    "outro":     (0.30, 0.50, 0.25, 0.00, 0.00, 0.15, 0.0, "low"),
}

# I - V - vi - IV, one chord per bar: the chord change marks the downbeat.
_PROGRESSION = ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj"))
_TRIAD = {"maj": (0, 4, 7), "min": (0, 3, 7)}

_CODECS = {
    # extension: (container format, codec, sample format, allowed rates or None)
    ".wav": ("wav", "pcm_s16le", "s16", None),
    ".flac": ("flac", "flac", "s16", None),
    ".m4a": ("ipod", "aac", "fltp", (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)),
    ".mp3": ("mp3", "libmp3lame", "fltp", (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)),
    ".ogg": ("ogg", "libopus", "flt", (48000, 24000, 16000, 12000, 8000)),
    ".opus": ("opus", "libopus", "flt", (48000, 24000, 16000, 12000, 8000)),
    # "music videos": a small still-ish picture track plus the music as AAC
    ".mp4": ("mp4", "aac", "fltp", (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)),
    ".mkv": ("matroska", "aac", "fltp", (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)),
}
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}

STYLES = ("band", "halftime", "strummed", "piano")
DRUMLESS = ("strummed", "piano")
# Loudness of the chords of a drumless style per section level: they carry the whole beat.
_DRUMLESS_CHORDS = {"low": 0.5, "mid": 0.7, "high": 0.95}


@dataclass
class TrackTruth:
    path: str
    tempo: float  # BPM at the annotated (quarter-note) level: 60 / median inter-beat interval
    beats: np.ndarray  # seconds
    downbeats: np.ndarray  # seconds, first beat of every bar
    duration: float
    beats_per_bar: int = 4
    meter: str = "4/4"  # "4/4", "3/4", "6/8" (2 dotted-quarter beats of 3 eighths), "2/4"
    # [{"kind", "start", "end", "level"}]: the arrangement, with the level it was mixed at
    sections: list[dict] = field(default_factory=list)


def default_sections(n_bars: int) -> list[tuple[str, int]]:
    """The standard layout: intro, verse, breakdown, drop, outro, in proportion 2:4:2:6:2.

    Sections are whole 4-bar phrases, as in most popular music (the phrase analysis relies on
    it). Tracks shorter than 20 bars are too short for an arrangement: they get verse then drop,
    so that tiny test files are all beat.
    """
    if n_bars < 20:
        half = max(1, n_bars // 2)
        return [("verse", half), ("drop", max(1, n_bars - half))]
    phrases = n_bars // 4
    unit = phrases / 16.0
    intro = max(1, int(round(2 * unit)))
    verse = max(1, int(round(4 * unit)))
    breakdown = max(1, int(round(2 * unit)))
    outro = max(1, int(round(2 * unit)))
    drop = max(1, phrases - intro - verse - breakdown - outro)
    return [("intro", 4 * intro), ("verse", 4 * verse), ("breakdown", 4 * breakdown), ("drop", 4 * drop),
            ("outro", 4 * outro + n_bars % 4)]


def beat_times(bpm: float, duration: float, drift: float = 0.0, offset: float = 0.0) -> np.ndarray:
    """Beat times for a tempo that ramps linearly from bpm*(1-drift/2) to bpm*(1+drift/2).

    The phase (in beats) is the integral of the tempo; beats are where it crosses an integer.
    """
    t = np.linspace(0.0, duration, int(duration * 1000) + 2)
    frac = t / max(duration, 1e-9)
    tempo = bpm * (1.0 + drift * (frac - 0.5))
    phase = np.concatenate([[0.0], np.cumsum((tempo[1:] + tempo[:-1]) * 0.5 * np.diff(t))]) / 60.0
    phase_at_offset = np.interp(offset, t, phase)
    targets = phase_at_offset + np.arange(0, int(phase[-1] - phase_at_offset) + 1)
    return np.interp(targets, phase, t)


def wandered(beats: np.ndarray, wander: float, rng: np.random.Generator) -> np.ndarray:
    """Beat times of a band without a click: every inter-beat interval scaled by a slow random
    walk (an AR(1) process over beats with a ~10-beat memory, standard deviation ``wander``)."""
    if wander <= 0 or len(beats) < 3:
        return beats
    ibi = np.diff(beats)
    noise = rng.standard_normal(len(ibi))
    # AR(1) by an IIR filter: a per-beat loop in scipy's C code, not in Python.
    from scipy.signal import lfilter

    walk = lfilter([np.sqrt(1 - 0.9 ** 2)], [1.0, -0.9], noise)
    return beats[0] + np.concatenate([[0.0], np.cumsum(ibi * (1.0 + wander * walk))])


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


_TONE_CACHE: dict[tuple, np.ndarray] = {}


def _tone(freqs: np.ndarray, n: int, sr: int, harmonics: int, attack: float, decay: float) -> np.ndarray:
    """Sum of additive saw-like tones (1/h harmonics) at ``freqs``, with an attack/decay envelope.

    Cached on a 10 ms grid of lengths: a song repeats the same few chords hundreds of times, and
    additive synthesis of each one is what makes a long track slow to build.
    """
    step = max(1, sr // 100)
    n = max(step, int(round(n / step)) * step)
    key = (tuple(np.round(np.asarray(freqs), 3)), n, sr, harmonics, round(attack, 4), round(decay, 2))
    hit = _TONE_CACHE.get(key)
    if hit is None:
        if len(_TONE_CACHE) > 512:
            _TONE_CACHE.clear()
        hit = _TONE_CACHE[key] = _render_tone(np.asarray(freqs), n, sr, harmonics, attack, decay)
    return hit


def _render_tone(freqs: np.ndarray, n: int, sr: int, harmonics: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    h = np.arange(1, harmonics + 1)
    # harmonics above Nyquist would alias into noise: drop them
    amps = np.where(np.outer(freqs, h) < sr * 0.45, 1.0 / h, 0.0)  # [notes, h]
    phases = 2 * np.pi * np.outer(t, (np.asarray(freqs)[:, None] * h).ravel())  # [n, notes*h]
    wave = np.sin(phases) @ amps.ravel()
    env = np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)
    return (wave * env / max(len(freqs), 1)).astype(np.float32)


def _kick(sr: int) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    f = 48.0 + 110.0 * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.16)
    click = np.random.default_rng(1).standard_normal(n) * np.exp(-t / 0.003) * 0.3
    return (body + click).astype(np.float32)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 1)) * 0.5  # first difference: tilt towards highs
    tone = np.sin(2 * np.pi * 185.0 * t) * np.exp(-t / 0.045)
    return (noise * np.exp(-t / 0.07) * 0.8 + tone * 0.6).astype(np.float32)


def _hat(sr: int, rng: np.random.Generator, decay: float = 0.018) -> np.ndarray:
    n = int(max(0.08, decay * 5) * sr)
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 2), n=2) * 0.35  # second difference: mostly highs
    return (noise * np.exp(-t / decay)).astype(np.float32)


def _add(buf: np.ndarray, start: float, sound: np.ndarray, gain: float, sr: int) -> None:
    i = int(round(start * sr))
    if i >= len(buf) or gain == 0.0:
        return
    j = min(len(buf), i + len(sound))
    buf[i:j] += sound[: j - i] * gain


def synth_track(
    *,
    bpm: float = 120.0,
    duration: float = 8.0,
    sample_rate: int = 44100,
    beats_per_bar: int = 4,
    swing: float = 0.0,
    drift: float = 0.0,
    sections: list[tuple[str, int]] | None = None,
    channels: int = 2,
    seed: int = 0,
    path: str = "",
    style: str = "band",
    subdivision: int = 2,
    wander: float = 0.0,
    jitter: float = 0.0,
    hats: float = 1.0,
) -> tuple[np.ndarray, int, TrackTruth]:
    """Render a track: returns (samples float32 [n, channels] in -1..1, sample_rate, truth).

    ``sections`` is a list of (kind, bars) with kind in :data:`SECTION_KINDS`; the last section
    is extended or cut to fill ``duration``. ``swing`` (0..0.33) delays every off-beat eighth by
    that fraction of an eighth note (1/3 is a triplet shuffle). ``drift`` is the total fractional
    tempo change over the track (0.03 speeds up by 3%; negative slows down). ``wander`` (e.g.
    0.03) lets every beat interval stray from it by a slow random walk, and ``jitter`` (seconds,
    e.g. 0.008) displaces every note from its beat at random, as players do; the truth is the
    wandering beat itself. ``subdivision`` is 2 (eighths) or 3 (compound time: triplet eighths).
    ``style`` is one of :data:`STYLES`. ``hats`` scales the hi-hats; above 1 the off-beats are as
    loud as the beats, as on many recordings where the eighths are the loudest onsets there are.
    """
    if not 20.0 <= bpm <= 400.0:
        raise ValueError(f"bpm out of range: {bpm}")
    if duration <= 0 or sample_rate < 4000 or channels < 1 or beats_per_bar < 1:
        raise ValueError("duration, sample_rate, channels and beats_per_bar must be positive")
    if style not in STYLES or subdivision not in (2, 3):
        raise ValueError(f"style must be one of {STYLES} and subdivision 2 or 3")
    rng = np.random.default_rng(seed)
    sr = int(sample_rate)
    n = int(round(duration * sr))
    offset = 0.05 + 0.2 * rng.random()  # music rarely starts exactly on sample 0
    beats = beat_times(bpm, duration, drift, offset)
    # A second generator for the new options, so that tracks without them stay sample-identical.
    live_rng = np.random.default_rng([seed, 19])
    beats = wandered(beats, wander, live_rng)
    beats = beats[beats < duration]
    n_beats = len(beats)
    # Beat intervals for every beat (the last one repeats), to place eighths and size notes.
    ibi = np.diff(beats, append=beats[-1] + (beats[-1] - beats[-2] if n_beats > 1 else 60.0 / bpm))
    n_bars = -(-n_beats // beats_per_bar)
    layout = list(sections) if sections else default_sections(n_bars)
    for kind, _bars in layout:
        if kind not in _ARRANGEMENT:
            raise ValueError(f"unknown section kind {kind!r}; expected one of {SECTION_KINDS}")
    # Section of every bar: the last section fills whatever the list leaves uncovered.
    bar_kind = []
    for kind, bars in layout:
        bar_kind += [kind] * int(bars)
    bar_kind = (bar_kind + [layout[-1][0]] * n_bars)[:n_bars]

    key = int(rng.integers(0, 12))
    left = np.zeros(n, np.float32)
    right = np.zeros(n, np.float32)
    kick, snare_s, hat_s = _kick(sr), _snare(sr, rng), _hat(sr, rng)
    open_hat = _hat(sr, rng, decay=0.06)
    crash = _hat(sr, rng, decay=0.5) * 0.8
    vel = 1.0 + 0.08 * rng.standard_normal(n_beats * 2)  # a little human dynamics

    drumless = style in DRUMLESS
    strum = _strum_offsets(live_rng) if style == "strummed" else None

    def hit(t: float, sound: np.ndarray, gl: float, gr: float) -> None:
        # Players are never exactly on the beat: each note strays by ``jitter``.
        if jitter:
            t = max(0.0, t + float(live_rng.normal(0.0, jitter)))
        _add(left, t, sound, gl, sr)
        _add(right, t, sound, gr, sr)

    for b in range(n_beats):
        bar, pos = divmod(b, beats_per_bar)
        kind = bar_kind[bar]
        pad, stabs, bass, kick_g, snare_g, hat_g, crash_g, level = _ARRANGEMENT[kind]
        if drumless:
            stabs, kick_g, snare_g, hat_g, crash_g = _DRUMLESS_CHORDS[level], 0.0, 0.0, 0.0, 0.0
            bass = max(bass, 0.35)
        t0, d = beats[b], ibi[b]
        root_deg, quality = _PROGRESSION[bar % len(_PROGRESSION)]
        root = 48 + (key + root_deg) % 12  # C3..B3
        chord = root + 12 + np.array(_TRIAD[quality])  # one octave up: C4..B5 voicing
        v = vel[b]
        downbeat = pos == 0
        # Where the off-beat notes go: the "and" (swung) in simple time, the 2nd and 3rd triplet
        # eighths in compound time.
        offs = [d * (0.5 + swing * 0.5)] if subdivision == 2 else [d / 3.0, 2.0 * d / 3.0]
        if downbeat and pad:
            bar_len = float(ibi[b : b + beats_per_bar].sum())
            note = _tone(_midi_hz(chord), int(bar_len * sr), sr, 5, 0.03, bar_len * 0.8)
            hit(t0, note, pad, pad)
        if stabs and style == "strummed":
            # A down-strum on every beat, the strings a few ms apart, accented on the bar.
            accent = 1.0 if downbeat else 0.65
            guitar = np.concatenate([[root], chord, chord[:2] + 12])
            for k, f in enumerate(guitar):
                note = _tone(_midi_hz([f]), int(min(1.2, d * 1.5) * sr), sr, 6, 0.002, 0.35)
                hit(t0 + strum[k], note, stabs * accent * v * 0.5, stabs * accent * v * 0.45)
            # Light up-strums (top strings, high to low) on the eighths between the beats.
            for off in offs:
                for k, f in enumerate(guitar[:-4:-1]):
                    note = _tone(_midi_hz([f]), int(min(0.5, d * 0.5) * sr), sr, 6, 0.002, 0.15)
                    hit(t0 + off + strum[k], note, stabs * v * 0.12, stabs * v * 0.1)
        elif stabs and style == "piano":
            # Left hand: the root low on the bar (and mid-bar in 4/4); right hand: the chord on
            # every beat, softer off the bar.
            accent = 1.0 if downbeat else 0.6
            note = _tone(_midi_hz(chord), int(min(1.5, d * 2) * sr), sr, 8, 0.002, 0.5)
            hit(t0, note, stabs * accent * v, stabs * accent * v * 0.9)
            if subdivision == 3:  # compound time: the chord broken over the triplet eighths
                for k, off in enumerate(offs):
                    note = _tone(_midi_hz([chord[1 + k] + 12]), int(d / 3 * 2 * sr), sr, 8, 0.002, 0.3)
                    hit(t0 + off, note, stabs * v * 0.3, stabs * v * 0.3)
        elif stabs:
            accent = 1.0 if downbeat else 0.6
            stab = _tone(_midi_hz(chord), int(min(0.4, d) * sr), sr, 6, 0.002, 0.09)
            hit(t0, stab, stabs * accent * v, stabs * accent * v * 0.8)
        if bass and (style != "piano" or downbeat or (beats_per_bar == 4 and pos == 2)):
            # Root on every beat, held longer and louder on the downbeat.
            length = d * (1.8 if downbeat else 0.85)
            note = _tone(_midi_hz([root - 12]), int(length * sr), sr, 4, 0.004, length * 0.6)
            g = bass * (1.0 if downbeat else 0.7) * v
            hit(t0, note, g, g)
        if kick_g:
            for t, g in _kick_pattern(style, kind, pos, beats_per_bar, t0, offs, v):
                hit(t, kick, kick_g * g, kick_g * g)
        if snare_g and _snare_on(style, pos, beats_per_bar):
            hit(t0, snare_s, snare_g * v * 0.9, snare_g * v)
        if hat_g:
            hat_off = open_hat if kind == "drop" else hat_s
            even = hats > 1.0  # loud hats: every eighth alike, the beat no louder than the "and"
            _add(left, t0, hat_s, hat_g * hats * 0.7 * vel[n_beats + b], sr)
            if even:
                _add(right, t0, hat_s, hat_g * hats * 0.6, sr)
            for off in offs:
                _add(right, t0 + off, hat_s if even else hat_off, hat_g * hats * 0.6, sr)
                _add(left, t0 + off, hat_s if even else hat_off, hat_g * hats * (0.7 if even else 0.3), sr)
        if crash_g and downbeat and (bar == 0 or bar_kind[bar - 1] != kind):
            hit(t0, crash, crash_g, crash_g)

    # Fade out the last two bars of an outro, as records do.
    if bar_kind[-1] == "outro" and n_beats > 2 * beats_per_bar:
        fade_start = beats[max(0, n_beats - 2 * beats_per_bar)]
        t = np.arange(n) / sr
        fade = np.clip(1.0 - (t - fade_start) / max(duration - fade_start, 1e-3), 0.05, 1.0)
        left *= fade.astype(np.float32)
        right *= fade.astype(np.float32)

    stereo = np.stack([left, right], axis=1)
    peak = float(np.abs(stereo).max()) or 1.0
    stereo *= 0.89 / peak
    samples = _spread(stereo, channels)

    downbeats = beats[::beats_per_bar]
    compound = f"{beats_per_bar * 3}/8" if subdivision == 3 else f"{beats_per_bar}/4"
    meter = {4: "4/4", 3: "3/4"}.get(beats_per_bar, compound)
    bar_starts = np.append(downbeats, duration)
    sec_list: list[dict] = []
    for bar, kind in enumerate(bar_kind):
        if sec_list and sec_list[-1]["kind"] == kind:
            sec_list[-1]["end"] = float(min(bar_starts[bar + 1], duration))
        else:
            start = 0.0 if bar == 0 else float(bar_starts[bar])
            sec_list.append({"kind": kind, "start": start, "end": float(min(bar_starts[bar + 1], duration)),
                             "level": _ARRANGEMENT[kind][-1]})
    tempo = 60.0 / float(np.median(np.diff(beats))) if n_beats > 1 else float(bpm)
    truth = TrackTruth(path=str(path), tempo=tempo, beats=beats, downbeats=downbeats,
                       duration=float(n) / sr, beats_per_bar=beats_per_bar, meter=meter, sections=sec_list)
    return samples, sr, truth


def _strum_offsets(rng: np.random.Generator) -> np.ndarray:
    """When each of the 6 strings of a down-strum sounds: 8-14 ms apart, low string first."""
    return np.concatenate([[0.0], np.cumsum(rng.uniform(0.008, 0.014, 5))])


def _kick_pattern(style: str, kind: str, pos: int, bpb: int, t0: float, offs: list[float],
                  v: float) -> list[tuple[float, float]]:
    """(time, gain) of the kicks on one beat; ``v`` is the beat's velocity (pickups: 0.5 flat).

    Band: four on the floor in the drop; elsewhere 1 and 3 with a pickup before 3 (4/4), only 1
    in a waltz or in 6/8. Half-time: 1 only, with a pickup on the last off-beat.
    """
    if style == "halftime":
        return [(t0, v)] if pos == 0 else [(t0 + offs[-1], 0.5)] if pos == bpb - 1 else []
    if kind == "drop":
        return [(t0, v)]
    if bpb == 4:
        return [(t0, v)] if pos % 2 == 0 else [(t0 + offs[-1], 0.5)] if pos == 1 else []
    return [(t0, v)] if pos == 0 else []


def _snare_on(style: str, pos: int, bpb: int) -> bool:
    """Backbeat: 2 and 4 in 4/4, 2 and 3 in a waltz, 2 in 6/8; half-time: 3 only."""
    if style == "halftime":
        return pos == bpb // 2
    return pos > 0 if bpb == 3 else pos % 2 == 1


def _spread(stereo: np.ndarray, channels: int) -> np.ndarray:
    """Map the stereo mix onto ``channels`` (mono: average; 5.1: L R C LFE Ls Rs)."""
    if channels == 2:
        return np.ascontiguousarray(stereo, dtype=np.float32)
    if channels == 1:
        return stereo.mean(axis=1, keepdims=True).astype(np.float32)
    mid = stereo.mean(axis=1)
    if channels == 6:
        cols = [stereo[:, 0] * 0.7, stereo[:, 1] * 0.7, mid * 0.5, mid * 0.3, stereo[:, 0] * 0.4, stereo[:, 1] * 0.4]
    else:
        cols = [stereo[:, i % 2] for i in range(channels)]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def write_audio(path: str, samples: np.ndarray, sample_rate: int, *, cover: bool = False,
                bitrate: int | None = None) -> None:
    """Encode ``samples`` (float32 [n, channels]) to ``path``; the codec follows the extension.

    Rates a codec cannot store (mp3 at 96 kHz, Opus at 44.1 kHz) are resampled by FFmpeg to the
    nearest rate it can. ``cover`` adds a small JPEG as an attached picture (mp3 and m4a), as
    taggers do, so that decoders must pick the audio stream. Written to a temporary name and
    renamed, like every montaged output.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CODECS:
        raise ValueError(f"no codec for extension {ext!r}; use one of {sorted(_CODECS)}")
    fmt, codec, sample_fmt, rates = _CODECS[ext]
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    layout = _LAYOUTS.get(channels)
    if layout is None:
        raise ValueError(f"unsupported channel count {channels}")
    rate = sample_rate
    if rates is not None and rate not in rates:
        rate = min(rates, key=lambda r: (abs(r - sample_rate), -r))
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
    try:
        # ipod (the usual .m4a muxer) refuses picture streams; plain mp4 writes them as "covr".
        if cover and ext == ".m4a":
            fmt = "mp4"
        # moov first (+faststart), as music stores deliver m4a: a cut-off download still plays.
        options = {"movflags": "+faststart"} if ext == ".m4a" else {}
        with av.open(tmp, "w", format=fmt, options=options) as out:
            stream = out.add_stream(codec, rate=rate, layout=layout)
            stream.codec_context.format = sample_fmt
            if bitrate or codec in ("aac", "libmp3lame", "libopus"):
                stream.codec_context.bit_rate = bitrate or (64000 * min(channels, 2) if codec != "libopus" else 96000)
            pic = _add_cover(out) if cover and ext in (".mp3", ".m4a") else None
            if pic is not None:
                # The picture must be muxed before audio: the mp3 muxer writes it into the ID3 tag.
                out.mux(pic)
            if ext in (".mp4", ".mkv"):
                _write_picture_track(out, samples.shape[0] / sample_rate)
            frame_size = stream.codec_context.frame_size or 1024
            resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=rate, frame_size=frame_size)
            chunk = 4096
            planar = np.ascontiguousarray(samples.T)
            for i in range(0, planar.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(planar[:, i : i + chunk], format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = i
                for rframe in resampler.resample(frame):
                    out.mux(stream.encode(rframe))
            for rframe in resampler.resample(None):
                out.mux(stream.encode(rframe))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_picture_track(out: av.container.OutputContainer, duration: float, fps: int = 5) -> None:
    """A 64x64 H.264 track whose colour drifts, muxed before the audio (interleaving is the
    muxer's job; a few hundred tiny packets)."""
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
    for i in range(max(1, int(duration * fps))):
        img = np.full((64, 64, 3), (40 + i * 3) % 255, np.uint8)
        img[:, :, 1] = 120
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        out.mux(vs.encode(frame))
    out.mux(vs.encode(None))


def _add_cover(out: av.container.OutputContainer):
    """Add an attached-picture stream (a 64x64 JPEG) and return its single packet."""
    vs = out.add_stream("mjpeg", rate=1)
    vs.width, vs.height = 64, 64
    vs.pix_fmt = "yuvj420p"
    vs.disposition = av.stream.Disposition.attached_pic
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :, 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    img[:, :, 2] = 200
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
    packets = vs.encode(frame) + vs.encode(None)
    return packets[0] if packets else None


def make_track(
    path: str,
    *,
    bpm: float = 120.0,
    duration: float = 8.0,
    sample_rate: int = 44100,
    beats_per_bar: int = 4,
    swing: float = 0.0,
    drift: float = 0.0,
    sections: list[tuple[str, int]] | None = None,
    channels: int = 2,
    seed: int = 0,
    cover: bool = False,
    **options,
) -> TrackTruth:
    """Synthesise a track and write it to ``path`` (codec from the extension); return its truth.
    ``options``: the other keywords of :func:`synth_track` (style, subdivision, wander, jitter)."""
    samples, sr, truth = synth_track(bpm=bpm, duration=duration, sample_rate=sample_rate,
                                     beats_per_bar=beats_per_bar, swing=swing, drift=drift,
                                     sections=sections, channels=channels, seed=seed, path=str(path), **options)
    write_audio(str(path), samples, sr, cover=cover)
    log.debug("wrote %s: %.1f BPM, %.1f s, %d beats", path, truth.tempo, truth.duration, len(truth.beats))
    return truth
