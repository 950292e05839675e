"""The paper's network (Irawan et al., Table II), shapes derived from the input size."""

from __future__ import annotations

import torch
from torch import nn


def _flat_features(features: nn.Module, depth: int, size: int) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, 1, depth, size, size)).numel())


class MER3DCNN(nn.Module):
    """Conv3d(32, 3x3x3) -> MaxPool3d(3) -> Dropout -> MaxPool3d(2) -> Dropout -> Flatten
    -> Dropout -> Dense(32) -> Dropout -> Dense(classes). Input (N, 1, depth, size, size);
    returns logits (softmax lives in the loss). 452,611 parameters at 1x10x128x128, 3 classes."""

    def __init__(self, num_classes: int = 3, depth: int = 10, size: int = 128, dropout: float = 0.3,
                 channels: int = 32, hidden: int = 32):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.features = nn.Sequential(
            nn.Conv3d(1, channels, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3),
            nn.Dropout(dropout),
            nn.MaxPool3d(2),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(_flat_features(self.features, depth, size), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
