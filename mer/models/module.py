"""LightningModule: any clip network, cross-entropy, optimizer/scheduler from Hydra partials,
accuracy / UF1 / UAR per epoch and a confusion matrix for the final evaluation."""

from __future__ import annotations

from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score, MulticlassRecall


def classification_metrics(num_classes: int) -> MetricCollection:
    """acc = plain accuracy; uf1 = unweighted (macro) F1; uar = unweighted average recall."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "uf1": MulticlassF1Score(num_classes, average="macro"),
            "uar": MulticlassRecall(num_classes, average="macro"),
        }
    )


STAGES = ("train", "val", "test")


class MicroExpressionModule(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_names: Sequence[str] = ("negative", "positive", "surprise"),
        run_config: dict | None = None,
    ):
        super().__init__()
        # The resolved run config travels inside every checkpoint, so a checkpoint alone
        # rebuilds its network and preprocessing (evaluate.py relies on this).
        self.save_hyperparameters({"class_names": list(class_names), "run_config": run_config}, logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = list(class_names)
        n = len(self.class_names)
        self.loss = nn.CrossEntropyLoss()
        self.train_metrics, self.val_metrics, self.test_metrics = (
            classification_metrics(n).clone(prefix=f"{stage}/") for stage in STAGES)
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric() for _ in STAGES)
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.test_probabilities: list[torch.Tensor] = []  # per test batch, in loader order

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips)

    def _step(self, batch, stage: str):
        clips, labels = batch
        logits = self(clips)
        loss = self.loss(logits, labels)
        # Updated per step, logged once per epoch (_log_epoch): four self.log calls a step
        # cost more than a tenth of a fused training step on CPU.
        getattr(self, f"{stage}_metrics").update(logits, labels)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(labels))
        return loss, logits, labels

    def _log_epoch(self, stage: str):
        metrics, mean_loss = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        values = {f"{stage}/loss": mean_loss.compute(), **metrics.compute()}
        metrics.reset()
        mean_loss.reset()
        self.log_dict(values)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        _, logits, labels = self._step(batch, "test")
        self.test_confusion.update(logits, labels)
        self.test_probabilities.append(logits.softmax(dim=-1).detach().cpu())

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def on_test_epoch_start(self):
        self.test_confusion.reset()
        self.test_probabilities = []

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer), "interval": "epoch"}}
