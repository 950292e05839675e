"""One training run: data -> cache -> split -> Lightning fit/test -> MLflow."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger

from mer import config  # noqa: F401  (registers resolvers)
from mer.data.augment import build_augmenter
from mer.data.cache import ClipCache
from mer.data.datamodule import ClipDataModule
from mer.data.sources import index_dataset
from mer.models.module import MicroExpressionModule
from mer.preprocess.pipeline import PreprocessSettings
from mer.preprocess.preview import preview_figure
from mer.reporting.confusion import confusion_figure
from mer.tracking.runs import TrackedRun, tracked_run

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, progress: bool = True) -> ClipDataModule:
    records, skipped = index_dataset(cfg.data, progress)
    for folder, reason in skipped:
        log.warning("skipped %s: %s", folder, reason)
    settings = PreprocessSettings(**cfg.preprocess)
    protocol = cfg.protocol
    return ClipDataModule(
        records,
        ClipCache(Path(cfg.paths.cache_dir), settings, Path(cfg.data.root)),
        cfg.data.classes,
        Path(cfg.paths.split_dir),
        val_fraction=protocol.val_fraction,
        split_seed=protocol.split_seed,
        stratify=protocol.stratify,
        subject_disjoint=protocol.subject_disjoint,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        preprocess_workers=cfg.data.preprocess_workers,
        progress=progress,
        augment=build_augmenter(cfg.get("augment"), cfg.seed),
    )


def build_module(cfg: DictConfig) -> MicroExpressionModule:
    scheduler = cfg.get("scheduler")
    return MicroExpressionModule(
        instantiate(cfg.model),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(scheduler) if scheduler else None,
        class_names=list(cfg.data.classes),
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )


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


def log_data(run: TrackedRun, datamodule: ClipDataModule, dataset_name: str) -> None:
    report = datamodule.report
    split = datamodule.split
    run.log_params({"data.clips_ok": len(report.ok), "data.clips_failed": len(report.failed),
                    "data.n_train": len(split["train"]), "data.n_val": len(split["val"]),
                    "data.split_file": datamodule.split_path.name, "data.cache_dir": str(datamodule.cache.dir)})
    run.log_artifact(datamodule.split_path, "data")
    run.log_artifact(datamodule.cache.manifest_path, "data")
    if report.failed:
        run.log_artifact(datamodule.cache.failures_path, "data")
    # What the network sees, for the first clip of this dataset.
    record = min(report.ok, key=lambda r: r.clip_id)
    figure = preview_figure(record.open(), datamodule.cache.settings, record.apex, record.onset,
                            title=f"{dataset_name}: {record.clip_id} ({record.label})")
    run.log_figure(figure, f"preview/{record.clip_id}.png")
    plt.close(figure)


def train(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Fit, evaluate and log one configuration; returns the final metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    with tracked_run(cfg, overrides, hydra_tags()) as run:
        run.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        datamodule = build_datamodule(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        log_data(run, datamodule, cfg.data.name)

        module = build_module(cfg)
        logger = MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri, run_id=run.run_id)
        callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
        trainer.fit(module, datamodule=datamodule)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if cfg.get("test"):
            selected = "best" if best and checkpoint.monitor else None
            results = trainer.test(module, datamodule=datamodule, ckpt_path=selected, verbose=False)
            metrics.update(results[0] if results else {})
            matrix = module.test_confusion.compute().cpu().numpy()
            figure = confusion_figure(matrix, module.class_names, f"{run_title(cfg)} (held-out split)")
            run.log_figure(figure, "confusion_matrix.png")
            plt.close(figure)
        if best:
            run.log_artifact(Path(best), "checkpoints")
        log.info("run %s finished: %s", run.run_id, {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")})
        return metrics


def run_title(cfg: DictConfig) -> str:
    return f"{cfg.model._target_.rsplit('.', 1)[-1]} lr={cfg.optim.lr} dropout={cfg.model.dropout} seed={cfg.seed}"
