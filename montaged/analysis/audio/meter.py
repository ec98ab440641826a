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
    c = beat_sync(chroma, beat_frames)
    c = c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-9)
    change = np.ones(nb)
    change[1:] = 1.0 - np.sum(c[1:] * c[:-1], axis=1)
    low = beat_strengths(beat_frames, low_onset, radius=2)

    def z(x):
        sd = float(np.std(x))
        return (x - float(np.mean(x))) / sd if sd > 0 else np.zeros_like(x)

    return z(change) + 0.7 * z(low)


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
