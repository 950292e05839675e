"""A past run's inputs on this machine: its training config with this command's paths, and
its own split file, so that the run's exact held-out clips are scored again anywhere."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mer.common.config import CONFIG_DIR


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
