"""Bars and phrases: which beats start a bar, and which bars start a phrase. Pure numpy."""

from __future__ import annotations

import numpy as np

from montaged.analysis.audio.tempo import beat_strengths

BEATS_PER_BAR = 4



def beat_sync(features: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """Mean of ``features`` [frames, d] over each beat interval, [beats, d]."""
    n = len(features)
    edges = np.clip(np.round(np.append(beat_frames, beat_frames[-1] + np.median(np.diff(beat_frames))
                                       if len(beat_frames) > 1 else n)).astype(int), 0, n)
    csum = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features, axis=0, dtype=np.float64)])
    lengths = np.maximum(1, np.diff(edges))[:, None]
    return (csum[edges[1:]] - csum[edges[:-1]]) / lengths


def downbeat_scores(beat_frames: np.ndarray, low_onset: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """How much each beat looks like the first beat of a bar (z-scored, higher = more likely)."""
    nb = len(beat_frames)
    if nb == 0:
        return np.zeros(0)
    change = _chord_change(beat_frames, chroma)
    low = beat_strengths(beat_frames, low_onset, radius=2)
    return change + 0.7 * _z(low)


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 0 else np.zeros_like(x)


def _chord_change(beat_frames: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Per beat, z-scored: how different its chroma is from the previous beat's."""
    c = beat_sync(chroma, beat_frames)
    c = c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-9)
    change = np.ones(len(beat_frames))
    change[1:] = 1.0 - np.sum(c[1:] * c[:-1], axis=1)
    return _z(change)


METER_LABELS = {4: "4/4", 3: "3/4", 2: "6/8"}


def bar_contrast(scores: np.ndarray, period: int, window: int = 24) -> float:
    """How clearly ``scores`` (one per beat) peak once every ``period`` beats.

    In windows of ``window`` beats (half overlapping), the best phase's mean score minus the
    mean of the other beats; the median over windows. Windows, not the whole track: a beat the
    tracker dropped shifts the phase, and a whole-track mean would blur it away.
    """
    n = len(scores)
    if n < 2 * period:
        return 0.0
    window = min(window, n)
    starts = np.arange(0, n - window + 1, max(1, window // 2))
    t = np.arange(n)
    onehot = np.zeros((n + 1, period))
    counts = np.zeros((n + 1, period))
    onehot[t + 1, t % period] = scores
    counts[t + 1, t % period] = 1.0
    onehot, counts = np.cumsum(onehot, axis=0), np.cumsum(counts, axis=0)
    sums = onehot[starts + window] - onehot[starts]  # [windows, phase]
    cnt = counts[starts + window] - counts[starts]
    total = sums.sum(axis=1, keepdims=True)
    inside = sums / np.maximum(cnt, 1)
    outside = (total - sums) / np.maximum(window - cnt, 1)
    return float(np.median(np.max(inside - outside, axis=1)))


def subdivision_ratio(beat_frames: np.ndarray, env: np.ndarray) -> float:
    """Onsets a third of the way between beats relative to onsets halfway: above 1 the beat
    divides into three (6/8, 12/8, a shuffle), below 1 into two."""
    if len(beat_frames) < 4:
        return 0.0
    a, b = beat_frames[:-1], beat_frames[1:]
    third = np.maximum(beat_strengths(a + (b - a) / 3.0, env), beat_strengths(a + 2.0 * (b - a) / 3.0, env))
    half = beat_strengths((a + b) / 2.0, env)
    return float(np.mean(third)) / (float(np.mean(half)) + 1e-3 * (float(np.mean(env)) + 1e-9))


def compound_phase(beat_frames: np.ndarray, body: np.ndarray, chroma: np.ndarray) -> int | None:
    """When the tracked beats are the eighths of a compound meter, the phase (0..2) of the
    dotted-quarter beats among them; else None.

    The sign: the chords change every 6 tracked beats (a 6/8 bar), not every 3 (a waltz), while
    kick, bass and chord attacks (``body``) accent one beat in three.
    """
    if len(beat_frames) < 36:
        return None
    change = _chord_change(beat_frames, chroma)
    if bar_contrast(change, 6, 36) < 1.5 * max(bar_contrast(change, 3, 36), 1e-9):
        return None
    accent = beat_strengths(beat_frames, body, radius=2)
    means = np.array([float(accent[k::3].mean()) for k in range(3)])
    order = np.argsort(means)
    return int(order[-1]) if means[order[-2]] < 0.6 * means[order[-1]] else None


def compound_from_triple(beat_frames: np.ndarray, body: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
    """The dotted-quarter beats of a 6/8 that was tracked as 3/4 at 1.5 times its tempo (downbeat
    first, then alternating), or None.

    Both bars hold six eighths; 3/4 accents eighths 0, 2 and 4, 6/8 accents 0 and 3. The tracked
    beats sit on 0, 2 and 4, and eighth 3 is the point halfway between the bar's 2nd and 3rd
    beats: when that point carries more kick, bass and chord onset than those beats, the bar is
    two groups of three eighths.
    """
    down = np.flatnonzero(pos[:-3] == 0)
    if len(down) < 6:
        return None
    s = beat_strengths(beat_frames, body, radius=2)
    mid = (beat_frames[down + 1] + beat_frames[down + 2]) / 2.0
    slot3 = float(np.median(beat_strengths(mid, body, radius=2)))
    others = max(float(np.median(s[down + 1])), float(np.median(s[down + 2])))
    if slot3 <= 1.3 * others or slot3 <= 0.0:
        return None
    # Every bar with its 2nd and 3rd beats: its downbeat, then eighth 3 (alternating: the first
    # of every pair is a downbeat).
    return np.stack([beat_frames[down], mid], axis=1).ravel()


def detect_meter(beat_frames: np.ndarray, env: np.ndarray, low_onset: np.ndarray,
                 chroma: np.ndarray) -> tuple[int, str, float, np.ndarray]:
    """(beats per bar, label, confidence 0..1, downbeat scores) from the tracked beats.

    3 against 4: which period the downbeat scores (chord changes and low-band onsets) repeat
    with. 2 (6/8: two dotted-quarter beats) against 4: only when the beat divides into three
    and the scores peak every other beat rather than every fourth; straight time with a peak
    every two beats is far more often 4/4 with two chords a bar than 2/4. 4 is the default: it
    needs no evidence.
    """
    scores = downbeat_scores(beat_frames, low_onset, chroma)
    if len(beat_frames) < 12:
        return BEATS_PER_BAR, METER_LABELS[BEATS_PER_BAR], 0.0, scores
    c3, c4 = bar_contrast(scores, 3), bar_contrast(scores, 4)
    if c3 > 1.25 * max(c4, 0.0) and c3 > 0.3:
        return 3, METER_LABELS[3], float(np.clip(1.0 - max(c4, 0.0) / c3, 0.0, 1.0)), scores
    # In 4/4 the second half of the bar looks like a weaker downbeat (kick on 3), so c2 is about
    # two thirds of c4 there; with a bar every two beats c2 exceeds c4 (measured 1.3x vs 0.6-0.7x).
    c2 = bar_contrast(scores, 2)
    if c2 > 1.1 * max(c4, 1e-9) and subdivision_ratio(beat_frames, env) > 1.3:
        return 2, METER_LABELS[2], float(np.clip(1.0 - max(c4, 0.0) / c2, 0.0, 1.0)), scores
    conf = float(np.clip(1.0 - max(c3, 0.0) / c4, 0.0, 1.0)) if c4 > 0 else 0.0
    return 4, METER_LABELS[4], conf, scores


def downbeat_phase(scores: np.ndarray, beats_per_bar: int = BEATS_PER_BAR, switch_cost: float = 8.0) -> np.ndarray:
    """Position in the bar (0 = downbeat) of every beat, by Viterbi over bar positions.

    The state advances by one beat per beat; jumping to another position (a tracker glitch, a
    2/4 bar) costs ``switch_cost``. Emission: the downbeat score when at position 0.
    """
    nb, p = len(scores), beats_per_bar
    if nb == 0:
        return np.zeros(0, dtype=int)
    # trans[from][to]: 0 for the normal advance, -switch_cost otherwise. Plain Python floats:
    # with 4 states, numpy's per-call overhead costs ten times the arithmetic.
    trans = [[0.0 if (f + 1) % p == to else -float(switch_cost) for to in range(p)] for f in range(p)]
    emit = [float(x) for x in scores]
    delta = [emit[0] if s == 0 else 0.0 for s in range(p)]
    back = [[0] * p]
    for t in range(1, nb):
        new, arg = [], []
        for to in range(p):
            # the first best predecessor, as np.argmax would pick it
            best_f, best_v = 0, delta[0] + trans[0][to]
            for f in range(1, p):
                v = delta[f] + trans[f][to]
                if v > best_v:
                    best_f, best_v = f, v
            new.append(best_v + (emit[t] if to == 0 else 0.0))
            arg.append(best_f)
        delta = new
        back.append(arg)
    path = np.zeros(nb, dtype=int)
    path[-1] = int(np.argmax(delta))
    for t in range(nb - 1, 0, -1):
        path[t - 1] = back[t][path[t]]
    return path


def phrase_starts(downbeat_times: np.ndarray, energy: np.ndarray, energy_hz: float, bars: int = 4) -> np.ndarray:
    """Every ``bars``-th downbeat, starting where loudness changes most often line up.

    Sections in popular music start on phrase boundaries, so the grouping phase is the one whose
    boundaries sit on the largest loudness changes (mean energy of the next bar vs the previous).
    """
    nd = len(downbeat_times)
    if nd == 0:
        return downbeat_times
    if len(energy) < 2 or nd < 2 * bars:
        return downbeat_times[::bars]
    idx = np.clip(np.round(downbeat_times * energy_hz).astype(int), 0, len(energy))
    csum = np.concatenate([[0.0], np.cumsum(energy, dtype=np.float64)])
    bar_len = np.diff(idx, append=min(len(energy), idx[-1] + int(np.median(np.diff(idx)))))
    nxt = (csum[np.minimum(idx + bar_len, len(energy))] - csum[idx]) / np.maximum(bar_len, 1)
    prev_start = np.maximum(idx - np.roll(bar_len, 1), 0)
    prv = (csum[idx] - csum[prev_start]) / np.maximum(idx - prev_start, 1)
    novelty = np.abs(nxt - prv)
    novelty[0] = 0.0
    phase_score = [novelty[ph::bars].sum() for ph in range(bars)]
    ph = int(np.argmax(phase_score)) if max(phase_score) > 0.05 else 0
    starts = downbeat_times[ph::bars]
    if ph > 0:
        # The bars before the first full phrase still form a (short) phrase at the start.
        starts = np.concatenate([downbeat_times[:1], starts])
    return starts
