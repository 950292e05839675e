"""One training command: data -> cache -> folds -> Lightning fit/test per fold -> MLflow.

A protocol with one fold (the paper's holdout, or `protocol.fold=N`) is one MLflow run.
Several folds (LOSO, k-fold) make a parent run with one child run per fold; the parent
holds the pooled metrics."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mer.config import instantiate_with
from mer.data.datamodule import ClipDataModule
from mer.data.prepare import PreparedData, prepare_data
from mer.data.splits import ProtocolSettings
from mer.models import cpu_kernels
from mer.preprocess.pipeline import PreprocessSettings
from mer.models.module import MicroExpressionModule
from mer.reporting.folds import log_fold_report
from mer.reporting.run_report import log_data_report, log_test_report, prediction_rows
from mer.selection import check_monitors
from mer.value_checks import check_values
from mer.tracking.runs import CELL_TAG, FIXED_SETTINGS_TAG, PARENT_RUN_ENV, SWEEP_VARIED_TAG, TrackedRun, config_hash, finished_run, tracked_run

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, val_stages: Sequence[str]) -> MicroExpressionModule:
    """`cfg.module`, given the run's resolved config (it travels inside every checkpoint) and
    what the datamodule's validation loaders hold, in order (its `val_stages`)."""
    return instantiate_with(cfg.module, run_config=OmegaConf.to_container(cfg, resolve=True), val_stages=list(val_stages))


def build_datamodule(cfg: DictConfig, data: PreparedData, fold: dict) -> ClipDataModule:
    """`cfg.datamodule` serving `fold` of the prepared clips."""
    return instantiate_with(cfg.datamodule, cache=data.cache, records=data.records, fold=fold)


def ran_tags(trainer: pl.Trainer, net: torch.nn.Module) -> dict[str, str]:
    """What actually computed the run, which config keys alone do not say."""
    impl = getattr(net, "impl_ran", None) or "plain"  # networks with one code path
    device = trainer.strategy.root_device
    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return {"mer.impl_ran": impl, "mer.device": name,
            "mer.kernel_isa": cpu_kernels.build_target() if impl == "fused" else "none"}


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


@dataclass
class FoldResult:
    metrics: dict[str, float]  # the last epoch's figures, val/acc_best, and the reported model's test/*
    predictions: list[dict]  # per held-out clip
    selection: str  # which weights were reported: "last_epoch" or "best <monitored metric>"


def fit_fold(cfg: DictConfig, data: PreparedData, fold: dict, run: TrackedRun) -> FoldResult:
    """Train and test one fold in `run`."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg, data, fold)
    run.log_params({"fold.name": fold["name"], "fold.n_train": len(fold["train"]), "fold.n_val": len(fold["val"]),
                    "fold.n_test": len(fold["test"])})
    module = build_module(cfg, datamodule.val_stages)
    # Loggers and callbacks as configured (check_monitors has refused any callback that
    # watches held-out clips); a logger that writes into the run gets the run.
    loggers = [instantiate_with(c, **({"run": run} if "run" in c else {})) for c in (cfg.get("metric_loggers") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    trainer.fit(module, datamodule=datamodule)
    checkpoint = trainer.checkpoint_callback
    monitor = checkpoint.monitor if checkpoint is not None else None
    selection = f"best {monitor}" if monitor else "last_epoch"
    run.set_tags({"mer.selection": selection, "mer.fold": fold["name"], "mer.protocol": data.protocol.name,
                  **ran_tags(trainer, module.net)})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = checkpoint.best_model_path if checkpoint is not None else ""
    # 0-based epoch of the reported weights; recorded so a run says what it reports.
    metrics["selected_epoch"] = float(torch.load(best, map_location="cpu", weights_only=False)["epoch"]
                                      if best and monitor else trainer.current_epoch - 1)
    # The input scaling's numbers come from this fold's training clips; exports need them.
    run.log_params({"fold.selected_epoch": int(metrics["selected_epoch"]), "fold.input_offset": datamodule.offset,
                    "fold.input_scale": datamodule.scale})
    predictions: list[dict] = []
    if cfg.get("test"):
        results = trainer.test(module, datamodule=datamodule, ckpt_path="best" if best and monitor else None, verbose=False)
        test_figures = {k: float(v) for k, v in results[0].items()}
        # Written by the run itself, whichever loggers are configured (fast_dev_run swaps them
        # out), once, at the epoch whose weights they score.
        run.log_metrics(test_figures, step=max(0, int(metrics["selected_epoch"])))
        metrics.update(test_figures)
        predictions = prediction_rows(fold["name"], datamodule.records("test"), module.class_names,
                                      torch.cat(module.test_probabilities).numpy())
        log_test_report(run, predictions, module.class_names, module.epoch_confusion["test"].numpy(),
                        f"{run_title(cfg)}\n{cfg.data.name}, {data.protocol.name} ({fold['name']}), held-out clips\n"
                        f"acc {test_figures['test/acc']:.3f}, UF1 {test_figures['test/uf1']:.3f}, "
                        f"UAR {test_figures['test/uar']:.3f}")
    if best:
        run.log_artifact(Path(best), "checkpoints")
    return FoldResult(metrics, predictions, selection)


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Fit, evaluate and log one configuration under its protocol; returns the final metrics."""
    check_values(cfg)
    # Choices the settings objects check (layouts, protocols, fractions), before any work too.
    PreprocessSettings(**cfg.preprocess)
    ProtocolSettings(**cfg.protocol)
    check_monitors(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    # config_hash: this exact run; cell_hash: its cell, every seed of the same settings.
    tags = {**hydra_tags(), "mer.config_hash": config_hash(cfg), CELL_TAG: config_hash(cfg, ["seed"])}
    if cfg.allow_heldout_objective:
        tags["mer.heldout_objective"] = "true"
    sweep = cfg.get("sweep")
    if sweep:
        tags["mer.sweep_name"] = sweep.name
        tags[SWEEP_VARIED_TAG] = str(sweep.varied)
        # What a sweep's table holds fixed: runs that differ in anything but the varied keys
        # and the seed are never pooled into one table.
        tags[FIXED_SETTINGS_TAG] = config_hash(cfg, ["seed", *str(sweep.varied).split(",")])
        done = None if sweep.get("force") else finished_run(cfg, tags["mer.config_hash"], sweep.name)
        if done is not None:
            log.info("skipping %s: run %s of sweep %s is already complete (sweep.force=true runs it again)",
                     done.info.run_name, done.info.run_id, sweep.name)
            return dict(done.data.metrics)
    with tracked_run(cfg, overrides, tags, parent=os.environ.get(PARENT_RUN_ENV)) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        data = prepare_data(cfg)
        log_data_report(run, data, cfg.data.name)
        folds = data.selected_folds()
        if len(folds) == 1:
            metrics = fit_fold(cfg, data, folds[0], run).metrics
            log.info("run %s finished: %s", run.run_id, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
            return metrics
        results = []
        for fold in folds:
            fold_cfg = cfg.copy()
            fold_cfg.protocol.fold = fold["index"]  # so each checkpoint rebuilds its own fold
            with tracked_run(fold_cfg, overrides, hydra_tags(), parent=run, name_suffix=fold["name"]) as child:
                results.append(fit_fold(fold_cfg, data, fold, child))
        predictions = [row for result in results for row in result.predictions]
        figures = log_fold_report(run, predictions, list(cfg.data.classes), data.protocol.name, results[0].selection,
                                  [result.metrics for result in results])
        log.info("run %s (%d folds) finished: %s", run.run_id, len(folds), {k: round(v, 4) for k, v in figures.items()})
        return figures


def run_title(cfg: DictConfig) -> str:
    return (f"{cfg.model._target_.rsplit('.', 1)[-1]} lr={cfg.optim.lr} dropout={cfg.model.dropout} "
            f"epochs={cfg.trainer.max_epochs} seed={cfg.seed}")
