"""LightningModule: any clip network, cross-entropy, optimizer/scheduler from Hydra partials,
accuracy / UF1 / UAR per epoch and a confusion matrix for the final evaluation."""

from __future__ import annotations

from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
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
        self.train_metrics = classification_metrics(n).clone(prefix="train/")
        self.val_metrics = classification_metrics(n).clone(prefix="val/")
        self.test_metrics = classification_metrics(n).clone(prefix="test/")
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.test_probabilities: list[torch.Tensor] = []  # per test batch, in loader order

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(clips)

    def _step(self, batch, metrics: MetricCollection, stage: str):
        clips, labels = batch
        logits = self(clips)
        loss = self.loss(logits, labels)
        metrics.update(logits, labels)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss, logits, labels

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_metrics, "train")[0]

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        _, logits, labels = self._step(batch, self.test_metrics, "test")
        self.test_confusion.update(logits, labels)
        self.test_probabilities.append(logits.softmax(dim=-1).detach().cpu())

    def on_test_epoch_start(self):
        self.test_confusion.reset()
        self.test_probabilities = []

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer), "interval": "epoch"}}
