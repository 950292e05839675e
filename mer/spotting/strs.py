"""Spot-then-recognise score (STRS) of MEGC 2023: spotting F1 x analysis F1.

The analysis is scored over the spotting hits only (an annotation found at IoU >= 0.5 and
the interval that found it): for each emotion of the analysis set, a hit is a positive of
the truth when its annotation shows that emotion and a positive of the prediction when the
spotted interval is labelled so; per-emotion precision and recall come from those counts.
The analysis F1 is the harmonic mean of the per-emotion precisions' mean and the
per-emotion recalls' mean, as the challenge's reference code computes it
(genbing99/STRS-Metric, `strs_metric.py`); UF1 is the mean of the per-emotion F1s and UAR
the mean of the per-emotion recalls. Hits whose annotation shows an emotion outside the
analysis set are left out of the analysis (they still count for spotting). The analysis
set defaults to every emotion the annotations show.

Where the reference code departs from this definition (each is a test):
- it matches every pair at IoU >= 0.5 in prediction order, so one spotted interval can
  hit several annotations; here matching is one to one (`megc.match_intervals`), as MEGC
  spotting defines it;
- its "UAR" is the mean of the per-emotion precisions;
- an emotion whose hits are all of one kind (all right, or none present) makes
  scikit-learn's 2x2 confusion matrix 1x1, which the code catches as zero counts: a
  perfectly recognised emotion then scores precision and recall 0;
- it needs pandas < 2 (`DataFrame.append`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mer.common.errors import MerError
from mer.spotting.megc import SpotCounts


@dataclass(frozen=True)
class AnalysisScores:
    precision: float  # mean over the analysis emotions
    recall: float
    f1: float  # harmonic mean of `precision` and `recall`
    uf1: float  # mean of the per-emotion F1s
    uar: float  # mean of the per-emotion recalls
    hits: int  # hits the analysis scored (annotation in the analysis set)


def analysis_scores(hits: Sequence[tuple[str, str]], emotions: Sequence[str] | None = None) -> AnalysisScores:
    """`hits`: (annotated emotion, spotted label) of each spotting hit; `emotions`: the
    analysis set (default: every annotated emotion among the hits)."""
    emotions = sorted({truth for truth, _ in hits}) if emotions is None else list(dict.fromkeys(emotions))
    if not emotions:
        raise MerError("the analysis needs at least one emotion (no hits and no analysis set given)")
    scored = [(truth, spotted) for truth, spotted in hits if truth in emotions]
    per_emotion = []
    for emotion in emotions:
        counts = SpotCounts(tp=sum(t == emotion and s == emotion for t, s in scored),
                            fp=sum(t != emotion and s == emotion for t, s in scored),
                            fn=sum(t == emotion and s != emotion for t, s in scored))
        per_emotion.append((counts.precision, counts.recall, counts.f1))
    precision, recall, uf1 = (float(v) for v in np.mean(per_emotion, axis=0))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return AnalysisScores(precision, recall, f1, uf1, recall, len(scored))


def strs(spotting: SpotCounts, analysis: AnalysisScores) -> float:
    """Spotting F1 (over the database's summed counts) times analysis F1."""
    return spotting.f1 * analysis.f1
