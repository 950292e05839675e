"""How uint8 clips become the network's floats: (clip - offset) / scale."""

from __future__ import annotations

import numpy as np

from mer.errors import MerError

SCALINGS = ("unit", "mean_max")


def scaling_mode(mode: str) -> str:
    if mode not in SCALINGS:
        raise MerError(f"data.input_scaling must be one of {', '.join(SCALINGS)}, got {mode!r}")
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
