"""Accuracy, UF1 and UAR from predictions, the way MEGC pools them over folds."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def scores(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict[str, float]:
    """acc: share correct. UF1: unweighted mean over classes of 2TP / (2TP + FP + FN).
    UAR: unweighted mean over classes of TP / N_class. A class absent from both truth and
    predictions has no defined F1 or recall and is left out of the means (MEGC practice);
    a class that is present but never predicted counts as 0."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    f1_den = support + predicted  # = 2TP + FP + FN
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = matrix.sum()
    return {
        "acc": float(tp.sum() / total) if total else float("nan"),
        "uf1": float(f1[f1_den > 0].mean()) if (f1_den > 0).any() else float("nan"),
        "uar": float(recall[support > 0].mean()) if (support > 0).any() else float("nan"),
    }
