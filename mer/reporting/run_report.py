"""What one run logs besides its metrics: the data it saw (summary, split, cache manifest,
a preview of what the network sees) and its held-out predictions and confusion matrix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from mer.data.prepare import PreparedData
from mer.datasets.records import ClipRecord
from mer.preprocess.preview import preview_figure
from mer.reporting.confusion import confusion_figure
from mer.reporting.data_summary import summary_markdown
from mer.reporting.folds import predictions_csv
from mer.tracking.run_handle import TrackedRun


def log_data_report(run: TrackedRun, data: PreparedData, dataset_name: str, launch_dir: Path) -> None:
    """What the run trained and tested on: counts, the split, the cache manifest, failures, a preview."""
    # Clip counts per class and subject are in data/summary.md; params stay the few compared.
    # The root relative to the launch folder: tables print it, and this machine's absolute
    # path says nothing on another.
    run.log_params({"data.clips_ok": len(data.report.ok), "data.clips_failed": len(data.report.failed),
                    "data.split_file": data.folds_path.name, "protocol.n_folds": len(data.folds["folds"]),
                    "data.root": os.path.relpath(data.cache.data_root.resolve(), Path(launch_dir).resolve())})
    run.set_tags({"mer.cache_dir": str(data.cache.dir)})
    run.log_text(summary_markdown(data.records, data.classes, data.skipped, dataset_name), "data/summary.md")
    run.log_artifact(data.folds_path, "data")
    run.log_artifact(data.cache.manifest_path, "data")
    if data.report.failed:
        run.log_artifact(data.cache.failures_path, "data")
    # What the network sees, for the first clip of this dataset.
    record = data.records[0]
    figure = preview_figure(record.open(), data.cache.settings, record.apex, record.onset,
                            title=f"{dataset_name}: {record.clip_id} ({record.label})")
    run.log_figure(figure, f"preview/{record.clip_id}.png")
    plt.close(figure)


def prediction_rows(fold: str, records: Sequence[ClipRecord], class_names: Sequence[str],
                    probabilities: np.ndarray) -> list[dict]:
    """One row per held-out clip: truth, prediction and class probabilities. A fast_dev_run
    tests a single batch: only the clips that were seen are paired, in loader order."""
    return [{"fold": fold, "clip_id": record.clip_id, "subject": record.subject, "dataset": record.source,
             "label": record.label,
             "predicted": class_names[int(p.argmax())], **{f"p_{c}": f"{v:.6f}" for c, v in zip(class_names, p)}}
            for record, p in zip(records, probabilities)]


def log_test_report(run: TrackedRun, predictions: list[dict], class_names: Sequence[str], confusion: np.ndarray,
                    title: str) -> None:
    run.log_text(predictions_csv(predictions, class_names), "predictions.csv")
    figure = confusion_figure(confusion, class_names, title)
    run.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)
