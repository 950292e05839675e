"""Per-fold and pooled metrics from test predictions (MEGC: pool predictions over all
folds, then compute UF1/UAR once; the per-fold mean is shown beside it)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mer.data.splits import clip_set_digest
from mer.common.errors import MerError
from mer.common.metrics import confusion, scores
from mer.reporting.confusion import confusion_figure
from mer.tracking.run_handle import TrackedRun
from mer.tracking.run_lifecycle import close_run, describe, hold_open
from mer.tracking.run_tags import (CELL_TAG, COMPLETE_TAG, CONFIG_HASH_TAG, FIXED_SETTINGS_TAG, POOLED_ROLE, POOL_TAG, SWEEP_VARIED_TAG,
                                   TEST_CLIPS_TAG)

PREDICTION_FIELDS = ("fold", "clip_id", "subject", "dataset", "label", "predicted")
# What a pooled run takes from its fold runs: the grouping the tables and the sweep
# parent read, the protocol and the reported epoch, the sweep and the provenance.
POOLED_CELL_TAGS = (CELL_TAG, FIXED_SETTINGS_TAG, SWEEP_VARIED_TAG, "mer.sweep_name", "mer.sweep_id", "mer.protocol",
                    "mer.selection", "mlflow.source.git.commit", "mer.versions", "seed")


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


def dataset_scores(rows: Sequence[dict], classes: Sequence[str]) -> dict[str, float]:
    """`<dataset>/<score>` per dataset of `rows`: MEGC reports each part of the composite
    beside the whole. Predictions of an older mer name no dataset and give none."""
    datasets = sorted({r.get("dataset") or "" for r in rows} - {""})
    return {f"{d}/{k}": v for d in datasets for k, v in _scores([r for r in rows if r.get("dataset") == d], classes).items()}


def spans_datasets(rows: Sequence[dict]) -> bool:
    return len({r.get("dataset") or "" for r in rows} - {""}) > 1


def fold_table(rows: Sequence[dict], classes: Sequence[str]) -> tuple[list[dict], dict[str, float], np.ndarray]:
    """(one row per fold with its scores and size, scores of all rows pooled, pooled confusion)."""
    repeated = sorted(clip for clip, n in Counter(r["clip_id"] for r in rows).items() if n > 1)
    if repeated:
        # Pooled figures count each held-out clip once; folds sharing a test clip are not one protocol's.
        raise MerError(f"{len(repeated)} clip(s) are in the test part of more than one pooled fold "
                       f"({', '.join(repeated[:5])}): these folds do not come from one split")
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
    datasets = sorted({name.split("/")[2] for name in figures if name.startswith("pooled/test/") and name.count("/") == 3})
    lines += [row(f"pooled, {d}", "", f"pooled/test/{d}/") for d in datasets]
    return "\n".join(lines) + "\n"


def log_fold_report(run, predictions: list[dict], classes: Sequence[str], protocol: str, selection: str,
                    fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """On `run`: the mean of each fold's final figures (`fold_mean/*`) and, when the folds
    were tested, held-out figures on their predictions pooled (`pooled/test/*`), the
    per-fold table, the pooled predictions and confusion. Returns the logged figures."""
    figures = fold_means(fold_metrics)
    if predictions:
        table, pooled, matrix = fold_table(predictions, classes)
        if spans_datasets(predictions):
            pooled |= dataset_scores(predictions, classes)
        figures |= {f"pooled/test/{k}": v for k, v in pooled.items()}
        run.set_tags({TEST_CLIPS_TAG: clip_set_digest([r["clip_id"] for r in predictions])})
        run.log_text(fold_markdown(table, figures, protocol, selection), "report/folds.md")
        run.log_text(predictions_csv(predictions, classes), "report/predictions.csv")
        figure = confusion_figure(matrix, classes, f"{protocol}: predictions pooled over {len(table)} folds")
        run.log_figure(figure, "report/confusion_matrix_pooled.png")
        plt.close(figure)
    run.log_metrics(figures)
    return figures


def pool_fold_cells(client, parent_run_id: str, classes: Sequence[str], tracking_uri: str) -> list[str]:
    """For a multirun over `protocol.fold`: one run per cell (a config less its fold: each
    learning rate, each seed), nested under the sweep's parent, holding that cell's folds
    pooled, each held-out clip once. A cell missing folds is recorded FAILED, naming them,
    never pooled as if complete. Returns the pooled runs' ids."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    children = client.search_runs([experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
                                  order_by=["attributes.start_time DESC"], max_results=10_000)
    cells: dict[str, list] = defaultdict(list)
    for child in children:
        if POOL_TAG in child.data.tags and "mer.fold" in child.data.tags:
            cells[child.data.tags[POOL_TAG]].append(child)
    return [pool_cell(client, parent_run_id, runs, classes, tracking_uri) for runs in cells.values()]


def expected_folds(client, run) -> list[str]:
    """The fold names of the split `run` trained on, from its logged split file."""
    name = run.data.params["data.split_file"]
    with tempfile.TemporaryDirectory() as scratch:
        document = json.loads(Path(client.download_artifacts(run.info.run_id, f"data/{name}", scratch)).read_text())
    return [fold["name"] for fold in document["folds"]]


def pool_cell(client, parent_run_id: str, runs: list, classes: Sequence[str], tracking_uri: str) -> str:
    """The pooled run of one cell's fold runs (newest first; a fold run again counts once, as its newest)."""
    complete = {}
    for run in runs:
        if run.info.status == "FINISHED" and run.data.tags.get(COMPLETE_TAG) == "true":
            complete.setdefault(run.data.tags["mer.fold"], run)
    sample = next(iter(complete.values()), runs[0])
    missing = [name for name in expected_folds(client, sample) if name not in complete]
    tags = {key: value for key, value in sample.data.tags.items() if key in POOLED_CELL_TAGS}
    name = "pooled " + " ".join(part for part in sample.info.run_name.split() if not part.startswith("fold="))
    pooled = client.create_run(sample.info.experiment_id, run_name=name, tags={
        **tags, MLFLOW_RUN_NAME: name, MLFLOW_PARENT_RUN_ID: parent_run_id, "mer.role": POOLED_ROLE,
        CONFIG_HASH_TAG: sample.data.tags[POOL_TAG], "mer.pooled_runs": ",".join(r.info.run_id for r in complete.values())})
    run_id = pooled.info.run_id
    hold_open(client, run_id)
    try:
        handle = TrackedRun(client, run_id, tracking_uri)
        handle.log_params({k: v for k, v in sample.data.params.items() if not k.startswith(("fold.", "protocol.fold"))})
        if missing:
            close_run(client, run_id, "FAILED", f"not pooled: {len(missing)} of {len(missing) + len(complete)} folds did "
                      f"not finish or were not run ({', '.join(missing)})")
            return run_id
        predictions = []
        for run in complete.values():
            path = client.download_artifacts(run.info.run_id, "predictions.csv")
            with open(path) as handle_:
                predictions += read_predictions_csv(handle_.read())
        log_fold_report(handle, predictions, classes, tags.get("mer.protocol", "folds"), tags.get("mer.selection", "?"),
                        [r.data.metrics for r in complete.values()])
        client.set_tag(run_id, COMPLETE_TAG, "true")
    except BaseException as error:
        close_run(client, run_id, "FAILED", describe(error))
        raise
    close_run(client, run_id, "FINISHED")
    return run_id
