"""Checkpoints written whole or not at all. Lightning's own writer stages the file in the
system temp folder and moves it over: across filesystems the move is a copy, and a full
disk leaves a truncated `.ckpt` under its final name."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from mer.files import atomic_write


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
