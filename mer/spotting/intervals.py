"""The spotting rule: from window scores to micro-expression intervals, each with a class.

The recognition classes (negative, positive, surprise) have no neutral one, so such a
model cannot say "nothing here". The score is then the face's own motion: each window's
mean absolute change from its first frame, on the preprocessed (aligned, eye-masked)
regions the model sees. A spotter (a checkpoint whose classes start with `none`, trained
by `experiment=spotter`) says it: its score is 1 - P(none), cut at `model_threshold`
instead of step 2's median and spread (`method`: auto picks the spotter's score when the
classes have `none`; rule and model force one). Then:

1. smooth the scores with a centred moving average of `smooth` windows;
2. a window is active when its score exceeds the recording's median by `threshold`
   robust standard deviations (1.4826 x the median absolute deviation, floored at
   `min_spread` grey levels so a perfectly still recording spots nothing);
3. consecutive active windows form an interval from the first one's centre to the last
   one's, widened by half a stride each side (the scores are a stride apart);
4. intervals closer than `merge_gap_s` seconds (the frames between them at the recording's
   rate) merge; shorter than `min_length_s` or longer than `max_length_s` (its frames over
   the rate), they are rejected. Limits are in seconds, never frame counts, so one setting
   means the same at 30 and 200 fps; without the rate no interval is cut;
   Head movements are told apart by the raw face position, not the aligned regions (which
   move in a turn more than in any expression, each window keeping its first frame's
   geometry): a window is *head-moving* where the outer eye corners of the windows
   `head_span_s` / 2 before and after it lie more than `max_head_shift` inter-ocular
   distances apart (an expression hardly moves them). Head-moving windows are left out of
   the median and spread of step 2 (with the windows `head_span_s` / 2 around them), so a
   long turn does not raise the threshold over the
   recording's expressions, and an interval holding one is rejected as a head movement:
   the motion that leads into and out of a turn is the turn;
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
from typing import NamedTuple, Sequence

import numpy as np

from mer.data.spot_windows import NONE
from mer.common.errors import MerError
from mer.spotting.expression_types import ExpressionTypes
from mer.preprocess.regions import head_shift
from mer.spotting.windows import Window


METHODS = ("auto", "rule", "model")
SLACK = 1e-9  # seconds: 5 frames at 100 fps are 0.05 s, not 0.05000000000000001


@dataclass(frozen=True)
class SpottingSettings:
    smooth: int = 1
    threshold: float = 6.0
    min_spread: float = 0.05
    merge_gap_s: float = 0.05
    min_length_s: float = 0.05
    max_length_s: float = 4.0
    micro_max_s: float = 0.5
    max_head_shift: float = 0.08
    head_span_s: float = 0.2
    method: str = "auto"
    model_threshold: float = 0.5

    def __post_init__(self):
        if self.method not in METHODS:
            raise MerError(f"spotting.method={self.method!r} is unknown; choose one of {list(METHODS)}")
        if not 0 < self.model_threshold < 1:
            raise MerError(f"spotting.model_threshold must be in (0, 1) (got {self.model_threshold})")
        if self.smooth < 1 or self.merge_gap_s < 0 or not 0 < self.min_length_s <= self.max_length_s:
            raise MerError("spotting needs smooth >= 1, merge_gap_s >= 0 and 0 < min_length_s <= max_length_s")
        if not (self.max_head_shift > 0 and self.head_span_s > 0):
            raise MerError("spotting.max_head_shift (inter-ocular distances) and spotting.head_span_s (seconds) must "
                           f"be > 0 (got {self.max_head_shift}, {self.head_span_s})")
        self.types()

    def types(self) -> ExpressionTypes:
        return ExpressionTypes(self.micro_max_s)

    def uses_model(self, classes: Sequence[str]) -> bool:
        """Whether the scores are the model's (1 - P(none)) rather than the motion rule's."""
        if self.method == "model" and NONE not in classes:
            raise MerError(f"spotting.method=model needs a spotter, a checkpoint with a {NONE!r} class (this one has "
                           f"{list(classes)}); train one with experiment=spotter, or use spotting.method=rule")
        return self.method == "model" or (self.method == "auto" and NONE in classes)


@dataclass(frozen=True)
class SpottedInterval:
    onset: int
    offset: int  # inclusive
    label: str
    probabilities: tuple[float, ...]
    peak: float  # highest smoothed score inside
    kind: str  # MICRO or MACRO by its length in seconds


@dataclass(frozen=True)
class RejectedInterval:
    onset: int
    offset: int
    reason: str  # "too short", "too long" or "head movement", with the figure


class Spotted(NamedTuple):
    intervals: list[SpottedInterval]
    scores: np.ndarray  # smoothed, per window
    threshold: float
    rejected: list[RejectedInterval]
    head: np.ndarray  # per window: the eye corners' shift over head_span_s, inter-ocular distances (NaN: unknown)


def window_scores(windows: Sequence[Window], classes: Sequence[str], model: bool) -> np.ndarray:
    """Per window: the motion rule's score, or (`model`) a spotter's 1 - P(none); NaN where no face was found."""
    if model:
        none = list(classes).index(NONE)
        return np.array([1 - w.probabilities[none] if w.face and w.probabilities is not None else np.nan
                         for w in windows], dtype=np.float64)
    return np.array([w.motion if w.face else np.nan for w in windows], dtype=np.float64)


def smoothed_scores(raw: np.ndarray, smooth: int) -> np.ndarray:
    """Window scores averaged over `smooth` neighbours; NaN where no face was found, and the
    average skips NaNs so a lost face does not drag its neighbours down."""
    if len(raw) == 0 or smooth == 1:
        return raw
    valid = ~np.isnan(raw)
    kernel = np.ones(smooth)
    sums = np.convolve(np.where(valid, raw, 0.0), kernel, mode="same")
    counts = np.convolve(valid.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, sums / counts, np.nan)


def head_reach(settings: SpottingSettings, stride: int, fps: float) -> int:
    """Windows from one to the next `head_span_s` / 2 away."""
    return max(1, round(settings.head_span_s * fps / stride / 2))


def head_shifts(windows: Sequence[Window], settings: SpottingSettings, stride: int, fps: float) -> np.ndarray:
    """Per window, `head_shift` between the windows `head_span_s` / 2 before and after it
    (clamped at the recording's ends); NaN where either has no face."""
    reach = head_reach(settings, stride, fps)
    shifts = np.full(len(windows), np.nan)
    for i in range(len(windows)):
        before, after = windows[max(0, i - reach)].eyes, windows[min(len(windows) - 1, i + reach)].eyes
        if before is not None and after is not None:
            shifts[i] = head_shift(before, after)
    return shifts


def threshold_of(scores: np.ndarray, settings: SpottingSettings) -> float:
    valid = scores[~np.isnan(scores)]
    if len(valid) == 0:
        return float("nan")
    median = float(np.median(valid))
    spread = max(1.4826 * float(np.median(np.abs(valid - median))), settings.min_spread)
    return median + settings.threshold * spread


def spot(windows: Sequence[Window], classes: Sequence[str], settings: SpottingSettings, stride: int,
         n_frames: int, fps: float | None = None) -> Spotted:
    """Intervals, each typed micro or macro, the smoothed scores, the threshold they were
    cut at, and the candidates rejected. Without `fps` the scores and threshold come back
    but no interval: its limits are in seconds."""
    model = settings.uses_model(classes)
    scores = smoothed_scores(window_scores(windows, classes, model), settings.smooth)
    # Head movements are found over head_span_s seconds: without the rate, none is.
    head = head_shifts(windows, settings, stride, fps) if fps else np.full(len(windows), np.nan)
    moving = np.nan_to_num(head, nan=0.0) > settings.max_head_shift
    # The motion leading into and out of a movement (head_span_s around it) sets no threshold either.
    reach = head_reach(settings, stride, fps) if fps else 0
    near = np.array([moving[max(0, i - reach):i + reach + 1].any() for i in range(len(moving))], dtype=bool)
    limit = settings.model_threshold if model else threshold_of(np.where(near, np.nan, scores), settings)
    if not fps:
        return Spotted([], scores, limit, [], head)
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
    intervals, rejected = [], []
    for onset, offset, members in merged:
        seconds = (offset - onset + 1) / fps
        if seconds < settings.min_length_s - SLACK:
            rejected.append(RejectedInterval(onset, offset, f"too short ({seconds:.3f} s < min_length_s)"))
            continue
        if seconds > settings.max_length_s + SLACK:
            rejected.append(RejectedInterval(onset, offset, f"too long ({seconds:.3f} s > max_length_s)"))
            continue
        if moving[members].any():
            rejected.append(RejectedInterval(onset, offset, f"head movement (the eye corners moved up to "
                                                            f"{np.nanmax(head[members]):.2f} inter-ocular distances "
                                                            "in head_span_s > max_head_shift)"))
            continue
        middle = (onset + offset) / 2
        chosen = windows[min(members, key=lambda i: abs(windows[i].centre - middle))].probabilities
        # A spotter's interval is labelled with its likeliest emotion, never `none`.
        label = int(np.argmax(np.where(np.array(classes) == NONE, -np.inf, chosen)))
        intervals.append(SpottedInterval(onset, offset, classes[label], tuple(float(p) for p in chosen),
                                         float(np.max(scores[members])), settings.types().of(onset, offset, fps)))
    return Spotted(intervals, scores, limit, rejected, head)
