"""LightningDataModule serving one fold's preprocessed clips from the cache."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mer.data.augment import ClipAugmenter
from mer.data.cache import ClipCache
from mer.data.records import ClipRecord


class ClipDataset(Dataset):
    """uint8 clips in memory; each item is a (1, depth, H, W) clip, still in the cache's 0-255
    values, and its label. ClipDataModule turns whole batches into floats in [0, 1]."""

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
    """`fold` holds clip ids for `train`, `test` and an optional inner `val`. Without an
    inner val, the per-epoch validation runs on the test part for monitoring only; the
    reported model is then the last epoch, so nothing is selected on test clips."""

    def __init__(self, cache: ClipCache, records: Sequence[ClipRecord], classes: Sequence[str], fold: dict,
                 batch_size: int = 20, num_workers: int = 0, augment: ClipAugmenter | None = None):
        super().__init__()
        self.cache = cache
        self.by_id = {r.clip_id: r for r in records}
        self.classes = list(classes)
        self.fold = fold
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.datasets: dict[str, ClipDataset] = {}

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

    def _loader(self, part: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(self.datasets[part], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # One conversion per batch, on the device: bytes are a quarter of floats to collate
        # and to copy to a GPU.
        clips, labels = batch
        return clips.float().div_(255.0), labels

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val" if "val" in self.datasets else "test")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
