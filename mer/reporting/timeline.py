"""The timeline of one recording: a probability curve per class over time, the spotting
score against its threshold, spotted intervals shaded, true intervals and stretches
without a face marked."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402



def timeline_figure(prediction, truth: Sequence = ()):
    """`prediction`: a `mer.spotting.predict.Prediction`; `truth`: its `TruthInterval`s
    (duck-typed: reporting sits below the spotting layer that defines them)."""
    seconds = prediction.seconds
    unit = "s" if prediction.fps else "frame"
    centres = np.array([seconds(w.centre) for w in prediction.windows])
    figure, (probabilities, score) = plt.subplots(2, 1, figsize=(11, 5.2), sharex=True, height_ratios=[3, 1.6])
    for k, name in enumerate(prediction.classes):
        curve = np.array([w.probabilities[k] if w.probabilities is not None else np.nan for w in prediction.windows])
        probabilities.plot(centres, curve, label=name, linewidth=1.2)
    score.plot(centres, prediction.scores, color="black", linewidth=1, label="motion score")
    if np.isfinite(prediction.threshold):
        score.axhline(prediction.threshold, color="crimson", linestyle="--", linewidth=1, label="threshold")
    for axes in (probabilities, score):
        for k, interval in enumerate(prediction.intervals):
            axes.axvspan(seconds(interval.onset), seconds(interval.offset + 1), color="orange", alpha=0.3,
                         label="spotted" if k == 0 and axes is probabilities else None)
        for k, (onset, offset) in enumerate(prediction.no_face):
            axes.axvspan(seconds(onset), seconds(offset + 1), color="grey", alpha=0.3,
                         label="no face" if k == 0 and axes is probabilities else None)
        for k, interval in enumerate(truth):
            axes.axvspan(seconds(interval.onset), seconds(interval.offset + 1), fill=False, hatch="//",
                         edgecolor="green", linewidth=0, label="annotated" if k == 0 and axes is probabilities else None)
    for interval in prediction.intervals:
        probabilities.annotate(interval.label, (seconds((interval.onset + interval.offset) / 2), 1.02),
                               ha="center", fontsize=8, annotation_clip=False)
    for interval in truth:
        probabilities.annotate(interval.label, (seconds((interval.onset + interval.offset) / 2), -0.12),
                               ha="center", fontsize=8, color="green", annotation_clip=False)
    probabilities.set_ylim(0, 1)
    probabilities.set_ylabel("class probability")
    probabilities.legend(loc="upper right", fontsize=8, ncol=3)
    score.set_ylabel("spotting score")
    score.set_xlabel(f"time ({unit}, window centres)")
    score.legend(loc="upper right", fontsize=8)
    probabilities.set_title(f"{Path(prediction.source).name}: {len(prediction.windows)} windows of {prediction.depth} frames, "
                            f"stride {prediction.stride}", fontsize=10, pad=14)
    figure.tight_layout()
    return figure
