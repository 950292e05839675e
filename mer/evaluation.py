"""Evaluate a checkpoint (a file, or the one logged by an MLflow run) on its held-out split."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mer.config import CONFIG_DIR
from mer.errors import MerError
from mer.data.prepare import prepare_data
from mer.models.checkpoint_io import checkpoint_from_run, load_checkpoint
from mer.training import build_datamodule

METRICS = ("acc", "uf1", "uar", "loss")


def rebase(path: str, old_base: str, new_base: str) -> str:
    """`path` moved from under `old_base` to under `new_base`; unchanged if it was not under it."""
    try:
        return str(Path(new_base) / Path(path).relative_to(old_base))
    except ValueError:
        return path


# Keys a checkpoint written before they existed lacks, with the value such runs had; the
# datamodule section's interpolations resolve against the checkpoint's own config.
KEYS_ADDED = {"data.input_scaling": "unit", "data.input": "frames", "protocol.monitor_heldout": True,
              "datamodule": OmegaConf.load(CONFIG_DIR / "datamodule" / "default.yaml")}


def localise(run_cfg: DictConfig, cfg: DictConfig) -> DictConfig:
    """The training config with this command's paths: a checkpoint's `paths.*` are the
    absolute folders of the machine and launch folder it was trained in."""
    run_cfg = run_cfg.copy()
    for key, value in KEYS_ADDED.items():
        if OmegaConf.select(run_cfg, key) is None:
            OmegaConf.update(run_cfg, key, value)
    run_cfg.data.root = (OmegaConf.select(cfg, "data_root", default=None)
                         or rebase(run_cfg.data.root, run_cfg.paths.data_dir, cfg.paths.data_dir))
    run_cfg.paths = OmegaConf.to_container(cfg.paths, resolve=True)
    return run_cfg


def fetch_split(client: MlflowClient, run_id: str, split_dir: Path) -> None:
    """Put the run's own split file where the split is looked up, so the run's exact
    held-out clips are evaluated even where the split was never made."""
    name = client.get_run(run_id).data.params.get("data.split_file")
    if not name or (split_dir / name).is_file():
        return
    split_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copy(client.download_artifacts(run_id, f"data/{name}", scratch), split_dir / name)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if (cfg.ckpt_path is None) == (cfg.run_id is None):
        raise MerError("give exactly one of ckpt_path=... or run_id=...")
    client = MlflowClient(cfg.logger.tracking_uri)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(cfg.ckpt_path) if cfg.ckpt_path else checkpoint_from_run(client, cfg.run_id, Path(scratch))
        module, run_cfg = load_checkpoint(path)
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
