"""The LightningModule's epoch metrics, on a small linear network."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mer.models.module import MicroExpressionModule


def test_epoch_metrics_cover_the_whole_epoch_and_restart_each_epoch():
    torch.manual_seed(0)
    clips, labels = torch.randn(23, 5), torch.randint(0, 3, (23,))
    train = DataLoader(TensorDataset(torch.randn(30, 5), torch.randint(0, 3, (30,))), batch_size=7)
    val = DataLoader(TensorDataset(clips, labels), batch_size=7)  # batches of 7, 7, 7, 2
    module = MicroExpressionModule(torch.nn.Linear(5, 3), optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, train, val)
    with torch.no_grad():
        logits = module(clips)
    logged = trainer.callback_metrics
    # the last validation ran on the final weights: its figures are over all 23 clips,
    # weighted by batch size, and hold nothing from the two earlier epochs
    assert torch.isclose(logged["val/loss"], torch.nn.functional.cross_entropy(logits, labels))
    assert torch.isclose(logged["val/acc"], (logits.argmax(1) == labels).float().mean())
    assert {"train/loss", "train/acc", "train/uf1", "train/uar", "val/uf1", "val/uar"} <= set(logged)
