"""Micro-expression spotting metrics of the MEGC challenges (2019-2023).

A spotted interval is a true positive (TP) when its intersection over union (IoU) with a
ground-truth interval is at least 0.5; every other spotted interval is a false positive
(FP) and every ground-truth interval left unhit a false negative (FN). See "MEGC 2019 -
The Second Facial Micro-Expressions Grand Challenge" (See et al., FG 2019) and the MEGC
2020-2022 spotting tasks, which keep the same definition.

Intervals are inclusive frame ranges (onset, offset) with offset >= onset, so (a, b) holds
b - a + 1 frames: (0, 9) and (10, 19) share no frame (IoU 0), (0, 9) and (9, 18) share one
(IoU 1/19). Matching is one to one: a ground-truth interval is hit at most once and a
spotted interval counts at most once, pairs taken greedily by descending IoU.

Precision, recall and F1 are computed over the whole database: TP, FP and FN are summed
over the videos (`SpotCounts.__add__`) and the ratios taken once, never averaged per video.
Micro- and macro-expressions are scored apart (`typed_spotting`: each type's spotted
intervals against that type's annotations) and the overall score from the summed counts.
`random_baseline` gives, per type and overall, the scores of intervals of the true lengths
placed at random, the floor a spotting method has to beat."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mer.common.errors import MerError
from mer.spotting.expression_types import TYPES

Interval = tuple[int, int]


def _checked(interval: Interval) -> Interval:
    """(onset, offset) as Python ints; MerError when it is not an interval."""
    try:
        onset, offset = interval
        onset, offset = operator.index(onset), operator.index(offset)
    except (TypeError, ValueError):
        raise MerError(
            f"interval {interval!r} is not a pair of integer frame numbers (onset, offset)"
        ) from None
    if offset < onset:
        raise MerError(
            f"interval {interval!r} ends before it starts (offset {offset} < onset {onset})"
        )
    return onset, offset


def _check_threshold(threshold: float) -> None:
    # 0 would pair intervals sharing no frame.
    if not 0.0 < threshold <= 1.0:
        raise MerError(f"IoU threshold {threshold} is not in (0, 1]")


def iou(a: Interval, b: Interval) -> float:
    """Frames in both intervals over frames in either (inclusive ends)."""
    (a0, a1), (b0, b1) = _checked(a), _checked(b)
    inter = max(0, min(a1, b1) - max(a0, b0) + 1)
    union = (a1 - a0 + 1) + (b1 - b0 + 1) - inter
    return inter / union


@dataclass(frozen=True)
class Match:
    """A hit: `predicted` and `truth` index the two lists given to `match_intervals`."""

    predicted: int
    truth: int
    iou: float


def match_intervals(
    predicted: Sequence[Interval], truth: Sequence[Interval], threshold: float = 0.5
) -> list[Match]:
    """One-to-one hits: pairs with IoU >= threshold, taken by descending IoU (ties: lower
    predicted index, then lower truth index), each interval of either list used once."""
    _check_threshold(threshold)
    predicted = [_checked(p) for p in predicted]
    truth = [_checked(t) for t in truth]
    pairs = [
        (value, p, t)
        for p, pred in enumerate(predicted)
        for t, true in enumerate(truth)
        if (value := iou(pred, true)) >= threshold
    ]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    used_predicted: set[int] = set()
    used_truth: set[int] = set()
    matches = []
    for value, p, t in pairs:
        if p in used_predicted or t in used_truth:
            continue
        used_predicted.add(p)
        used_truth.add(t)
        matches.append(Match(predicted=p, truth=t, iou=value))
    return matches


@dataclass(frozen=True)
class SpotCounts:
    """TP, FP and FN of one video or, summed with `+`, of a whole database."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        if min(self.tp, self.fp, self.fn) < 0:
            raise MerError(f"spotting counts cannot be negative: {self}")

    @classmethod
    def from_matches(cls, matches: Sequence[Match], n_predicted: int, n_truth: int) -> SpotCounts:
        tp = len(matches)
        if tp > min(n_predicted, n_truth):
            raise MerError(
                f"{tp} matches but only {n_predicted} predicted and {n_truth} true intervals"
            )
        return cls(tp=tp, fp=n_predicted - tp, fn=n_truth - tp)

    def __add__(self, other: SpotCounts) -> SpotCounts:
        if not isinstance(other, SpotCounts):
            return NotImplemented
        return SpotCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    # Nothing predicted (or nothing to find) scores 0, not a division error.
    @property
    def precision(self) -> float:
        n = self.tp + self.fp
        return self.tp / n if n else 0.0

    @property
    def recall(self) -> float:
        n = self.tp + self.fn
        return self.tp / n if n else 0.0

    @property
    def f1(self) -> float:
        n = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / n if n else 0.0


def spot_counts(
    predicted: Sequence[Interval], truth: Sequence[Interval], threshold: float = 0.5
) -> SpotCounts:
    """TP, FP and FN of the predicted intervals of one video against its ground truth."""
    matches = match_intervals(predicted, truth, threshold)
    return SpotCounts.from_matches(matches, len(predicted), len(truth))


TypedInterval = tuple[Interval, str]  # an interval and its type (MICRO or MACRO)


def overall(counts: Mapping[str, SpotCounts]) -> SpotCounts:
    """The overall score's counts: summed over the types, never an average of their F1s."""
    return sum(counts.values(), SpotCounts())


@dataclass(frozen=True)
class TypedSpotting:
    """MEGC's micro and macro scores of one video. `matches[kind]` index the full lists
    given to `typed_spotting`."""

    counts: dict[str, SpotCounts]
    matches: dict[str, list[Match]]

    @property
    def overall(self) -> SpotCounts:
        return overall(self.counts)


def _check_types(intervals: Sequence[TypedInterval]) -> None:
    for interval, kind in intervals:
        if kind not in TYPES:
            raise MerError(f"interval {interval!r} has type {kind!r}; MEGC scores {' and '.join(TYPES)} only")


def typed_spotting(
    predicted: Sequence[TypedInterval], truth: Sequence[TypedInterval], threshold: float = 0.5
) -> TypedSpotting:
    """Each type's spotted intervals (typed by their length, `ExpressionTypes`) matched one
    to one against that type's annotations only."""
    _check_types(predicted)
    _check_types(truth)
    counts, matches = {}, {}
    for kind in TYPES:
        p_index = [k for k, (_, t) in enumerate(predicted) if t == kind]
        t_index = [k for k, (_, t) in enumerate(truth) if t == kind]
        found = match_intervals([predicted[k][0] for k in p_index], [truth[k][0] for k in t_index], threshold)
        matches[kind] = [Match(p_index[m.predicted], t_index[m.truth], m.iou) for m in found]
        counts[kind] = SpotCounts.from_matches(found, len(p_index), len(t_index))
    return TypedSpotting(counts, matches)


def _check_frames(n_frames: int) -> int:
    n_frames = operator.index(n_frames)
    if n_frames < 1:
        raise MerError(f"a video needs at least one frame, got n_frames={n_frames}")
    return n_frames


def random_intervals(
    lengths: Sequence[int], n_frames: int, rng: np.random.Generator
) -> list[Interval]:
    """One interval per length, each placed uniformly at random in frames 0..n_frames-1
    (a length longer than the video is clipped to the video)."""
    n_frames = _check_frames(n_frames)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and lengths.min() < 1:
        raise MerError(f"interval lengths must be at least 1 frame, got {lengths.min()}")
    lengths = np.minimum(lengths, n_frames)
    # Every onset that keeps the whole interval inside the video is equally likely.
    onsets = rng.integers(0, n_frames - lengths + 1)
    return [(int(o), int(o + n - 1)) for o, n in zip(onsets, lengths)]


@dataclass(frozen=True)
class BaselineScores:
    """Mean precision, recall and F1 of random placements over `draws` draws."""

    precision: float
    recall: float
    f1: float
    draws: int


def random_baseline(
    videos: Sequence[tuple[Sequence[TypedInterval], int]],
    seed: int = 0,
    draws: int = 200,
    threshold: float = 0.5,
) -> dict[str, BaselineScores]:
    """Chance scores, per type and overall: each video is (typed truth intervals, n_frames);
    every draw places intervals of each type's true lengths at random in each video, scores
    them against that type's annotations, and pools the counts over the database (overall:
    summed over the types); the scores are averaged over the draws."""
    _check_threshold(threshold)
    if draws < 1:
        raise MerError(f"random baseline needs at least one draw, got draws={draws}")
    checked = []
    for truth, n_frames in videos:
        n_frames = _check_frames(n_frames)
        _check_types(truth)
        by_type = {}
        for kind in TYPES:
            intervals = [_checked(interval) for interval, k in truth if k == kind]
            for onset, offset in intervals:
                # A true interval outside the video means n_frames is wrong, not a miss.
                if onset < 0 or offset >= n_frames:
                    raise MerError(f"true interval {(onset, offset)} lies outside frames 0..{n_frames - 1}")
            if intervals:
                by_type[kind] = (intervals, [offset - onset + 1 for onset, offset in intervals])
        checked.append((by_type, n_frames))
    rng = np.random.default_rng(seed)
    names = (*TYPES, "overall")
    scores = {name: np.empty((draws, 3)) for name in names}
    for d in range(draws):
        totals = dict.fromkeys(TYPES, SpotCounts())
        for by_type, n_frames in checked:
            for kind, (intervals, lengths) in by_type.items():
                totals[kind] = totals[kind] + spot_counts(random_intervals(lengths, n_frames, rng), intervals, threshold)
        for name, total in (*totals.items(), ("overall", overall(totals))):
            scores[name][d] = total.precision, total.recall, total.f1
    return {name: BaselineScores(*(float(v) for v in values.mean(axis=0)), draws=draws)
            for name, values in scores.items()}
