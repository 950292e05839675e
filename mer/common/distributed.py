"""Several processes training one model (Lightning DDP, SLURM tasks): which process is
global rank zero, the only one that writes the record, and how the held-out clips are
shared out so that every clip is scored exactly once."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

# Set by torchrun (RANK), SLURM's srun (SLURM_PROCID) and Lightning's own DDP launcher,
# which starts ranks 1.. as child processes with LOCAL_RANK (and NODE_RANK across nodes).
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")


def is_global_rank_zero() -> bool:
    """Known from the environment before any process group exists: the MLflow run is
    created before Lightning starts the other ranks."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


class ShardSampler:
    """Clips rank, rank + world, rank + 2 world, ... of a dataset in its order (a sampler
    for torch's DataLoader). Unlike torch's DistributedSampler it never pads the last
    shard with repeated clips, which would count those clips twice in the held-out figures.
    No torch import here: the launching process of a sweep reads `is_global_rank_zero`."""

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def interleave_shards(shards: Sequence):
    """Per-rank rows (tensors) of `ShardSampler`'s shards, back in the dataset's order."""
    import torch

    size = sum(len(shard) for shard in shards)
    rows = [shards[position % len(shards)][position // len(shards)] for position in range(size)]
    return torch.stack(rows) if rows else torch.cat(list(shards))
