"""LightningModule: any clip network, cross-entropy, optimizer/scheduler from Hydra partials,
accuracy / UF1 / UAR (mer.common.metrics) per epoch for each part of the fold it sees.

Parts, named by the clips they are computed on: `train`; `val`, an inner validation split
carved from the training clips (the only part selection and callbacks may watch);
`heldout`, per-epoch curves on the held-out clips, for monitoring only; `test`, the final
figures of the reported model on the held-out clips."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from mer.common.distributed import interleave_shards
from mer.common.errors import MerError

# Under DDP Lightning suggests sync_dist for epoch figures; these are computed from
# torchmetrics states that are already reduced over the processes.
warnings.filterwarnings("ignore", message=r".*sync_dist=True.* when logging on epoch level in distributed setting")
from mer.common.metrics import scores_from_confusion

STAGES = ("train", "val", "heldout", "test")


class MicroExpressionModule(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_names: Sequence[str] = ("negative", "positive", "surprise"),
        run_config: dict | None = None,
        val_stages: Sequence[str] = ("val",),
        class_weights: str | None = None,
    ):
        super().__init__()
        # The resolved run config travels inside every checkpoint, so a checkpoint alone
        # rebuilds its network and preprocessing (evaluate.py relies on this).
        self.save_hyperparameters({"class_names": list(class_names), "run_config": run_config}, logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = list(class_names)
        # One stage per validation dataloader, in the datamodule's order.
        self.val_stages = list(val_stages)
        n = len(self.class_names)
        if class_weights not in (None, "balanced"):
            raise MerError(f"module.class_weights must be null or balanced, got {class_weights!r}")
        self.class_weights = class_weights
        # Set from the fold's training labels at fit start (balanced); a plain attribute, not
        # a buffer, so checkpoints load the same whichever weighting trained them.
        self.train_weights: torch.Tensor | None = None
        # Counts and sums only: torchmetrics keeps (and under DDP reduces) them; the figures
        # come from mer.common.metrics, the same definition the fold and pooled reports use.
        # Keyed `<stage>_` because nn.Module already has an attribute named `train`.
        self.confusions = nn.ModuleDict({f"{stage}_": MulticlassConfusionMatrix(n) for stage in STAGES})
        self.losses = nn.ModuleDict({f"{stage}_": MeanMetric() for stage in STAGES})
        self.val_acc_best = MaxMetric()
        self.epoch_confusion: dict[str, torch.Tensor] = {}  # the last epoch's counts per stage
        self.test_probabilities: list[torch.Tensor] = []  # per test batch, in loader order
        # The MLflow run training writes, saved in checkpoints so `ckpt_path=` resumes into it.
        self.run_id: str | None = None

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips)

    def _step(self, batch, stage: str):
        clips, labels = batch
        logits = self(clips)
        weight = self.train_weights.to(logits.device) if stage == "train" and self.train_weights is not None else None
        loss = nn.functional.cross_entropy(logits, labels, weight=weight)
        # Updated per step, logged once per epoch (_log_epoch): self.log calls every step
        # cost a noticeable share of a fused training step on CPU.
        self.confusions[f"{stage}_"].update(logits.detach(), labels)
        self.losses[f"{stage}_"].update(loss.detach(), weight=len(labels))
        return loss, logits

    def _log_epoch(self, stage: str):
        confusion, mean_loss = self.confusions[f"{stage}_"], self.losses[f"{stage}_"]
        matrix = confusion.compute().cpu()
        self.epoch_confusion[stage] = matrix
        values = {f"{stage}/loss": mean_loss.compute(),
                  **{f"{stage}/{name}": value for name, value in scores_from_confusion(matrix.numpy()).items()}}
        confusion.reset()
        mean_loss.reset()
        if stage == "val" and not self.trainer.sanity_checking:
            # lightning-hydra-template's convention: the best inner-validation accuracy so
            # far, the figure a sweeper may maximise. The sanity check's few batches before
            # training (or before a resumed epoch) are no epoch and do not count.
            self.val_acc_best.update(values["val/acc"])
            values["val/acc_best"] = self.val_acc_best.compute()
        self.log_dict(values, add_dataloader_idx=False)

    def on_fit_start(self):
        if self.class_weights == "balanced":
            self.train_weights = balanced_weights(self.trainer.datamodule.datasets["train"].labels, len(self.class_names))

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, self.val_stages[dataloader_idx])

    def test_step(self, batch, batch_idx):
        _, logits = self._step(batch, "test")
        self.test_probabilities.append(logits.softmax(dim=-1).detach().cpu())

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        for stage in self.val_stages:
            self._log_epoch(stage)

    def on_test_epoch_start(self):
        self.test_probabilities = []

    def on_test_epoch_end(self):
        self._log_epoch("test")
        if self.trainer.world_size > 1:
            # Each process scored its shard of the held-out clips; every process gets all
            # of them, in the loader's order (the prediction rows are matched to clips by it).
            shards = [None] * self.trainer.world_size
            mine = torch.cat(self.test_probabilities) if self.test_probabilities else torch.empty(0, len(self.class_names))
            torch.distributed.all_gather_object(shards, mine)
            self.test_probabilities = [interleave_shards(shards)]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Kept out of the state dict (older checkpoints load strictly without it), but a
        # resumed run must go on from the best so far, not from nothing.
        checkpoint["val_acc_best"] = self.val_acc_best.max_value.clone()
        if self.run_id:
            checkpoint["mer_run_id"] = self.run_id

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "val_acc_best" in checkpoint:
            self.val_acc_best.max_value = checkpoint["val_acc_best"].to(self.val_acc_best.max_value.device)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if not self.scheduler_factory:  # scheduler=none composes to an empty node
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer), "interval": "epoch"}}


def balanced_weights(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """scikit-learn's "balanced": n / (classes * count) per class present, 0 for an absent one,
    so every class weighs the same in the training loss whatever its share of the clips."""
    counts = torch.bincount(labels, minlength=classes).double()
    present = counts > 0
    weights = torch.zeros(classes, dtype=torch.double)
    weights[present] = len(labels) / (int(present.sum()) * counts[present])
    return weights.float()
