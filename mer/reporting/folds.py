"""Per-fold and pooled metrics from test predictions (MEGC: pool predictions over all
folds, then compute UF1/UAR once; the per-fold mean is shown beside it)."""

from __future__ import annotations

import csv
import io
from typing import Sequence

import numpy as np

from mer.metrics import confusion_matrix, scores

PREDICTION_FIELDS = ("fold", "clip_id", "subject", "label", "predicted")


def predictions_csv(rows: Sequence[dict], classes: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*PREDICTION_FIELDS, *(f"p_{c}" for c in classes)])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_predictions_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _scores(rows: Sequence[dict], classes: Sequence[str]) -> dict[str, float]:
    index = {c: i for i, c in enumerate(classes)}
    return scores([index[r["label"]] for r in rows], [index[r["predicted"]] for r in rows], len(classes))


def fold_table(rows: Sequence[dict], classes: Sequence[str]) -> tuple[list[dict], dict[str, float], np.ndarray]:
    """(one row per fold with its scores and size, pooled scores, pooled confusion)."""
    folds: dict[str, list[dict]] = {}
    for row in rows:
        folds.setdefault(row["fold"], []).append(row)
    table = [{"fold": name, "n": len(members), **_scores(members, classes)} for name, members in folds.items()]
    pooled = _scores(rows, classes)
    for metric in ("acc", "uf1", "uar"):
        pooled[f"fold_mean_{metric}"] = float(np.nanmean([r[metric] for r in table]))
    index = {c: i for i, c in enumerate(classes)}
    matrix = confusion_matrix([index[r["label"]] for r in rows], [index[r["predicted"]] for r in rows], len(classes))
    return table, pooled, matrix


def fold_markdown(table: Sequence[dict], pooled: dict[str, float], protocol: str, selection: str) -> str:
    lines = [f"Protocol: {protocol}; reported epoch: {'best on the inner validation split' if selection == 'val' else 'last'}.",
             "", "| fold | clips | acc | UF1 | UAR |", "|---|---|---|---|---|"]
    lines += [f"| {r['fold']} | {r['n']} | {r['acc']:.4f} | {r['uf1']:.4f} | {r['uar']:.4f} |" for r in table]
    n = sum(r["n"] for r in table)
    lines.append(f"| **pooled** | {n} | {pooled['acc']:.4f} | {pooled['uf1']:.4f} | {pooled['uar']:.4f} |")
    lines.append(f"| mean of folds | | {pooled['fold_mean_acc']:.4f} | {pooled['fold_mean_uf1']:.4f} | {pooled['fold_mean_uar']:.4f} |")
    return "\n".join(lines) + "\n"
