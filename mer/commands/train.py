"""One training command: data -> cache -> folds -> Lightning fit/test per fold -> MLflow.

A protocol with one fold (the paper's holdout, or `protocol.fold=N`) is one MLflow run.
Several folds (LOSO, k-fold) make a parent run with one child run per fold; the parent
holds the pooled metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from omegaconf import DictConfig, OmegaConf

from mer.common.config import instantiate_with
from mer.data.datamodule import ClipDataModule
from mer.data.prepare import PreparedData, prepare_data
from mer.data.splits import ProtocolSettings, clip_set_digest
from mer.common.distributed import is_global_rank_zero
from mer.common.errors import MerError
from mer.models import cpu_kernels
from mer.models.checkpoint_io import checkpoint_entries
from mer.preprocess.pipeline import PreprocessSettings
from mer.models.module import MicroExpressionModule
from mer.reporting.folds import dataset_scores, log_fold_report
from mer.reporting.run_report import log_data_report, log_test_report, prediction_rows
from mer.common.selection import check_monitors
from mer.spotting.logged_model import log_trained_model
from mer.common.value_checks import check_values
from mer.tracking.config_hash import config_hash
from mer.tracking.run_handle import TrackedRun
from mer.tracking.run_lifecycle import tracked_run
from mer.tracking.run_lookup import finished_run, resumable_run, stored_run
from mer.tracking.run_tags import (CELL_TAG, CHECKPOINT_DIR_TAG, CONFIG_HASH_TAG, FIXED_SETTINGS_TAG, POOL_TAG, SWEEP_VARIED_TAG,
                                   TEST_CLIPS_TAG)
from mer.tracking.sweep_parent import multirun_sweep_dir, sweep_parent_id

log = logging.getLogger(__name__)
# A fold's parts as MLflow dataset contexts.
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


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
    return {"mer.impl_ran": impl, "mer.device": name, "mer.precision": str(trainer.precision),
            "mer.processes": str(trainer.world_size),
            "mer.kernel_isa": cpu_kernels.build_target() if impl == "fused" else "none"}


def hydra_tags() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    tags = {"mer.hydra_mode": str(getattr(hydra.mode, "name", hydra.mode))}
    sweep_dir = multirun_sweep_dir()
    if sweep_dir:
        # Every run of one sweep shares its sweep folder: the UI's saved view groups by this tag.
        tags |= {"mer.sweep_id": Path(sweep_dir).name, "mer.sweep_dir": sweep_dir, "mer.job_num": str(hydra.job.num)}
    return tags


@dataclass
class FoldResult:
    metrics: dict[str, float]  # the last epoch's figures, val/acc_best, and the reported model's test/*
    predictions: list[dict]  # per held-out clip
    selection: str  # which weights were reported: "last_epoch" or "best <monitored metric>"


def fit_fold(cfg: DictConfig, data: PreparedData, fold: dict, run: TrackedRun, resume_from: Path | None = None) -> FoldResult:
    """Train and test one fold in `run`, continuing from checkpoint `resume_from` if given."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg, data, fold)
    run.log_params({"fold.name": fold["name"], "fold.n_train": len(fold["train"]), "fold.n_val": len(fold["val"]),
                    "fold.n_test": len(fold["test"]), "fold.n_test_lost": len(fold["test_lost"])})
    # The clips the test figures are computed on: the tables mark a cell whose runs differ in them.
    run.set_tags({TEST_CLIPS_TAG: clip_set_digest(fold["test"])})
    run.log_datasets(cfg.data.name, str(data.cache.data_root.resolve()),
                     [(context, clip_set_digest(fold[part]), len(fold[part]))
                      for part, context in DATASET_CONTEXTS.items() if fold[part]])
    if fold["test_lost"]:
        run.set_tags({MLFLOW_RUN_NOTE: f"{len(fold['test_lost'])} of {len(fold['test']) + len(fold['test_lost'])} "
                      f"held-out clips failed preprocessing and are not scored: {', '.join(fold['test_lost'])}"})
    module = build_module(cfg, datamodule.val_stages)
    module.run_id = run.run_id
    # Loggers and callbacks as configured (check_monitors has refused any callback that
    # watches held-out clips); a logger that writes into the run gets the run.
    loggers = [instantiate_with(c, **({"run": run} if "run" in c else {})) for c in (cfg.get("metric_loggers") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    check_processes(trainer)
    if trainer.checkpoint_callback is not None:
        run.set_tags({CHECKPOINT_DIR_TAG: str(Path(trainer.checkpoint_callback.dirpath).resolve())})
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    checkpoint = trainer.checkpoint_callback
    monitor = checkpoint.monitor if checkpoint is not None else None
    selection = f"best {monitor}" if monitor else "last_epoch"
    run.set_tags({"mer.selection": selection, "mer.fold": fold["name"], "mer.protocol": data.protocol.name,
                  **ran_tags(trainer, module.net)})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = checkpoint.best_model_path if checkpoint is not None else ""
    # 0-based epoch of the reported weights; recorded so a run says what it reports.
    metrics["selected_epoch"] = float(checkpoint_entries(best)["epoch"]
                                      if best and monitor else trainer.current_epoch - 1)
    # The input scaling's numbers come from this fold's training clips; exports need them.
    run.log_params({"fold.selected_epoch": int(metrics["selected_epoch"]), "fold.input_offset": datamodule.network_input.offset,
                    "fold.input_scale": datamodule.network_input.scale})
    step = max(0, int(metrics["selected_epoch"]))
    model_ids = []
    if best and cfg.logger.get("log_model", True) and is_global_rank_zero():
        # Linked to the figures logged at its epoch; the test figures, logged below, name it and their clips.
        uri, run_id = run.store()
        model_ids = log_trained_model(run_id, uri, Path(best), step, onnx=bool(cfg.logger.get("log_onnx", False)))
    predictions: list[dict] = []
    if cfg.get("test"):
        results = trainer.test(module, datamodule=datamodule, ckpt_path="best" if best and monitor else None, verbose=False)
        predictions = prediction_rows(fold["name"], datamodule.records("test"), module.class_names,
                                      torch.cat(module.test_probabilities).numpy())
        test_figures = {k: float(v) for k, v in results[0].items()}
        if len({r.source for r in data.records}) > 1:  # a composite: each of its datasets scored apart too
            test_figures |= {f"test/{k}": v for k, v in dataset_scores(predictions, module.class_names).items()}
        # Written by the run itself, whichever loggers are configured (fast_dev_run swaps them
        # out), once, at the epoch whose weights they score, for the pyfunc model of those weights.
        run.log_metrics(test_figures, step=step, dataset=(cfg.data.name, clip_set_digest(fold["test"])),
                        model_id=model_ids[0] if model_ids else None)
        metrics.update(test_figures)
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
    PreprocessSettings.from_config(cfg.preprocess)
    ProtocolSettings(**cfg.protocol)
    check_monitors(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    # config_hash: this exact run; pool_hash: its folds, pooled together; cell_hash: its
    # cell, every seed (and fold) of the same settings.
    tags = {**hydra_tags(), CONFIG_HASH_TAG: config_hash(cfg), POOL_TAG: config_hash(cfg, ["protocol.fold"]),
            CELL_TAG: config_hash(cfg, ["seed", "protocol.fold"])}
    if cfg.allow_heldout_objective:
        tags["mer.heldout_objective"] = "true"
    sweep = cfg.get("sweep")
    if sweep:
        tags["mer.sweep_name"] = sweep.name
        tags[SWEEP_VARIED_TAG] = str(sweep.varied)
        # What a sweep's table holds fixed: runs that differ in anything but the varied keys
        # and the seed are never pooled into one table.
        tags[FIXED_SETTINGS_TAG] = config_hash(cfg, ["seed", "protocol.fold", *str(sweep.varied).split(",")])
        done = None if sweep.get("force") else finished_run(cfg, tags[CONFIG_HASH_TAG], sweep.name)
        if done is not None:
            log.info("skipping %s: run %s of sweep %s is already complete (sweep.force=true runs it again)",
                     done.info.run_name, done.info.run_id, sweep.name)
            return dict(done.data.metrics)
    continued, checkpoint = resume_point(cfg, tags[CONFIG_HASH_TAG])
    with tracked_run(cfg, overrides, tags, parent=sweep_parent_id(cfg.logger), continue_run=continued) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        data = prepare_data(cfg)
        log_data_report(run, data, cfg.data.name, Path(cfg.paths.root_dir))
        folds = data.selected_folds()
        if checkpoint is not None and len(folds) > 1:
            raise MerError(f"resuming continues one fold, and {data.protocol.name} runs {len(folds)} in this process; "
                           "run the folds as a multirun (-m protocol.fold=0,1,...) to resume each from its checkpoint")
        if len(folds) == 1:
            metrics = fit_fold(with_checkpoint_dir(cfg, checkpoint), data, folds[0], run, checkpoint).metrics
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


def resume_point(cfg: DictConfig, key: str) -> tuple[str | None, Path | None]:
    """(run to continue, checkpoint to continue from), or (None, None) for a fresh run:
    `ckpt_path=`, else with `resume=true` or in a sweep not forced, the newest stopped run
    of this config (and sweep) that left a last checkpoint."""
    sweep = cfg.get("sweep")
    if cfg.ckpt_path:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise MerError(f"ckpt_path={path} does not exist")
        run_id = checkpoint_entries(path).get("mer_run_id")
        return (checked_resume_run(cfg, run_id, key, path) if run_id else None), path
    if cfg.resume or (sweep and not sweep.get("force")):
        found = resumable_run(cfg, key, sweep.name if sweep else None)
        if found:
            return found
        if cfg.resume:
            log.info("resume=true: no stopped run of this config left a last checkpoint; starting from the beginning")
    return None, None


def checked_resume_run(cfg: DictConfig, run_id: str, key: str, path: Path) -> str | None:
    """The run checkpoint `path` came from, if it is in this store and trained this config."""
    run = stored_run(cfg.logger.tracking_uri, run_id)
    if run is None:
        log.warning("%s was written by run %s, which is not in %s: continuing it in a new run",
                    path, run_id, cfg.logger.tracking_uri)
        return None
    if run.data.tags.get(CONFIG_HASH_TAG) != key:
        raise MerError(f"ckpt_path={path} comes from run {run_id} ({run.info.run_name}), which trained other settings; "
                       f"resume it with its own command line: {run.data.tags.get('mer.overrides', '')}")
    if run.info.status == "FINISHED":
        raise MerError(f"ckpt_path={path} comes from run {run_id} ({run.info.run_name}), which already finished; "
                       "train longer in a new run (evaluate.py scores the checkpoint)")
    return run_id


def with_checkpoint_dir(cfg: DictConfig, checkpoint: Path | None) -> DictConfig:
    """A resumed run keeps writing its checkpoints where it wrote them before: its last and
    best checkpoints stay together, and Lightning restores its record of the best."""
    if checkpoint is None or OmegaConf.select(cfg, "callbacks.model_checkpoint") is None:
        return cfg
    cfg = cfg.copy()
    cfg.callbacks.model_checkpoint.dirpath = str(checkpoint.resolve().parent)
    return cfg


def check_processes(trainer: pl.Trainer) -> None:
    """Several processes must take the datamodule's shards: Lightning's own sampler pads
    the held-out clips to equal shards and scores some of them twice. And in a multirun,
    Lightning's own DDP launcher would start each extra process on the whole sweep's
    command line, so there the processes must come from a cluster (SLURM's tasks)."""
    if trainer.world_size <= 1:
        return
    if trainer._accelerator_connector.use_distributed_sampler:
        raise MerError("with several processes set trainer.use_distributed_sampler=false (trainer=ddp does): "
                       "Lightning's sampler repeats held-out clips to even out the shards")
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and multirun_sweep_dir() is not None:
        raise MerError("a multirun cell cannot start its own DDP processes (Lightning would start the whole sweep in "
                       "each); use hydra/launcher=slurm, which gives each cell one task per device, or run the cell "
                       "on its own: python train.py trainer=ddp ...")


def run_title(cfg: DictConfig) -> str:
    return (f"{cfg.model._target_.rsplit('.', 1)[-1]} lr={cfg.optim.lr} dropout={cfg.model.dropout} "
            f"epochs={cfg.trainer.max_epochs} seed={cfg.seed}")
