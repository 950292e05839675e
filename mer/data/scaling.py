"""How uint8 clips become the network's floats: (clip - offset) / scale, and for a spotter
optionally each frame minus the clip's first one. One function (`NetworkInput`) for
training and for both serving runtimes, so what a network was trained on and what it is
served cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mer.common.errors import MerError

SCALINGS = ("unit", "mean_max")
# frames: the scaled frames (the paper). difference: each scaled frame minus the clip's
# first (its reference: a window's start, a clip's onset): what moved, not whose face it is.
INPUTS = ("frames", "difference")


def scaling_mode(mode: str) -> str:
    if mode not in SCALINGS:
        raise MerError(f"data.input_scaling must be one of {', '.join(SCALINGS)}, got {mode!r}")
    return mode


def input_mode(mode: str) -> str:
    if mode not in INPUTS:
        raise MerError(f"data.input must be one of {', '.join(INPUTS)}, got {mode!r}")
    return mode


def input_scaling(train_clips: np.ndarray, mode: str) -> tuple[float, float]:
    """(offset, scale) for `mode`. unit: (0, 255), the paper's [0, 1]. mean_max: MicroExpSTCNN's
    `set -= mean(set); set /= max(set)`, both numbers from the training clips alone so that no
    held-out clip shapes its own input."""
    if scaling_mode(mode) == "unit":
        return 0.0, 255.0
    offset = float(np.mean(train_clips, dtype=np.float64))
    # max(x - mean) is max(x) - mean: no float copy of the whole training set.
    scale = float(np.max(train_clips)) - offset
    if not scale > 0:
        raise MerError("data.input_scaling=mean_max needs training clips that are not all one value")
    return offset, scale


@dataclass(frozen=True)
class NetworkInput:
    offset: float = 0.0
    scale: float = 255.0
    input: str = "frames"

    def __post_init__(self):
        input_mode(self.input)

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 1, depth, H, W) uint8 -> float32, on the clips' device."""
        x = clips.float().sub_(self.offset).div_(self.scale)
        if self.input == "difference":
            x = x - x[:, :, :1]
        return x
