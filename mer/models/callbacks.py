"""Lightning callbacks the default config adds to every run."""

from __future__ import annotations

import math
import random

import numpy as np

import pytorch_lightning as pl
import torch

from mer.common.errors import MerError


class StopOnNonFiniteLoss(pl.Callback):
    """Stops training at the first NaN or infinite loss, and refuses weights that are not
    finite at the end: a diverged network still predicts (argmax of NaN is class 0), and
    its run would otherwise end FINISHED with an accuracy. One check per step, on a value
    Lightning has already computed."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise MerError(f"train/loss is {float(loss)} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                           f"training diverged; lower optim.lr (now {learning_rate(trainer)}) or check the input clips")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bad = [name for name, value in pl_module.named_parameters() if not torch.isfinite(value).all()]
        if bad:
            raise MerError(f"the trained weights hold NaN or infinite values ({', '.join(bad[:3])}); "
                           f"training diverged: lower optim.lr (now {learning_rate(trainer)})")


def learning_rate(trainer: pl.Trainer) -> float | str:
    return trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else "unknown"


class ResumeWhereStopped(pl.Callback):
    """Saves the random generators' states in every checkpoint and, when training resumes
    from one, restores them at the start of the first resumed epoch: the data order and
    dropout masks then continue as if the run had never stopped, so a resumed run ends
    with the weights of an uninterrupted one. Restored there, not at load time, because
    the sanity check before it draws from torch's generator (one seed per data loader)."""

    def __init__(self):
        self.pending: dict | None = None

    def state_dict(self) -> dict:
        # numpy's key array as a tensor: checkpoints must load with torch's weights_only.
        name, keys, position, has_gauss, gauss = np.random.get_state()
        states = {"torch": torch.get_rng_state(), "python": random.getstate(),
                  "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng_states": states}

    def load_state_dict(self, state_dict: dict) -> None:
        self.pending = state_dict.get("rng_states")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.pending is None:
            return
        states, self.pending = self.pending, None
        torch.set_rng_state(states["torch"])
        random.setstate(states["python"])
        name, keys, position, has_gauss, gauss = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
