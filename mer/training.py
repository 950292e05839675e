"""One training command: data -> cache -> folds -> Lightning fit/test per fold -> MLflow.

A protocol with one fold (the paper's holdout, or `protocol.fold=N`) is one MLflow run.
Several folds (LOSO, k-fold) make a parent run with one child run per fold; the parent
holds the pooled metrics."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger

from mer import config  # noqa: F401  (registers resolvers)
from mer.data.augment import build_augmenter
from mer.data.datamodule import ClipDataModule
from mer.data.prepare import PreparedData, prepare_data
from mer.models.module import MicroExpressionModule
from mer.preprocess.preview import preview_figure
from mer.reporting.confusion import confusion_figure
from mer.reporting.data_summary import class_counts, summary_markdown
from mer.reporting.folds import log_fold_report, predictions_csv
from mer.tracking.hydra_callbacks import PARENT_RUN_ENV
from mer.tracking.runs import TrackedRun, config_hash, finished_run, tracked_run

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> MicroExpressionModule:
    scheduler = cfg.get("scheduler")
    return MicroExpressionModule(
        instantiate(cfg.model),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(scheduler) if scheduler else None,
        class_names=list(cfg.data.classes),
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )


def build_datamodule(cfg: DictConfig, data: PreparedData, fold: dict) -> ClipDataModule:
    return ClipDataModule(data.cache, data.records, cfg.data.classes, fold, batch_size=cfg.data.batch_size,
                          num_workers=cfg.data.num_workers, augment=build_augmenter(cfg.get("augment"), cfg.seed))


def hydra_tags() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    tags = {"mer.hydra_mode": str(hydra.mode.name if hasattr(hydra.mode, "name") else hydra.mode)}
    if tags["mer.hydra_mode"] == "MULTIRUN":
        # Every run of one sweep shares its sweep folder: group by this tag in the UI.
        tags["mer.sweep_id"] = Path(hydra.sweep.dir).name
        tags["mer.sweep_dir"] = str(hydra.sweep.dir)
        tags["mer.job_num"] = str(hydra.job.num)
    return tags


def log_data(run: TrackedRun, data: PreparedData, dataset_name: str) -> None:
    run.log_params({"data.clips_ok": len(data.report.ok), "data.clips_failed": len(data.report.failed),
                    "data.split_file": data.folds_path.name, "data.cache_dir": str(data.cache.dir),
                    "protocol.n_folds": len(data.folds["folds"])})
    counts = class_counts(data.records, data.classes)
    run.log_params({f"data.n_{label}": n for label, n in counts.items()} | {"data.n_subjects": len({r.subject for r in data.records})})
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


def fit_fold(cfg: DictConfig, data: PreparedData, fold: dict, run: TrackedRun, checkpoint_dir: Path | None = None
             ) -> tuple[dict[str, float], list[dict]]:
    """Train and test one fold in `run`; returns its metrics and per-clip predictions."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg, data, fold)
    run.log_params({"fold.name": fold["name"], "fold.n_train": len(fold["train"]), "fold.n_val": len(fold["val"]),
                    "fold.n_test": len(fold["test"])})
    run.set_tags({"mer.selection": "best_inner_val" if data.protocol.selection == "val" else "last_epoch",
                  "mer.fold": fold["name"], "mer.protocol": data.protocol.name})
    module = build_module(cfg)
    logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri, run_id=run.run_id)
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint):
            # Selection never looks at test clips: the inner val split, or the last epoch.
            callback.monitor = "val/acc" if data.protocol.selection == "val" else None
            callback.mode = "max"
            if checkpoint_dir is not None:
                callback.dirpath = str(checkpoint_dir)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    # 0-based epoch of the reported weights; recorded so a run says what it reports.
    metrics["selected_epoch"] = float(torch.load(best, map_location="cpu", weights_only=False)["epoch"] if best
                                      else trainer.current_epoch - 1)
    run.log_params({"fold.selected_epoch": int(metrics["selected_epoch"])})
    predictions: list[dict] = []
    if cfg.get("test"):
        selected = "best" if best and data.protocol.selection == "val" else None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=selected, verbose=False)
        metrics.update(results[0] if results else {})
        predictions = prediction_rows(fold, datamodule, module)
        run.log_text(predictions_csv(predictions, module.class_names), "predictions.csv")
        figure = confusion_figure(module.test_confusion.compute().cpu().numpy(), module.class_names,
                                  f"{run_title(cfg)} ({fold['name']}, test part)")
        run.log_figure(figure, "confusion_matrix.png")
        plt.close(figure)
    if best:
        run.log_artifact(Path(best), "checkpoints")
    return metrics, predictions


def prediction_rows(fold: dict, datamodule: ClipDataModule, module: MicroExpressionModule) -> list[dict]:
    # fast_dev_run tests a single batch: pair only the clips that were seen, in loader order.
    probabilities = torch.cat(module.test_probabilities).numpy()
    rows = []
    for record, p in zip(datamodule.records("test"), probabilities):
        rows.append({"fold": fold["name"], "clip_id": record.clip_id, "subject": record.subject, "label": record.label,
                     "predicted": module.class_names[int(p.argmax())],
                     **{f"p_{c}": f"{v:.6f}" for c, v in zip(module.class_names, p)}})
    return rows


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Fit, evaluate and log one configuration under its protocol; returns the final metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    tags = {**hydra_tags(), "mer.config_hash": config_hash(cfg)}
    sweep = cfg.get("sweep")
    if sweep:
        tags["mer.sweep_name"] = sweep.name
        done = None if sweep.get("force") else finished_run(cfg, tags["mer.config_hash"], sweep.name)
        if done is not None:
            log.info("skipping %s: run %s of sweep %s already FINISHED (sweep.force=true runs it again)",
                     done.info.run_name, done.info.run_id, sweep.name)
            return dict(done.data.metrics)
    with tracked_run(cfg, overrides, tags, parent=os.environ.get(PARENT_RUN_ENV)) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        data = prepare_data(cfg)
        log_data(run, data, cfg.data.name)
        folds = data.selected_folds()
        if len(folds) == 1:
            metrics, _ = fit_fold(cfg, data, folds[0], run)
            log.info("run %s finished: %s", run.run_id, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
            return metrics
        predictions = []
        for fold in folds:
            fold_cfg = cfg.copy()
            fold_cfg.protocol.fold = fold["index"]  # so each checkpoint rebuilds its own fold
            with tracked_run(fold_cfg, overrides, hydra_tags(), parent=run,
                             name_suffix=fold["name"]) as child:
                _, fold_predictions = fit_fold(fold_cfg, data, fold, child,
                                               Path(cfg.trainer.default_root_dir) / "checkpoints" / f"fold{fold['index']:03d}")
            predictions += fold_predictions
        pooled = log_fold_report(run, predictions, list(cfg.data.classes), data.protocol.name, data.protocol.selection) if predictions else {}
        log.info("run %s (%d folds) finished: %s", run.run_id, len(folds), {k: round(v, 4) for k, v in pooled.items()})
        return pooled


def run_title(cfg: DictConfig) -> str:
    return f"{cfg.model._target_.rsplit('.', 1)[-1]} lr={cfg.optim.lr} dropout={cfg.model.dropout} seed={cfg.seed}"
