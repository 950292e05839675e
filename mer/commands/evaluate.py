"""Evaluate a checkpoint (a file, or the one logged by an MLflow run) on its held-out split."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytorch_lightning as pl
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mer.common.errors import MerError
from mer.data.prepare import prepare_data
from mer.models.checkpoint_io import checkpoint_from_run, load_checkpoint
from mer.tracking.reproduce import fetch_split, localise
from mer.commands.train import build_datamodule

METRICS = ("acc", "uf1", "uar", "loss")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if (cfg.ckpt_path is None) == (cfg.run_id is None):
        raise MerError("give exactly one of ckpt_path=... or run_id=...")
    client = MlflowClient(cfg.logger.tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(cfg.ckpt_path) if cfg.ckpt_path else checkpoint_from_run(client, cfg.run_id, Path(scratch))
        module, run_cfg, _ = load_checkpoint(path)
    run_cfg = localise(run_cfg, cfg)
    if cfg.run_id:
        fetch_split(client, cfg.run_id, Path(run_cfg.paths.split_dir))
    data = prepare_data(run_cfg)
    # A run's config names its fold (protocol.fold); a holdout has just one.
    datamodule = build_datamodule(run_cfg, data, data.selected_folds()[0])
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="auto", devices=1)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = {f"eval/{name}": float(results[f"test/{name}"]) for name in METRICS}
    if cfg.run_id and cfg.log_to_run:
        if cfg.data_root:
            client.log_batch(cfg.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                             tags=[RunTag("mer.eval_data_root", str(cfg.data_root))])
        else:
            # The run's own held-out clips: eval/* would repeat test/* under another name; the
            # run records instead whether its figures were reproduced.
            logged = client.get_run(cfg.run_id).data.metrics
            differ = [f"{k}={v:.4f} vs test/{k[5:]}={logged.get('test/' + k[5:], float('nan')):.4f}"
                      for k, v in metrics.items() if abs(v - logged.get("test/" + k[5:], float("nan"))) > 1e-6
                      or f"test/{k[5:]}" not in logged]
            client.set_tag(cfg.run_id, "mer.eval_reproduced", "true" if not differ else "false: " + ", ".join(differ))
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    return "\n".join(f"{name:<10} {value:.4f}" for name, value in metrics.items())
