"""Loudness over time and the low / mid / high sections it falls into. Pure numpy."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ENERGY_HZ = 10



def energy_curve(y: np.ndarray, sr: int, hz: int = ENERGY_HZ, range_db: float = 40.0) -> np.ndarray:
    """Loudness at ``hz``: RMS in dB, mapped so the loudest stretch is 1 and -range_db is 0."""
    block = max(1, int(round(sr / hz)))
    n = len(y) // block
    if n == 0:
        return np.zeros(0, np.float32)
    x = np.asarray(y[: n * block], dtype=np.float32).reshape(n, block)
    rms = np.sqrt(np.einsum("ij,ij->i", x, x) / block)
    db = 20.0 * np.log10(rms + 1e-9)
    if float(rms.max()) < 1e-5:  # digital silence or near it: no loudness at all
        return np.zeros(n, np.float32)
    top = float(np.percentile(db, 99))
    return np.clip((db - (top - range_db)) / range_db, 0.0, 1.0).astype(np.float32)


def energy_sections(energy: np.ndarray, hz: float, boundaries: np.ndarray | None = None,
                    min_len: float = 4.0) -> list[dict]:
    """Split the track into low/mid/high energy sections.

    Loudness is averaged between ``boundaries`` (downbeat times; else 2 s blocks), each block is
    labelled by its level relative to the loudest sustained part (within 2.5 dB of it: high;
    more than 7 dB below: low, on the 40 dB scale of :func:`energy_curve`), short runs are merged
    into a neighbour, and neighbours with the same label are joined.
    """
    n = len(energy)
    duration = n / hz
    if n == 0:
        return []
    if boundaries is None or len(boundaries) < 2:
        boundaries = np.arange(0.0, duration, 2.0)
    edges = np.unique(np.concatenate([[0.0], np.asarray(boundaries, dtype=np.float64), [duration]]))
    edges = edges[(edges >= 0) & (edges <= duration)]
    idx = np.clip(np.round(edges * hz).astype(int), 0, n)
    csum = np.concatenate([[0.0], np.cumsum(energy, dtype=np.float64)])
    means = (csum[idx[1:]] - csum[idx[:-1]]) / np.maximum(np.diff(idx), 1)
    # The loudest sustained level: the second-loudest block, so one loud fill does not set it.
    ranked = np.sort(means)
    top = float(ranked[-2] if len(ranked) >= 4 else ranked[-1])
    levels = np.where(means >= top - 2.5 / 40, 2, np.where(means >= top - 7.0 / 40, 1, 0))
    if top <= 0:
        levels[:] = 0
    # Majority vote over 3 blocks: a fill or a quiet bar is not a new section.
    if len(levels) >= 3:
        padded = np.concatenate([levels[:1], levels, levels[-1:]])
        win = sliding_window_view(padded, 3)
        levels = np.sort(win, axis=1)[:, 1]
    runs = _runs(levels, edges)
    # Merge runs shorter than min_len into the longer neighbour.
    changed = True
    while changed and len(runs) > 1:
        changed = False
        for k, r in enumerate(runs):
            if r[2] - r[1] < min_len:
                nb = [runs[j] for j in (k - 1, k + 1) if 0 <= j < len(runs)]
                target = max(nb, key=lambda q: q[2] - q[1])
                target[1] = min(target[1], r[1])
                target[2] = max(target[2], r[2])
                runs.pop(k)
                runs = _join(runs)
                changed = True
                break
    names = ("low", "mid", "high")
    return [{"start": round(float(s), 3), "end": round(float(e), 3), "level": names[lv]} for lv, s, e in runs]


def _runs(levels: np.ndarray, edges: np.ndarray) -> list[list]:
    change = np.nonzero(np.diff(levels))[0] + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(levels)]])
    return [[int(levels[s]), float(edges[s]), float(edges[e])] for s, e in zip(starts, ends)]


def _join(runs: list[list]) -> list[list]:
    out: list[list] = []
    for r in sorted(runs, key=lambda q: q[1]):
        if out and out[-1][0] == r[0]:
            out[-1][2] = max(out[-1][2], r[2])
        else:
            out.append(list(r))
    return out


def intro_end(sections: list[dict]) -> float:
    """End of a quiet intro: the first section when it is quieter than what follows it."""
    if len(sections) < 2:
        return 0.0
    order = {"low": 0, "mid": 1, "high": 2}
    first = order[sections[0]["level"]]
    if first < max(order[s["level"]] for s in sections[1:]):
        return float(sections[0]["end"])
    return 0.0
