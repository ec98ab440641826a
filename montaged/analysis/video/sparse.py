"""The sparse strategy: anchors, candidate windows settled from them, and exact spans where needed."""

from __future__ import annotations

from collections import Counter

import numpy as np

from montaged.analysis import Progress
from montaged.media import video as mv
from montaged.analysis.video.candidates import (
    ANCHOR_SPACING, _segments, anchor_schedule, candidate_windows, likely_cut,
    sustained_change, window_groups,
)
from montaged.analysis.video.frames import BATCH, Detection, _Frames, _sizes
from montaged.analysis.video.score import (
    FLASH_FRAMES, MIN_SCENE_LEN, THRESHOLD, FlashTracker, flash_filter_merge,
)


# Anchors are up to a GOP away from a cut, so shot drift (a pan) can move their difference by
# this much either way: within the margin, decode and score exactly.
PROXY_MARGIN = 12.0
# Neighbouring anchors whose 16x9 block colours differ less than this are the same shot even if
# their pixels differ a lot (a pan moves every pixel, not the colours of the regions).
COARSE_GATE = 20.0
SEGMENT_SECONDS = 60.0  # sparse mode works through long files in stretches this long


class _Sparse:
    """State of one sparse detection: what is decoded and what is scored."""

    def __init__(self, vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int) -> None:
        self.vf, self.index = vf, index
        self.small, self.sharp = _sizes(width, height)
        self.frames = _Frames()
        self.exact: dict[int, float] = {}
        self.decoded = 0
        self.intra = np.flatnonzero(index.intra)
        self.intra_set = set(int(i) for i in self.intra)
        # HSV planes of frames scored over the threshold and of the frames before them, kept
        # past forget_pixels for the flash rule (settled segment by segment).
        self.flashes = FlashTracker()

    def decode_intra(self, wanted) -> None:
        wanted = sorted({int(i) for i in wanted} - set(self.frames.hsv))
        for c in range(0, len(wanted), BATCH):  # bounded pictures in flight
            got = self.vf.decode_intra(self.index, wanted[c:c + BATCH], size=self.small,
                                       fmt="bgrp", extra={"gray": (self.sharp, "gray")})
            self.decoded += len(got.indices)
            self.frames.errors += got.errors
            self.frames.add(got.indices, got.images, got.extra["gray"])

    def decode_exact(self, first: int, last: int) -> None:
        """Decode frames first-1..last and score every frame of first..last exactly.

        The intra frames the decoder passes on the way (the GOP's keyframe at least) are kept
        as anchors too: they cost nothing more here, and a separate intra decode later would.
        """
        first = max(1, int(first))
        last = min(len(self.index) - 1, int(last))
        if last < first or self.covered(first, last):
            return
        keys = self.index.keyframes
        key = int(keys[np.searchsorted(keys, first - 1, side="right") - 1]) if len(keys) else 0
        # Score FLASH_FRAMES more before the window (the decoder passes them anyway, as far back
        # as its keyframe): a window can start on the way out of a flash whose way in made no
        # size spike, and the flash rule needs both ends.
        first = max(first - FLASH_FRAMES, key + 1, 1)
        on_the_way = [int(i) for i in self.intra[(self.intra >= key) & (self.intra < first - 1)]
                      if int(i) not in self.frames.hsv]
        keep = on_the_way + list(range(first - 1, last + 1))
        got = self.vf.decode_span(self.index, first - 1, last, keep=keep, size=self.small,
                                  fmt="bgrp", extra={"gray": (self.sharp, "gray")},
                                  extra_for=set(on_the_way))
        self.decoded += len(got.indices)
        self.frames.errors += got.errors
        self.frames.add(got.indices, got.images, got.extra.get("gray"))
        have = set(int(i) for i in got.indices)
        pairs = [(i - 1, i) for i in range(first, last + 1) if i in have and i - 1 in have]
        for (_, i), s in zip(pairs, self.frames.scores(pairs)):
            self.exact[i] = float(s)
            if s >= THRESHOLD:  # the flash rule compares the pictures around it
                self.flashes.add(i, self.frames.hsv[i], self.frames.hsv[i - 1])
        # Scored: only the intra frames and the span's ends can still serve as neighbours.
        self.frames.forget_pixels([i for i in have if i not in self.intra_set
                                   and i not in (first - 1, last)])

    def cut_on_keyframe(self, a: int, b: int) -> bool:
        """Settle a change between neighbouring anchors ``a`` and keyframe ``b`` (no candidate
        between them) as a cut on ``b`` itself, decoding only the reference frames.

        The frame shown just before ``b`` is decoded with the references it needs (most
        B-frames skipped: about half the GOP). If it is still the shot of ``a`` (the test step
        2 applies to anchors) and differs from ``b`` by the threshold, the cut is exactly on
        ``b``. Otherwise (or if that frame is a B-frame nothing refers to) the caller decodes
        the whole stretch.
        """
        index = self.index
        p = b - 1
        if p <= a or not index.key[b] or index.ptype[p] != mv.P_FRAME:
            return False
        got = self.vf.decode_span(index, p, p, keep=[p], size=self.small, fmt="bgrp")
        self.decoded += len(got.indices)
        self.frames.errors += got.errors
        if p not in got.indices.tolist():
            return False
        self.frames.add(got.indices, got.images)
        same_shot = (float(self.frames.scores([(a, p)])[0]) < THRESHOLD - PROXY_MARGIN
                     or self.layout_change(a, p) < COARSE_GATE)
        score = float(self.frames.scores([(p, b)])[0])
        if not same_shot or score < THRESHOLD:
            return False
        self.exact[b] = score
        return True

    def covered(self, first: int, last: int) -> bool:
        return all(i in self.exact for i in range(first, last + 1))

    def layout_change(self, a: int, b: int) -> float:
        """Mean difference of the 9x16 block colours of decoded frames a and b."""
        return float(np.abs(self.frames.coarse[a] - self.frames.coarse[b]).mean())

    def anchors(self) -> np.ndarray:
        return np.array(sorted(i for i in self.frames.hsv if i in self.intra_set), dtype=np.int64)


def detect_sparse(vf: mv.VideoFile, index: mv.PacketIndex, width: int, height: int,
                  progress: Progress, windows: np.ndarray | None = None) -> Detection:
    """Decode anchors and the GOPs that need it (see the module docstring).

    The file is worked through in segments of ``SEGMENT_SECONDS`` (cut at keyframes): the
    pictures a segment decoded are dropped when it is done, so memory does not grow with the
    length of the file.
    """
    n = len(index)
    st = _Sparse(vf, index, width, height)
    if windows is None:
        windows = candidate_windows(index)
    groups = window_groups(index, windows)
    # A window starting less than MIN_SCENE_LEN frames after an intra candidate (an encoder's
    # first P frames after a scene-cut I frame are often large) can only matter if that
    # candidate is not a cut: the flash filter merges a lone above-threshold frame that close
    # after a cut into it. Such windows wait until the candidate is settled.
    intra_hits = np.array([g.hi for g in groups if index.intra[g.hi]], dtype=np.int64)
    shadowed = [bool(np.any((intra_hits < lo) & (lo < intra_hits + MIN_SCENE_LEN)))
                for lo, *_ in groups]
    accepted: set[int] = set()
    unsettled = set(range(len(groups)))
    segments = _segments(index, SEGMENT_SECONDS)
    for k, (seg_first, seg_last) in enumerate(segments):
        mine = [g for g, (_, hi, *_) in enumerate(groups)
                if (seg_first < hi <= seg_last) or (k == 0 and hi <= seg_first)
                or (k == len(segments) - 1 and hi > seg_last)]
        _sparse_segment(st, index, groups, mine, shadowed, accepted, unsettled, windows,
                        seg_first, seg_last)
        # Done with this stretch: keep only its last anchor's pixels, for the next segment.
        st.frames.forget_pixels([i for i in st.frames.hsv if i < seg_last])
        st.flashes.settle(seg_last)
        progress(0.1 + 0.75 * (k + 1) / len(segments))
    above = accepted | {i for i, v in st.exact.items() if v >= THRESHOLD}
    cuts, flashes = st.flashes.split(flash_filter_merge(above, n))
    return Detection(cuts, st.frames, st.exact, "sparse", st.decoded, flashes)


def _sparse_segment(st: "_Sparse", index: mv.PacketIndex, groups, mine: list[int],
                    shadowed: list[bool], accepted: set[int], unsettled: set[int],
                    windows: np.ndarray, seg_first: int, seg_last: int) -> None:
    # Windows that will be decoded frame by frame anyway go first: their spans decode the
    # keyframes before them, which then need no decoding of their own as anchors. Those are
    # several spikes close together after which the frames shrink back (a flash in and out, or
    # a cut and a cut back), and spikes almost as large as a keyframe (LIKELY_CUT of it: nearly
    # always a cut; checking them against anchors first would decode their keyframe twice).
    # The latter not when another group shares their GOP: the spans of one GOP are decoded in
    # order by one continuing decoder, and one taken out of turn makes the others start over.
    keys = index.keyframes
    gop_of = {g: int(np.searchsorted(keys, groups[g].lo, side="right")) for g in mine}
    shared = {k for k, count in Counter(gop_of.values()).items() if count > 1}
    for g in mine:
        if shadowed[g] or groups[g].single:
            continue
        if (groups[g].spikes > 1 and not sustained_change(index, groups[g])) or (
                gop_of[g] not in shared and likely_cut(index, groups[g])):
            st.decode_exact(groups[g].lo, groups[g].hi)
    seg_windows = np.array([(groups[g].lo, groups[g].hi) for g in mine], dtype=np.int64).reshape(-1, 2)
    st.decode_intra(anchor_schedule(index, seg_windows, ANCHOR_SPACING, seg_first, seg_last))

    # 1. Candidate windows, in order: settled from the decoded frames around them, or decoded
    #    and scored. A proxy is only trusted when nothing else unsettled (and no accepted cut)
    #    lies between the two frames it compares; frames decoded for earlier windows count as
    #    neighbours too. Several spikes in one GOP are decoded as one span.
    for g in mine:
        lo, hi, single, _spikes = groups[g]
        unsettled.discard(g)
        if shadowed[g]:
            cut_before = [c for c in accepted | {i for i, v in st.exact.items() if v >= THRESHOLD}
                          if c < lo < c + MIN_SCENE_LEN]
            # ...and nothing after it close enough to chain with it into a longer run.
            follower = any(groups[o].lo < hi + MIN_SCENE_LEN for o in unsettled)
            if cut_before and not follower:
                continue
        have = np.array(sorted(st.frames.hsv), dtype=np.int64)
        pos_a = int(np.searchsorted(have, lo, side="left")) - 1
        a = int(have[pos_a]) if pos_a >= 0 else None
        # The frame after: the window's own intra frame, or the first intra frame after it.
        after = have[(have >= hi) & np.isin(have, st.intra)]
        b = int(after[0]) if len(after) else None
        clear = a is not None and b is not None and not any(
            groups[o].hi > a and groups[o].lo <= b for o in unsettled) and not any(
            a < c <= b for c in accepted)
        if not clear:
            st.decode_exact(lo, hi)
            continue
        proxy = float(st.frames.scores([(a, b)])[0])
        if not single:
            # One size spike whose exact frame is unknown (B frames before it), or several
            # that leave the frame sizes up (see sustained_change): the frames around them can
            # only say "no cut". They do when they are not clearly different pictures and the
            # layout of colours stayed (motion or noise made the spikes: the same test as for
            # the anchors in step 2). Otherwise decode and score.
            if (groups[g].spikes > 1 and not sustained_change(index, groups[g])) or \
                    proxy >= THRESHOLD + PROXY_MARGIN or st.layout_change(a, b) >= COARSE_GATE:
                st.decode_exact(lo, hi)
            continue
        if proxy >= THRESHOLD + PROXY_MARGIN:
            if b == hi:
                accepted.add(hi)
            else:
                # The anchors differ, but the change may lie anywhere in (a, b], a cut on the
                # keyframe b included: only the window's own picture can say it is at hi.
                st.decode_exact(lo, hi)
        elif proxy >= THRESHOLD:
            st.decode_exact(lo, hi)
        elif proxy >= THRESHOLD - PROXY_MARGIN and st.layout_change(a, b) >= COARSE_GATE:
            # Below the threshold but close, and the picture's layout of colours moved: too
            # close to call from frames this far apart.
            st.decode_exact(lo, hi)

    # 2. Changes between neighbouring anchors that nothing explains yet: a cut on a regular
    #    keyframe (or one that left no spike). Bisect with the intra frames in between; between
    #    two neighbouring intra frames, score every frame exactly.
    pair_score: dict[tuple[int, int], tuple[float, float]] = {}
    for _round in range(64):
        anc = st.anchors()
        anc = anc[(anc >= seg_first) & (anc <= seg_last)]
        pairs = [(int(a), int(b)) for a, b in zip(anc[:-1], anc[1:])]
        new = [p for p in pairs if p not in pair_score]
        for p, sc in zip(new, st.frames.scores(new).tolist()):
            pair_score[p] = (sc, st.layout_change(*p))
        todo_intra: list[int] = []
        todo_exact: list[tuple[int, int]] = []
        for a, b in pairs:
            score, layout = pair_score[(a, b)]
            if score < THRESHOLD - PROXY_MARGIN or layout < COARSE_GATE:
                continue
            if st.covered(a + 1, b):
                continue
            known = [c for c in accepted | {i for i, sc in st.exact.items() if sc >= THRESHOLD}
                     if a < c <= b]
            if known:
                # A cut between the anchors explains their difference only if the picture after
                # it is still the shot of b: another cut may lie after it (on b itself, say).
                after = [i for i in st.frames.hsv if max(known) <= i < b]
                if not after:
                    continue  # accepted on b's own picture, or nothing to compare: as before
                e = max(after)
                if (float(st.frames.scores([(e, b)])[0]) < THRESHOLD - PROXY_MARGIN
                        or st.layout_change(e, b) < COARSE_GATE):
                    continue
                a = e
            between = st.intra[(st.intra > a) & (st.intra < b)]
            if len(between):
                todo_intra.append(int(between[len(between) // 2]))
            else:
                todo_exact.append((a + 1, b))
        if not todo_intra and not todo_exact:
            break
        st.decode_intra(todo_intra)
        for first, last in todo_exact:
            if not st.cut_on_keyframe(first - 1, last):
                st.decode_exact(first, last)
