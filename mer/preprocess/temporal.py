"""Temporal selection: `depth` frames around the apex (the paper's apex occurrence interval)."""

from __future__ import annotations

import numpy as np


def window_indices(n_frames: int, depth: int, apex: int | None = None) -> list[int]:
    """Indices of `depth` consecutive frames centred on `apex`, kept inside the clip.

    Without an annotated apex the clip centre is used: SMIC-HS clips are cut from
    onset to offset, so the centre is the best guess at the apex. A clip shorter
    than `depth` is stretched by repeating frames evenly (nearest-frame resampling),
    so the network always sees `depth` frames spanning the whole clip."""
    if n_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    if n_frames < depth:
        return np.round(np.linspace(0, n_frames - 1, depth)).astype(int).tolist()
    centre = n_frames // 2 if apex is None else int(np.clip(apex, 0, n_frames - 1))
    start = int(np.clip(centre - depth // 2, 0, n_frames - depth))
    return list(range(start, start + depth))
