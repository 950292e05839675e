"""Accuracy, UF1 and UAR: the one definition every figure in `mer` uses (per epoch, per
run, per fold and pooled over folds), computed by scikit-learn.

A class absent from the truth of a set of clips has no recall, so UAR averages recall over
the classes present in the truth (`balanced_accuracy_score`). F1 is defined for a class
that is present or predicted (2TP / (2TP + FP + FN), so a class predicted but absent
scores 0); a class neither present nor predicted has none, and UF1 averages over the
others. With every class present (pooled MEGC figures) both are the plain macro means."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts, rows the true class, columns the predicted one."""
    return confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """acc, uf1 and uar of predicted class indices against true ones."""
    if len(y_true) == 0:
        return {"acc": float("nan"), "uf1": float("nan"), "uar": float("nan")}
    seen = np.union1d(y_true, y_pred)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true": the rule above, not a problem.
        warnings.simplefilter("ignore", UserWarning)
        uar = balanced_accuracy_score(y_true, y_pred)
    return {"acc": float(accuracy_score(y_true, y_pred)),
            "uf1": float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
            "uar": float(uar)}


def scores_from_confusion(matrix: np.ndarray) -> dict[str, float]:
    """`scores` of the predictions a confusion matrix (rows: truth) counts."""
    matrix = np.asarray(matrix, dtype=int)
    classes = np.arange(len(matrix))
    y_true = np.repeat(classes, matrix.sum(axis=1))
    y_pred = np.concatenate([np.repeat(classes, row) for row in matrix])
    return scores(y_true, y_pred)
