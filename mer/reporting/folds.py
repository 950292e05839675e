"""Per-fold and pooled metrics from test predictions (MEGC: pool predictions over all
folds, then compute UF1/UAR once; the per-fold mean is shown beside it)."""

from __future__ import annotations

import csv
import io
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from mer.metrics import confusion_matrix, scores
from mer.reporting.confusion import confusion_figure

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


def log_fold_report(run, predictions: list[dict], classes: Sequence[str], protocol: str, selection: str) -> dict[str, float]:
    """Pooled metrics, the per-fold table, pooled predictions and confusion, on `run`."""
    table, pooled, matrix = fold_table(predictions, classes)
    run.log_metrics({f"pooled/{k}": v for k, v in pooled.items()})
    run.log_text(fold_markdown(table, pooled, protocol, selection), "report/folds.md")
    run.log_text(predictions_csv(predictions, classes), "report/predictions.csv")
    figure = confusion_figure(matrix, classes, f"{protocol}: predictions pooled over {len(table)} folds")
    run.log_figure(figure, "report/confusion_matrix_pooled.png")
    plt.close(figure)
    return {f"pooled/{k}": v for k, v in pooled.items()}


def pool_fold_runs(client, parent_run_id: str, classes: Sequence[str], tracking_uri: str) -> dict[str, float]:
    """For a multirun over `protocol.fold`: pool the predictions of the parent's
    finished fold runs and log the fold report to the parent. Nothing when fewer than
    two folds ran."""
    from mer.tracking.runs import TrackedRun

    experiment_id = client.get_run(parent_run_id).info.experiment_id
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'")
    children = [c for c in children if "mer.fold" in c.data.tags]
    if len({c.data.tags["mer.fold"] for c in children}) < 2:
        return {}
    predictions = []
    for child in children:
        path = client.download_artifacts(child.info.run_id, "predictions.csv")
        with open(path) as handle:
            predictions += read_predictions_csv(handle.read())
    protocol = children[0].data.tags.get("mer.protocol", "folds")
    selection = "val" if children[0].data.tags.get("mer.selection") == "best_inner_val" else "last"
    return log_fold_report(TrackedRun(client, parent_run_id, tracking_uri), predictions, classes, protocol, selection)
