"""Confusion-matrix figure: counts with row-normalised shading."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str):
    matrix = np.asarray(matrix, dtype=int)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    figure, axes = plt.subplots(figsize=(1.6 + 1.1 * len(class_names), 1.2 + 1.0 * len(class_names)))
    axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center",
                  color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    axes.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    # Wrapped to the figure's width (about 12 characters an inch at 9 pt): a title wider
    # than a three-class matrix would be cut at both edges.
    width = int(figure.get_figwidth() * 12)
    axes.set_title("\n".join(textwrap.fill(line, width) for line in title.splitlines()), fontsize=9)
    figure.tight_layout()
    return figure
