"""LightningDataModule serving preprocessed clips from the cache, split by the protocol."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mer.data.augment import ClipAugmenter
from mer.data.cache import CacheReport, ClipCache
from mer.data.records import ClipRecord
from mer.data.splits import load_or_make_split
from mer.errors import MerError

log = logging.getLogger(__name__)


class ClipDataset(Dataset):
    """uint8 clips in memory; each item is (1, depth, H, W) float in [0, 1] and its label."""

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
        return torch.from_numpy(np.ascontiguousarray(clip))[None].float().div_(255.0), self.labels[index]


class ClipDataModule(pl.LightningDataModule):
    def __init__(self, records: Sequence[ClipRecord], cache: ClipCache, classes: Sequence[str], split_dir: Path,
                 val_fraction: float = 0.2, split_seed: int = 0, stratify: bool = True, subject_disjoint: bool = False,
                 batch_size: int = 20, num_workers: int = 0, preprocess_workers: int | None = None, progress: bool = True,
                 augment: ClipAugmenter | None = None):
        super().__init__()
        self.records = list(records)
        self.cache = cache
        self.classes = list(classes)
        self.split_dir = Path(split_dir)
        self.split_args = dict(val_fraction=val_fraction, seed=split_seed, stratify=stratify, subject_disjoint=subject_disjoint)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.preprocess_workers = preprocess_workers
        self.progress = progress
        self.augment = augment
        self.report: CacheReport | None = None
        self.split: dict | None = None
        self.split_path: Path | None = None
        self.datasets: dict[str, ClipDataset] = {}

    def prepare_data(self) -> None:
        self.report = self.cache.build(self.records, self.preprocess_workers, self.progress)
        for record, reason in self.report.failed:
            log.warning("skipped clip %s (%s): %s", record.clip_id, record.path, reason)
        if not self.report.ok:
            raise MerError(f"no clip could be preprocessed; reasons are listed in {self.cache.failures_path}")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.report is None:
            self.prepare_data()
        good = sorted(self.report.ok, key=lambda r: r.clip_id)
        self.split, self.split_path = load_or_make_split(self.split_dir, good, **self.split_args)
        by_id = {r.clip_id: r for r in good}
        for part in ("train", "val"):
            members = [by_id[i] for i in self.split[part]]
            index = {c: i for i, c in enumerate(self.classes)}
            self.datasets[part] = ClipDataset(np.stack([self.cache.load(r) for r in members]),
                                              [index[r.label] for r in members],
                                              self.augment if part == "train" else None)

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[part], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    # The paper's protocol has one held-out split: it is both the per-epoch validation
    # and the final evaluation. Model selection therefore defaults to the last epoch.
    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
