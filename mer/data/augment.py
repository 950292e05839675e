"""Clip-consistent augmentation with albumentations (training split only)."""

from __future__ import annotations

from typing import Sequence

import albumentations as A
import numpy as np
from hydra.utils import instantiate


class ClipAugmenter:
    """Applies one sampled transform to all frames of a clip: albumentations' `images=`
    target shares the sampled parameters across the images it is given."""

    def __init__(self, transforms: Sequence, seed: int):
        self.compose = A.Compose(list(transforms), seed=seed)

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        return np.asarray(self.compose(images=clip)["images"])


def build_augmenter(augment_cfg, seed: int) -> ClipAugmenter | None:
    transforms = [instantiate(t) for t in (augment_cfg or {}).get("transforms", [])]
    return ClipAugmenter(transforms, seed) if transforms else None
