"""Tempo and beats: periodicity of the onset envelope, dynamic-programming beat tracking, the
metrical level, and how much the resulting grid can be trusted. Pure numpy/scipy.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

MIN_BPM, MAX_BPM = 50.0, 220.0
PRIOR_BPM, PRIOR_OCTAVES = 115.0, 1.0  # where most people tap, and how wide that preference is
FALLBACK_BPM = 120.0



def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Unbiased autocorrelation of the mean-removed ``x`` for lags 0..max_lag, ac[0] == 1."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    if n < 2 or not np.any(x):
        return np.zeros(max_lag + 1)
    nfft = scipy.fft.next_fast_len(2 * n)
    spec = scipy.fft.rfft(x, nfft)
    ac = scipy.fft.irfft(spec.real ** 2 + spec.imag ** 2, nfft)[: max_lag + 1]
    lags = np.arange(len(ac))
    # Unbiased: long lags overlap fewer samples; without this, slow tempi are always penalised.
    ac = np.where(lags < n, ac * n / np.maximum(n - lags, 1), 0.0)
    out = np.zeros(max_lag + 1)
    out[: len(ac)] = ac / ac[0]
    return out


def tempo_prior(bpm: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (np.log2(np.asarray(bpm) / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)


def estimate_tempo(env: np.ndarray, fps: float) -> tuple[float, float, list[float]]:
    """(tempo BPM, periodicity strength 0..1, alternates) from the onset envelope.

    The strength is the autocorrelation at the chosen period (1 = perfectly periodic onsets);
    alternates are the other metrical levels (x2, /2, x3/2, x2/3) that lie within range, best
    first.
    """
    max_lag = int(fps * 60.0 / (MIN_BPM * 0.9))
    ac = autocorrelation(env, max_lag)
    lags = np.arange(len(ac), dtype=np.float64)
    valid = (lags >= fps * 60.0 / MAX_BPM) & (lags <= fps * 60.0 / MIN_BPM)
    if not np.any(ac[valid] > 0):
        return FALLBACK_BPM, 0.0, []
    # Periodicity at lag L is supported by its multiples: a beat period repeats at 2L and 4L
    # too, a spurious peak does not.
    enhanced = ac.copy()
    for k in (2, 4):
        idx = (lags * k).astype(int)
        enhanced += 0.5 * np.where(idx < len(ac), ac[np.minimum(idx, len(ac) - 1)], 0.0)
    bpm_of_lag = np.where(lags > 0, fps * 60.0 / np.maximum(lags, 1e-9), 0.0)
    score = np.where(valid, np.maximum(enhanced, 0.0) * tempo_prior(np.maximum(bpm_of_lag, 1e-3)), 0.0)
    peaks = np.nonzero((score[1:-1] > score[:-2]) & (score[1:-1] >= score[2:]) & (score[1:-1] > 0))[0] + 1
    if len(peaks) == 0:
        return FALLBACK_BPM, 0.0, []
    best = int(peaks[np.argmax(score[peaks])])
    lag = _parabolic(ac, best)
    tempo = fps * 60.0 / lag
    strength = float(np.clip(ac[best], 0.0, 1.0))
    alternates = []
    for ratio in (2.0, 0.5, 1.5, 2.0 / 3.0):
        alt = tempo * ratio
        if MIN_BPM * 0.8 <= alt <= MAX_BPM * 1.1:
            alt_lag = int(round(fps * 60.0 / alt))
            alternates.append((float(enhanced[min(alt_lag, len(ac) - 1)]), round(alt, 2)))
    alternates.sort(reverse=True)
    return float(tempo), strength, [a for _s, a in alternates]


def _parabolic(y: np.ndarray, i: int) -> float:
    """Sub-sample position of the peak at index ``i`` by fitting a parabola through 3 points."""
    if i <= 0 or i >= len(y) - 1:
        return float(i)
    a, b, c = y[i - 1], y[i], y[i + 1]
    den = a - 2 * b + c
    if den >= 0:
        return float(i)
    return float(i + 0.5 * (a - c) / den)


# --------------------------------------------------------------------------------------------
# Beats


def track_beats(env: np.ndarray, fps: float, bpm: float, tightness: float = 100.0) -> np.ndarray:
    """Beat frames (float, sub-frame refined) by Ellis-style dynamic programming.

    ``cumscore[i] = local[i] + max_j (cumscore[j] - tightness * log((i - j) / period) ** 2)`` over
    predecessors ``j`` between half and twice a period back. Every frame in a block of half a
    period depends only on frames before the block, so a whole block is solved with one
    vectorised max: ~2 * duration / period numpy steps instead of one per frame.
    """
    env = np.asarray(env, dtype=np.float64)
    n = len(env)
    period = fps * 60.0 / bpm
    if n < 2 or period < 2:
        return np.zeros(0)
    # Smooth with a narrow Gaussian so that beats lock onto onset peaks, not single frames.
    w = np.arange(-int(period), int(period) + 1)
    local = np.convolve(env, np.exp(-0.5 * (w * 32.0 / period) ** 2), mode="same")
    local = local / (local.std() or 1.0)
    lmin = max(1, int(round(period / 2)))
    lmax = int(round(period * 2))
    lag = np.arange(lmin, lmax + 1)
    penalty = -tightness * np.log(lag / period) ** 2
    rows = np.arange(lmin)
    # cumscore behind lmax frames of -inf, so that early frames see "no predecessor" instead
    # of wrapping around.
    padded = np.concatenate([np.full(lmax, -np.inf), local])
    cum = padded[lmax:]
    # preds[i, q] is cumscore at frame i - lag[q]: a view that sees every value as it is written.
    preds = sliding_window_view(padded, len(lag))[:, ::-1]
    best_lag = np.zeros(n, dtype=np.int64)
    for b0 in range(lmin, n, lmin):
        b1 = min(b0 + lmin, n)
        cand = preds[b0:b1] + penalty
        k = cand.argmax(axis=1)
        best_lag[b0:b1] = k
        # A chain may also start here (the music's first beat); only extend when it helps.
        np.add(local[b0:b1], np.maximum(cand[rows[: b1 - b0], k], 0.0), out=cum[b0:b1])
    # The best predecessor's score again, now for all frames at once (the same two numbers
    # added, so the same result): chains extend where it was positive.
    frames = np.arange(n)
    pred = frames - lag[best_lag]
    best = np.where(frames >= lmin, padded[pred + lmax] + penalty[best_lag], -np.inf)
    back = np.where(best > 0, pred, -1)
    # End on the strongest local maximum of cumscore within the last period.
    tail = np.arange(max(0, n - int(period * 1.5)), n)
    last = int(tail[np.argmax(cum[tail])])
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    beats = np.array(beats[::-1])
    return _refine(env, trim_beats(beats, env))


def _refine(env: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Sub-frame beat positions: parabola through the envelope around each beat frame."""
    frames = np.asarray(frames, dtype=np.int64)
    if len(frames) == 0:
        return frames.astype(np.float64)
    i = np.clip(frames, 1, len(env) - 2)
    a, b, c = env[i - 1], env[i], env[i + 1]
    den = a - 2 * b + c
    shift = np.where((den < 0) & (b >= a) & (b >= c), 0.5 * (a - c) / np.where(den < 0, den, -1.0), 0.0)
    return frames + np.clip(shift, -0.5, 0.5)


def trim_beats(beats: np.ndarray, env: np.ndarray) -> np.ndarray:
    """Drop beats in leading and trailing silence, where the tracker only extrapolated.

    The first and last beats must sit on a real onset (within a frame); beats inside the track
    are kept even when quiet, because a break in the music still has a beat for the edit.
    """
    if len(beats) == 0:
        return beats
    strength = beat_strengths(beats, env)
    positive = strength[strength > 0]
    if len(positive) == 0:
        return beats[:0]
    live = np.nonzero(strength > 0.1 * float(np.median(positive)))[0]
    return beats[live[0] : live[-1] + 1]


def beat_strengths(beats: np.ndarray, env: np.ndarray, radius: int = 1) -> np.ndarray:
    """Maximum of ``env`` within ``radius`` frames of each (fractional) beat frame."""
    if len(beats) == 0:
        return np.zeros(0)
    idx = np.round(np.asarray(beats)).astype(int)
    n = len(env)
    return np.max([env[np.clip(idx + d, 0, n - 1)] for d in range(-radius, radius + 1)], axis=0)


def choose_metrical_level(beats: np.ndarray, env: np.ndarray) -> int:
    """+1: double the tempo, -1: halve it, 0: keep, judged from the tracked beats.

    Halve when the beats alternate strong/weak (the weak ones are off-beat eighths); double when
    the points halfway between beats carry onsets nearly as strong as the beats themselves (the
    tracker found half notes).
    """
    if len(beats) < 8:
        return 0
    s = beat_strengths(beats, env)
    even, odd = float(np.median(s[0::2])), float(np.median(s[1::2]))
    strong, weak = max(even, odd), min(even, odd)
    if strong > 0 and weak / strong < 0.45:
        return -1
    mids = (beats[:-1] + beats[1:]) / 2.0
    m = float(np.median(beat_strengths(mids, env)))
    on = float(np.median(s))
    if on > 0 and m / on > 0.7:
        return +1
    return 0


def _phase_stats(points: np.ndarray, body: np.ndarray, period: int, stat) -> np.ndarray:
    """``stat`` (np.median, np.mean) of the body strength at ``points``, per phase mod ``period``."""
    s = beat_strengths(points, body, radius=2)
    return np.array([float(stat(s[k::period])) if len(s[k::period]) else 0.0 for k in range(period)])


# A phase is "without" body onsets when its median is below this fraction of the strongest
# phase's, on the body flux scaled to unit std (not :func:`normalize_onset`: its local-mean
# removal zeroes a re-struck chord that follows a loud downbeat). Measured on 32 synthetic
# tracks of every kind: 0.00-0.09 for the off-beat eighths of music tracked at twice its
# tempo; 0.19-0.98 for the weaker beats of the right level (re-struck piano chords, the 2nd
# dotted quarter of a 6/8).
EMPTY_PHASE = 0.14


def metrical_factor(beats: np.ndarray, env: np.ndarray, body: np.ndarray) -> float:
    """What to multiply the tracked tempo by to reach the quarter-note level: 1/3, 1/2, 1 or 2.

    The evidence is where the kick, bass, snare and chords play (``body``: the onset flux below
    ~1.2 kHz, without the hi-hats, scaled to unit std). The quarter note is the fastest pulse on
    which they play on every beat, if more softly on some:

    - every other tracked beat without any such onset: the tracker found the eighths (or the
      hats of a slow or half-time groove): halve;
    - two of every three without: the eighths of a compound meter (6/8): a third;
    - the points halfway between beats not without them (by the same measure): double.

    Without such evidence the level of the prior-weighted periodicity (:func:`estimate_tempo`)
    stands. Without any body onsets, the full-band rules of :func:`choose_metrical_level` decide.
    """
    if len(beats) < 12 or not np.any(body > 0):
        return float(2.0 ** choose_metrical_level(beats, env)) if len(beats) >= 8 else 1.0
    halves = _phase_stats(beats, body, 2, np.median)
    thirds = np.sort(_phase_stats(beats, body, 3, np.median))
    mean_halves = _phase_stats(beats, body, 2, np.mean)
    if thirds[-1] > 0 and thirds[-2] < EMPTY_PHASE * thirds[-1] and mean_halves.min() > 0.5 * mean_halves.max():
        return 1.0 / 3.0
    if halves.max() > 0 and halves.min() < EMPTY_PHASE * halves.max():
        return 0.5
    # The same test one level up: are the points halfway between beats empty? They are at the
    # quarter-note level (the eighths: 0.00-0.09, as above); they are not when the tracker found
    # half notes (the missed beats: 0.19 and more).
    on = float(np.median(beat_strengths(beats, body, radius=2)))
    mids = float(np.median(beat_strengths((beats[:-1] + beats[1:]) / 2.0, body, radius=2)))
    if on > 0 and mids >= EMPTY_PHASE * on:
        return 2.0
    return 1.0


def tempo_from_beats(beat_times: np.ndarray) -> float:
    """Median tempo over 8-beat spans: robust to a missed beat, finer than one frame."""
    if len(beat_times) < 2:
        return 0.0
    span = min(8, len(beat_times) - 1)
    ibi = (beat_times[span:] - beat_times[:-span]) / span
    return 60.0 / float(np.median(ibi))


def confidence_score(strength: float, beat_s: np.ndarray, env: np.ndarray) -> float:
    """0..1: how clear and steady the beat is.

    Combines the autocorrelation at the beat period (periodic onsets) with how much stronger the
    envelope is on the beats than elsewhere (onsets that the beats actually hit).
    """
    if len(beat_s) < 4 or not np.any(env > 0):
        return 0.0
    contrast = float(np.median(beat_s)) / (float(np.mean(env)) + 1e-9)
    c_ac = np.clip((strength - 0.05) / 0.35, 0.0, 1.0)
    c_hit = np.clip((contrast - 1.5) / 2.5, 0.0, 1.0)
    return float(np.sqrt(c_ac * c_hit))


def fallback_grid(duration: float, bpm: float, start: float = 0.0) -> np.ndarray:
    period = 60.0 / bpm
    return np.arange(start, max(duration, 0.0), period)
