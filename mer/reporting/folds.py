"""Per-fold and pooled metrics from test predictions (MEGC: pool predictions over all
folds, then compute UF1/UAR once; the per-fold mean is shown beside it)."""

from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from mer.metrics import confusion, scores
from mer.reporting.confusion import confusion_figure
from mer.tracking.runs import COMPLETE_FILTER, TrackedRun

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
    return scores([index[r["label"]] for r in rows], [index[r["predicted"]] for r in rows])


def fold_table(rows: Sequence[dict], classes: Sequence[str]) -> tuple[list[dict], dict[str, float], np.ndarray]:
    """(one row per fold with its scores and size, scores of all rows pooled, pooled confusion)."""
    folds: dict[str, list[dict]] = {}
    for row in rows:
        folds.setdefault(row["fold"], []).append(row)
    table = [{"fold": name, "n": len(members), **_scores(members, classes)} for name, members in folds.items()]
    index = {c: i for i, c in enumerate(classes)}
    matrix = confusion([index[r["label"]] for r in rows], [index[r["predicted"]] for r in rows], len(classes))
    return table, _scores(rows, classes), matrix


def fold_means(fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """`fold_mean/<name>` for every final figure (val/*, test/*) that all folds report."""
    shared = set.intersection(*(set(m) for m in fold_metrics)) if fold_metrics else set()
    return {f"fold_mean/{name}": float(np.nanmean([m[name] for m in fold_metrics]))
            for name in sorted(shared) if name.startswith(("val/", "test/"))}


def fold_markdown(table: Sequence[dict], figures: Mapping[str, float], protocol: str, selection: str) -> str:
    lines = [f"Protocol: {protocol}; reported epoch: {selection}.",
             "", "| fold | clips | acc | UF1 | UAR |", "|---|---|---|---|---|"]
    lines += [f"| {r['fold']} | {r['n']} | {r['acc']:.4f} | {r['uf1']:.4f} | {r['uar']:.4f} |" for r in table]
    n = sum(r["n"] for r in table)

    def row(label, clips, prefix):
        return f"| {label} | {clips} | " + " | ".join(f"{figures.get(prefix + m, float('nan')):.4f}" for m in ("acc", "uf1", "uar")) + " |"

    lines += [row("**pooled**", n, "pooled/test/"), row("mean of folds", "", "fold_mean/test/")]
    return "\n".join(lines) + "\n"


def log_fold_report(run, predictions: list[dict], classes: Sequence[str], protocol: str, selection: str,
                    fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """On `run`: the mean of each fold's final figures (`fold_mean/*`) and, when the folds
    were tested, held-out figures on their predictions pooled (`pooled/test/*`), the
    per-fold table, the pooled predictions and confusion. Returns the logged figures."""
    figures = fold_means(fold_metrics)
    if predictions:
        table, pooled, matrix = fold_table(predictions, classes)
        figures |= {f"pooled/test/{k}": v for k, v in pooled.items()}
        run.log_text(fold_markdown(table, figures, protocol, selection), "report/folds.md")
        run.log_text(predictions_csv(predictions, classes), "report/predictions.csv")
        figure = confusion_figure(matrix, classes, f"{protocol}: predictions pooled over {len(table)} folds")
        run.log_figure(figure, "report/confusion_matrix_pooled.png")
        plt.close(figure)
    run.log_metrics(figures)
    return figures


def pool_fold_runs(client, parent_run_id: str, classes: Sequence[str], tracking_uri: str) -> dict[str, float]:
    """For a multirun over `protocol.fold`: pool the predictions of the parent's complete
    fold runs and log the fold report to the parent. Nothing when fewer than two folds ran."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and {COMPLETE_FILTER}")
    children = [c for c in children if "mer.fold" in c.data.tags]
    if len({c.data.tags["mer.fold"] for c in children}) < 2:
        return {}
    predictions = []
    for child in children:
        path = client.download_artifacts(child.info.run_id, "predictions.csv")
        with open(path) as handle:
            predictions += read_predictions_csv(handle.read())
    tags = children[0].data.tags
    return log_fold_report(TrackedRun(client, parent_run_id, tracking_uri), predictions, classes,
                           tags.get("mer.protocol", "folds"), tags.get("mer.selection", "?"),
                           [c.data.metrics for c in children])
