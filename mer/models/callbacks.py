"""Lightning callbacks the default config adds to every run."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from mer.errors import MerError


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
