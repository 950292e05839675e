"""The spotting rule: from window scores to micro-expression intervals, each with a class.

The classes (negative, positive, surprise) have no neutral one, so the model cannot say
"nothing here". The score is the face's own motion instead: each window's mean absolute
change from its first frame, on the preprocessed (aligned, eye-masked) regions the model
sees. Then:

1. smooth the scores with a centred moving average of `smooth` windows;
2. a window is active when its score exceeds the recording's median by `threshold`
   robust standard deviations (1.4826 x the median absolute deviation, floored at
   `min_spread` grey levels so a perfectly still recording spots nothing);
3. consecutive active windows form an interval from the first one's centre to the last
   one's, widened by half a stride each side (the scores are a stride apart);
4. intervals closer than `merge_gap_s` seconds (the frames between them at the recording's
   rate) merge; shorter than `min_length_s` or longer than `max_length_s` (its frames over
   the rate; longer: a head turn, not an expression), they are dropped. Limits are in
   seconds, never frame counts, so one setting means the same at 30 and 200 fps; without
   the rate no interval is cut;
5. an interval's class is that of its window centred nearest the interval's middle: the
   apex guess, and the window a training clip gives the network (`depth` frames centred
   on the apex);
6. where the recording's frame rate is known, an interval lasting at most `micro_max_s`
   seconds from onset to offset is typed micro, a longer one macro (`ExpressionTypes`).

Median and spread come from each recording alone: nothing is fitted on annotations. The
defaults were chosen on a generated tree of another seed than the built-in one spot-eval
reports on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mer.errors import MerError
from mer.spotting.expression_types import ExpressionTypes
from mer.spotting.windows import Window


SLACK = 1e-9  # seconds: 5 frames at 100 fps are 0.05 s, not 0.05000000000000001


@dataclass(frozen=True)
class SpottingSettings:
    smooth: int = 1
    threshold: float = 6.0
    min_spread: float = 0.05
    merge_gap_s: float = 0.05
    min_length_s: float = 0.05
    max_length_s: float = 1.0
    micro_max_s: float = 0.5

    def __post_init__(self):
        if self.smooth < 1 or self.merge_gap_s < 0 or not 0 < self.min_length_s <= self.max_length_s:
            raise MerError("spotting needs smooth >= 1, merge_gap_s >= 0 and 0 < min_length_s <= max_length_s")
        self.types()

    def types(self) -> ExpressionTypes:
        return ExpressionTypes(self.micro_max_s)


@dataclass(frozen=True)
class SpottedInterval:
    onset: int
    offset: int  # inclusive
    label: str
    probabilities: tuple[float, ...]
    peak: float  # highest smoothed score inside
    kind: str  # MICRO or MACRO by its length in seconds


def smoothed_scores(windows: Sequence[Window], smooth: int) -> np.ndarray:
    """Window scores averaged over `smooth` neighbours; NaN where no face was found, and the
    average skips NaNs so a lost face does not drag its neighbours down."""
    raw = np.array([w.motion if w.face else np.nan for w in windows], dtype=np.float64)
    if len(raw) == 0 or smooth == 1:
        return raw
    valid = ~np.isnan(raw)
    kernel = np.ones(smooth)
    sums = np.convolve(np.where(valid, raw, 0.0), kernel, mode="same")
    counts = np.convolve(valid.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, sums / counts, np.nan)


def threshold_of(scores: np.ndarray, settings: SpottingSettings) -> float:
    valid = scores[~np.isnan(scores)]
    if len(valid) == 0:
        return float("nan")
    median = float(np.median(valid))
    spread = max(1.4826 * float(np.median(np.abs(valid - median))), settings.min_spread)
    return median + settings.threshold * spread


def spot(windows: Sequence[Window], classes: Sequence[str], settings: SpottingSettings, stride: int,
         n_frames: int, fps: float | None = None) -> tuple[list[SpottedInterval], np.ndarray, float]:
    """Intervals, each typed micro or macro, the smoothed scores and the threshold they were
    cut at. Without `fps` the scores and threshold come back but no interval: its limits
    are in seconds."""
    scores = smoothed_scores(windows, settings.smooth)
    limit = threshold_of(scores, settings)
    if not fps:
        return [], scores, limit
    active = np.nan_to_num(scores, nan=-np.inf) > limit
    runs: list[list[int]] = []
    for i in np.flatnonzero(active):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    half = stride // 2
    spans = [[max(0, int(windows[r[0]].centre) - half), min(n_frames - 1, int(np.ceil(windows[r[-1]].centre)) + half), r]
             for r in runs]
    merged: list[list] = []
    for span in spans:
        if merged and (span[0] - merged[-1][1] - 1) / fps <= settings.merge_gap_s + SLACK:
            merged[-1][1], merged[-1][2] = span[1], merged[-1][2] + span[2]
        else:
            merged.append(span)
    intervals = []
    for onset, offset, members in merged:
        if not settings.min_length_s - SLACK <= (offset - onset + 1) / fps <= settings.max_length_s + SLACK:
            continue
        middle = (onset + offset) / 2
        chosen = windows[min(members, key=lambda i: abs(windows[i].centre - middle))].probabilities
        intervals.append(SpottedInterval(onset, offset, classes[int(np.argmax(chosen))], tuple(float(p) for p in chosen),
                                         float(np.max(scores[members])), settings.types().of(onset, offset, fps)))
    return intervals, scores, limit
