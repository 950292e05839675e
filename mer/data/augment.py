"""Clip-consistent augmentation with albumentations (training split only)."""

from __future__ import annotations

import os
from typing import Sequence

import albumentations as A
import numpy as np
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import get_worker_info


class ClipAugmenter:
    """Applies one sampled transform to all frames of a clip: albumentations' `images=`
    target shares the sampled parameters across the images it is given."""

    def __init__(self, transforms: Sequence, seed: int):
        self.compose = A.Compose(list(transforms), seed=seed)

    def __len__(self) -> int:
        # An augmenter with no transforms (augment=none) is falsy: the clips are served as cached.
        return len(self.compose.transforms)

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        return np.asarray(self.compose(images=clip)["images"])

    def reseed(self, seed: int) -> None:
        # Compose keeps its own generators, untouched by numpy's or torch's global seed.
        self.compose.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for a loader whose dataset has an `augment`. Each worker process
    starts with a copy of the augmenter, seed included, so without this every worker would
    draw the same transforms. torch's seed in a worker is distinct per worker and per loader
    iterator, and follows `seed_everything`."""
    # Lightning adds its own worker_init_fn only when a loader has none: keep what it does.
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)
    dataset = get_worker_info().dataset
    if dataset.augment is not None:
        dataset.augment.reseed(torch.initial_seed())

