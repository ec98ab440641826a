"""Candidate cuts from the packet index alone (picture types and sizes): nothing is decoded here."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from montaged.media import video as mv


ANCHOR_SPACING = 4.0  # seconds between anchors where nothing happens
SPIKE_RATIO = 1.4  # P frame size / median of the previous SPIKE_WINDOW P frames ...
SPIKE_INTRA_FRACTION = 0.2  # ... and / the size of the intra frames around it,
SPIKE_STRONG = 3.0  # ... or the jump alone is this large (VP9 codes cuts from golden frames)
SPIKE_STRONG_FRACTION = 0.1  # ... and still this fraction of an intra frame (not a few bytes)
SPIKE_B_RATIO = 2.2  # B frame size / median of the previous SPIKE_WINDOW B frames ...
SPIKE_B_INTRA_FRACTION = 0.1  # ... and / the size of the intra frames around it
SPIKE_WINDOW = 2
MERGE_GAP = 15  # frames: spike windows closer than this in one GOP are decoded as one span
SUSTAIN_FRAMES = 3  # P frames before and after a group of spikes compared by sustained_change
SUSTAIN_RATIO = 1.5
# A predicted frame this large next to the intra frames is nearly always a cut (measured on the
# bench clips: cuts 0.23-1.1 of a keyframe, motion or noise spikes 0.15-0.56).
LIKELY_CUT = 0.6
INTRA_COST = 4.0  # decoding an intra picture costs about this many predicted ones


def _median_of_previous(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the ``window`` values before each position (NaN for the first one)."""
    n = len(values)
    padded = np.concatenate([np.full(window, np.nan), values.astype(np.float64)])
    view = np.lib.stride_tricks.sliding_window_view(padded, window)[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows at the start
        return np.nanmedian(view, axis=1)


def _spikes_of_type(size: np.ndarray, sel: np.ndarray, intra_ref: np.ndarray, ratio: float,
                    fraction: float) -> np.ndarray:
    """Frames of ``sel`` (one picture type) that jump above the previous ones of that type."""
    if len(sel) < 2:
        return np.zeros(0, dtype=np.int64)
    s = size[sel]
    before = _median_of_previous(s, SPIKE_WINDOW)
    with np.errstate(invalid="ignore"):
        hit = ((s >= ratio * before) & (s >= fraction * intra_ref[sel])) | (
            (s >= SPIKE_STRONG * before) & (s >= SPIKE_STRONG_FRACTION * intra_ref[sel]))
    hit &= ~np.isnan(before)
    return sel[hit].astype(np.int64)


def size_spikes(index: mv.PacketIndex) -> tuple[np.ndarray, np.ndarray]:
    """(P spikes, B spikes): display indices of predicted frames much larger than the frames of
    their type before them.

    The first frame after a cut cannot be predicted from the frames before it, so it is coded
    mostly intra. If the cut falls on a B frame, the next P frame still has to be predicted
    from the old shot, so a cut shows as a P spike at or just after it; the B frames of the new
    shot are often larger too (their only good reference is that P frame).
    """
    size = index.size.astype(np.float64)
    intra_idx = np.flatnonzero(index.intra)
    empty = np.zeros(0, dtype=np.int64)
    if len(intra_idx) == 0:
        return empty, empty
    intra_ref = np.interp(np.arange(len(size)), intra_idx, size[intra_idx])
    # Codecs without parsed picture types (VP9, ...) have only intra and "other" frames.
    has_types = bool(np.any(index.ptype[~index.intra] != mv.UNKNOWN))
    if not has_types:
        return _spikes_of_type(size, np.flatnonzero(~index.intra), intra_ref, SPIKE_RATIO,
                               SPIKE_INTRA_FRACTION), empty
    p = _spikes_of_type(size, np.flatnonzero((index.ptype == mv.P_FRAME) & ~index.intra),
                        intra_ref, SPIKE_RATIO, SPIKE_INTRA_FRACTION)
    b = _spikes_of_type(size, np.flatnonzero(index.ptype == mv.B_FRAME), intra_ref,
                        SPIKE_B_RATIO, SPIKE_B_INTRA_FRACTION)
    return p, b


def keyframe_grid(index: mv.PacketIndex) -> int | None:
    """The encoder's regular keyframe interval in frames, or None if it has none.

    The most common keyframe distance, if at least half of the distances are within one frame
    of it (x264 alternates 29 and 30 with B-frames) and none is longer; an encoder that only
    places keyframes at scene changes has no grid, and then every keyframe is a candidate.
    """
    keys = index.keyframes
    if len(keys) < 4:
        return None
    d = np.diff(keys)
    values, counts = np.unique(d, return_counts=True)
    grid = int(values[np.argmax(counts)])
    # An encoder's keyframe interval is a maximum: a longer gap means there is no grid.
    if np.mean(np.abs(d - grid) <= 1) < 0.5 or d.max() > grid + 1:
        return None
    return grid


def intra_candidates(index: mv.PacketIndex) -> np.ndarray:
    """Intra frames an encoder placed off its keyframe grid: its scene-change decisions."""
    intra = np.flatnonzero(index.intra)[1:]
    if len(intra) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = index.keyframes
    grid = keyframe_grid(index)
    if grid is None:
        return intra.astype(np.int64)
    prev_key = keys[np.maximum(np.searchsorted(keys, intra, side="left") - 1, 0)]
    off = ~index.key[intra] | (intra - prev_key < grid - 1)
    return intra[off].astype(np.int64)


def candidate_windows(index: mv.PacketIndex) -> np.ndarray:
    """(lo, hi) display ranges that may hold a cut, from the packet index alone.

    An off-grid intra frame c gives (c, c): encoders put the I picture on the cut itself (or
    (b, c) when B frames b..c-1 are stored after it and may show the new shot). A P spike s
    gives (p + 1, s) where p is the reference frame (I or P) shown before s: the cut is s or one
    of the B frames between p and s.
    """
    intra_c = intra_candidates(index)
    p_spikes, b_spikes = size_spikes(index)
    refs = np.flatnonzero(index.intra | (index.ptype == mv.P_FRAME) | (index.ptype == mv.UNKNOWN))
    spike_w = np.zeros((0, 2), dtype=np.int64)
    if len(p_spikes):
        prev_ref = refs[np.maximum(np.searchsorted(refs, p_spikes, side="left") - 1, 0)]
        lo = np.maximum(np.minimum(prev_ref + 1, p_spikes), 1)
        spike_w = np.stack([lo, p_spikes], axis=1)
    if len(b_spikes):
        # A large B frame: the cut is in its run of B frames or on the P frame that ends it.
        prev_ref = refs[np.maximum(np.searchsorted(refs, b_spikes, side="left") - 1, 0)]
        nxt = np.searchsorted(refs, b_spikes, side="right")
        next_ref = np.where(nxt < len(refs), refs[np.minimum(nxt, len(refs) - 1)], b_spikes)
        spike_w = np.concatenate([spike_w, np.stack([np.maximum(prev_ref + 1, 1), next_ref], axis=1)])
    # B frames shown just before an I frame but stored after it (open GOP: MPEG-4 Part 2,
    # non-IDR I frames) can belong to the new shot: the cut is then in that run.
    intra_lo = intra_c.copy()
    for j, c in enumerate(intra_c.tolist()):
        lo = c
        while lo - 1 > 0 and index.ptype[lo - 1] == mv.B_FRAME and \
                index.decode_order[lo - 1] > index.decode_order[c]:
            lo -= 1
        intra_lo[j] = lo
    intra_w = np.stack([intra_lo, intra_c], axis=1) if len(intra_c) else np.zeros((0, 2), np.int64)
    windows = np.concatenate([intra_w, spike_w]).astype(np.int64)
    if len(windows) == 0:
        return windows
    windows = np.unique(windows, axis=0)
    return windows[np.argsort(windows[:, 1], kind="stable")]


def max_b_run(index: mv.PacketIndex) -> int:
    """Longest run of consecutive B pictures in display order (0 without B-frames)."""
    b = (index.ptype == mv.B_FRAME).astype(np.int8)
    if not b.any():
        return 0
    edges = np.diff(np.concatenate([[0], b, [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def anchor_schedule(index: mv.PacketIndex, windows: np.ndarray, spacing: float,
                    first: int = 0, last: int | None = None) -> np.ndarray:
    """Intra frames to decode first (within display frames first..last): around every
    candidate window the intra frame before it and the one at or after its end; the first and
    the last intra frame; and, in every ``spacing``-second slot that still has no anchor, its
    first intra frame."""
    intra = np.flatnonzero(index.intra)
    intra = intra[(intra >= first) & (intra <= (len(index) if last is None else last))]
    if len(intra) == 0:
        return intra.astype(np.int64)
    chosen = {int(intra[0]), int(intra[-1])}
    if len(windows):
        before = np.searchsorted(intra, windows[:, 0], side="left") - 1
        chosen.update(intra[before[before >= 0]].tolist())
        after = np.searchsorted(intra, windows[:, 1], side="left")
        chosen.update(intra[after[after < len(intra)]].tolist())
    times = index.times
    slot_of = lambda frames: np.floor((times[frames] - times[0]) / spacing).astype(np.int64)  # noqa: E731
    covered = set(slot_of(np.array(sorted(chosen), dtype=np.int64)).tolist())
    slots = slot_of(intra)
    _, first_of_slot = np.unique(slots, return_index=True)
    chosen.update(int(intra[j]) for j in first_of_slot if int(slots[j]) not in covered)
    return np.array(sorted(chosen), dtype=np.int64)


class Group(NamedTuple):
    """A unit of work: candidate windows lo..hi (display frames)."""

    lo: int
    hi: int
    single: bool  # one frame whose position is known: may be accepted or rejected from anchors
    spikes: int  # size-spike windows merged into it (0 for an intra window)


def window_groups(index: mv.PacketIndex, windows: np.ndarray) -> list[Group]:
    """Candidate windows as units of work.

    An intra window stands alone. Spike windows close together after the same intra frame are
    merged into one span (decoding them one by one would decode the start of the GOP again and
    again).
    """
    if len(windows) == 0:
        return []
    intra = np.flatnonzero(index.intra)
    is_intra = index.intra[windows[:, 0]] & (windows[:, 0] == windows[:, 1])
    bucket = np.searchsorted(intra, windows[:, 0], side="right") - 1
    groups: list[Group] = []
    current: list[int] | None = None  # [lo, hi, count, bucket]
    for (lo, hi), intra_w, bk in zip(windows.tolist(), is_intra.tolist(), bucket.tolist()):
        if intra_w:
            groups.append(Group(lo, hi, True, 0))
            current = None
            continue
        if (current is not None and current[3] == bk and groups and groups[-1].lo == current[0]
                and lo - current[1] <= MERGE_GAP):
            current[1] = max(current[1], hi)
            current[2] += 1
            groups[-1] = Group(current[0], current[1], False, current[2])
        else:
            current = [lo, hi, 1, bk]
            groups.append(Group(lo, hi, lo == hi, 1))
    return groups


def likely_cut(index: mv.PacketIndex, group: Group) -> bool:
    """Is a frame of ``group`` at least LIKELY_CUT times the size of the intra frames around
    it? (A cost hint only: whichever way it goes, the group is settled exactly.)"""
    intra = np.flatnonzero(index.intra)
    if len(intra) == 0:
        return False
    span = np.arange(group.lo, group.hi + 1)
    intra_size = np.interp(span, intra, index.size[intra].astype(np.float64))
    return bool(np.any(index.size[span] >= LIKELY_CUT * intra_size))


def sustained_change(index: mv.PacketIndex, group: Group) -> bool:
    """Do the predicted frames after ``group`` stay SUSTAIN_RATIO times larger than those
    before it?

    Several size spikes close together are a flash (a few frames of another picture, then the
    shot again: the frames after it are predicted as cheaply as before) or a cut and a cut back,
    unless the frames after them stay large: then the picture kept changing more than before
    (a pan speeding up, noise rising), which the frames around the group can rule on.
    """
    pred = np.flatnonzero(index.ptype == mv.P_FRAME)
    pred = pred[~index.intra[pred]]
    before, after = pred[pred < group.lo][-SUSTAIN_FRAMES:], pred[pred > group.hi][:SUSTAIN_FRAMES]
    if len(before) < SUSTAIN_FRAMES or len(after) < SUSTAIN_FRAMES:
        return False
    return bool(np.median(index.size[after]) >= SUSTAIN_RATIO * np.median(index.size[before]))


def sparse_estimate(index: mv.PacketIndex, windows: np.ndarray) -> float:
    """Rough decode cost of the sparse strategy, in predicted-frame units (for choosing)."""
    anchors = anchor_schedule(index, windows, ANCHOR_SPACING)
    cost = INTRA_COST * len(anchors)
    # Groups that cannot be settled from anchors are decoded from their keyframe.
    # Groups that cannot be settled from anchors are decoded from their keyframe; spans in one
    # GOP share one pass (the span decoder continues forward), so each GOP costs up to its last.
    exact = [(g.lo, g.hi) for g in window_groups(index, windows) if not g.single]
    if exact:
        span = np.array(exact, dtype=np.int64)
        keys = index.keyframes
        start = keys[np.maximum(np.searchsorted(keys, span[:, 0], side="right") - 1, 0)]
        for key in np.unique(start):
            cost += float(span[start == key, 1].max() - key + 1)
    return cost


def _segments(index: mv.PacketIndex, seconds: float) -> list[tuple[int, int]]:
    """(first, last) display ranges of about ``seconds`` each, cut at keyframes; neighbours share
    their boundary keyframe (it is the last anchor of one and the first of the next)."""
    keys = index.keyframes
    intra = np.flatnonzero(index.intra)
    times = index.times
    bounds = [int(intra[0])]
    for k in keys.tolist():
        if times[k] - times[bounds[-1]] >= seconds:
            bounds.append(int(k))
    if bounds[-1] != int(intra[-1]):
        bounds.append(int(intra[-1]))
    if len(bounds) == 1:
        return [(bounds[0], bounds[0])]
    return list(zip(bounds[:-1], bounds[1:]))
