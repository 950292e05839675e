"""Checkpoints written whole or not at all, and read back: a file's module with the run
config inside it, or the checkpoint an MLflow run logged. Lightning's own writer stages
the file in the system temp folder and moves it over: across filesystems the move is a
copy, and a full disk leaves a truncated `.ckpt` under its final name."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.io import TorchCheckpointIO

from mer.common.errors import MerError
from mer.common.files import atomic_write
from mer.models.module import MicroExpressionModule


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Serialised in memory first (as Lightning does): torch's zip writer reports a full
        # disk as a RuntimeError about stream positions; a plain write reports ENOSPC.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda handle: handle.write(buffer.getbuffer()),
                     "free space there or set paths.output_dir to a disk with room")


def checkpoint_from_run(client: MlflowClient, run_id: str, into: Path) -> Path:
    try:
        folder = Path(client.download_artifacts(run_id, "checkpoints", str(into)))
    except Exception as error:
        raise MerError(f"run_id={run_id}: no checkpoint artifact could be read ({error})") from error
    checkpoints = sorted(folder.glob("*.ckpt"))
    if not checkpoints:
        raise MerError(f"run_id={run_id} has no checkpoint under its 'checkpoints' artifacts (was it a fast_dev_run?)")
    return checkpoints[-1]


def load_checkpoint(path: Path) -> tuple[MicroExpressionModule, DictConfig, dict]:
    """The module, the resolved training config stored inside the checkpoint, and the
    checkpoint itself (its other entries: the input scaling, the run id), read once."""
    if not Path(path).is_file():
        raise MerError(f"ckpt_path={path} does not exist")
    stored = torch.load(path, map_location="cpu", weights_only=False)
    hparams = stored.get("hyper_parameters", {})
    if not hparams.get("run_config"):
        raise MerError(f"{path} was not written by mer's train.py (no run_config inside)")
    run_cfg = OmegaConf.create(hparams["run_config"])
    # What Lightning's load_from_checkpoint does, on the dict already in memory: it would
    # read and unpickle the file a second time.
    module = MicroExpressionModule(net=instantiate(run_cfg.model), optimizer=instantiate(run_cfg.optim), **hparams)
    module.on_load_checkpoint(stored)
    module.load_state_dict(stored["state_dict"])
    return module, run_cfg, stored


def checkpoint_entries(path: Path) -> dict:
    """The checkpoint's entries with its tensors memory-mapped, not read: for the small ones
    a caller needs (the epoch, the run id) before Lightning loads the file itself."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
