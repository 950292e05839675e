"""MicroExpSTCNN (Reddy et al. 2019), the baseline the paper modifies."""

from __future__ import annotations

import torch
from torch import nn

from mer.models.init import initialise
from mer.models.mer3dcnn import _flat_features


class MicroExpSTCNN(nn.Module):
    """Conv3d(32, 3x3 spatial x 15 temporal) -> MaxPool3d(3) -> Dropout -> Dense(128) ->
    Dropout -> Dense(classes). Input (N, 1, depth, size, size), 1x18x64x64 in the original.
    `init` is `mer.models.init`'s scheme: "keras" (default, as the original) or "torch"."""

    def __init__(self, num_classes: int = 3, depth: int = 18, size: int = 64, dropout: float = 0.5,
                 channels: int = 32, temporal_kernel: int = 15, hidden: int = 128,
                 init: str = "keras"):
        super().__init__()
        if temporal_kernel > depth:
            raise ValueError(f"model.temporal_kernel={temporal_kernel} exceeds preprocess.depth={depth}")
        self.features = nn.Sequential(
            nn.Conv3d(1, channels, kernel_size=(temporal_kernel, 3, 3)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(_flat_features(self.features, depth, size), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
