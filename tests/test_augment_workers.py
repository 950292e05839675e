"""Data-loader workers draw their own augmentations, reproducibly from the seed."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from mer.common.config import compose_train
from mer.data.datamodule import ClipDataModule, ClipDataset


def served_batches(seed: int) -> list[torch.Tensor]:
    """The training loader's batches, in order, for 8 identical clips and 2 workers: with
    batch 2 and no shuffling, batches 0 and 2 come from worker 0, 1 and 3 from worker 1."""
    pl.seed_everything(seed, workers=True)
    augmenter = instantiate(compose_train(["augment=light", f"seed={seed}"]).datamodule.augment)
    clip = np.random.default_rng(0).integers(0, 256, size=(10, 32, 32), dtype=np.uint8)
    module = ClipDataModule(None, [], ["a"], {"train": [], "val": [], "test": []}, batch_size=2, num_workers=2,
                            augment=augmenter)
    module.datasets["train"] = ClipDataset(np.stack([clip] * 8), [0] * 8, augmenter)
    return [clips for clips, _ in module._loader("train")]


def test_each_worker_draws_its_own_augmentations():
    batches = served_batches(1)
    assert len(batches) == 4
    worker0, worker1 = torch.cat(batches[0::2]), torch.cat(batches[1::2])
    # Same clips, same transforms: only the random stream can tell the workers apart.
    assert not torch.equal(worker0, worker1)
    assert not torch.equal(batches[0], batches[1])


def test_the_same_seed_serves_the_same_batches():
    first, again = served_batches(1), served_batches(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, served_batches(2), strict=True))
