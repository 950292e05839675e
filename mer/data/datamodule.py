"""LightningDataModule serving one fold's preprocessed clips from the cache."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mer.data.augment import ClipAugmenter, seed_worker
from mer.data.cache import ClipCache
from mer.datasets.records import ClipRecord
from mer.common.distributed import ShardSampler
from mer.data.scaling import NetworkInput, input_scaling, scaling_mode


class ClipDataset(Dataset):
    """uint8 clips in memory; each item is a (1, depth, H, W) clip, still in the cache's 0-255
    values, and its label. ClipDataModule turns whole batches into floats (`data.input_scaling`,
    `data.input`)."""

    def __init__(self, clips: np.ndarray, labels: Sequence[int], augment: ClipAugmenter | None = None):
        self.clips = clips
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        clip = self.clips[index]
        if self.augment is not None:
            clip = self.augment(clip)
        return torch.from_numpy(np.ascontiguousarray(clip))[None], self.labels[index]


class ClipDataModule(pl.LightningDataModule):
    """`fold` holds clip ids for `train`, `test` (the held-out clips) and an optional inner
    `val` carved from the training clips. The validation loop runs over `val_stages`: `val`
    when the fold has one, and `heldout` (the test clips, for per-epoch monitoring curves
    only) when `monitor_heldout` is set. Only `val` may drive selection or callbacks."""

    def __init__(self, cache: ClipCache, records: Sequence[ClipRecord], classes: Sequence[str], fold: dict,
                 batch_size: int = 20, num_workers: int = 0, augment: ClipAugmenter | None = None,
                 monitor_heldout: bool = True, scaling: str = "unit", input: str = "frames", seed: int = 0):
        super().__init__()
        self.cache = cache
        self.by_id = {r.clip_id: r for r in records}
        self.classes = list(classes)
        self.fold = fold
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment or None
        # The training clips' order draws from a generator of its own, saved in checkpoints
        # (state_dict): a resumed run sees the order an uninterrupted one would have.
        self.seed = seed
        self.train_order = torch.Generator().manual_seed(seed)
        self.val_stages = (["val"] if fold["val"] else []) + (["heldout"] if monitor_heldout else [])
        self.datasets: dict[str, ClipDataset] = {}
        self.scaling = scaling_mode(scaling)
        # unit's numbers until `fit_scaling` sees the training clips.
        self.network_input = NetworkInput(input=input)

    def records(self, part: str) -> list[ClipRecord]:
        return [self.by_id[i] for i in self.fold[part]]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        index = {c: i for i, c in enumerate(self.classes)}
        for part in ("train", "val", "test"):
            members = self.records(part)
            if members:
                self.datasets[part] = ClipDataset(np.stack([self.cache.load(r) for r in members]),
                                                  [index[r.label] for r in members],
                                                  self.augment if part == "train" else None)
        self.fit_scaling(self.datasets["train"].clips)

    def _loader(self, part: str, shuffle: bool = False) -> DataLoader:
        dataset = self.datasets[part]
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = None
        if world > 1:
            # Chosen here, not by Lightning (the DDP configs set use_distributed_sampler=false):
            # its sampler pads every part, repeating held-out clips in the figures.
            rank = self.trainer.global_rank
            sampler = (DistributedSampler(dataset, world, rank, shuffle=True, seed=self.seed) if shuffle
                       else ShardSampler(len(dataset), rank, world))
        # Without an augmenter, no worker_init_fn: Lightning then adds its own.
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          worker_init_fn=seed_worker if dataset.augment is not None else None,
                          generator=self.train_order if shuffle else None)

    def state_dict(self) -> dict:
        # The input scaling travels too: `mer predict` must scale a new video's windows
        # exactly as this fold's clips were (mean_max takes its numbers from them).
        return {"train_order": self.train_order.get_state(), "input_offset": self.network_input.offset,
                "input_scale": self.network_input.scale}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_order" in state_dict:
            self.train_order.set_state(state_dict["train_order"])

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # One conversion per batch, on the device: bytes are a quarter of floats to collate
        # and to copy to a GPU.
        clips, labels = batch
        return self.network_input(clips), labels

    def fit_scaling(self, train_clips: np.ndarray) -> None:
        """Fix the input scaling from this fold's training clips; every part then uses it."""
        offset, scale = input_scaling(train_clips, self.scaling)
        self.network_input = replace(self.network_input, offset=offset, scale=scale)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader("test" if stage == "heldout" else stage) for stage in self.val_stages]

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
