"""Evaluation protocols as folds of clip ids: holdout (the paper's one stratified 80/20
split), leave-one-subject-out, stratified k-fold, and over the datasets of a composite
(each record's `source`) leave-one-dataset-out and cross-dataset. Each fold has `train`,
`test` and an optional inner `val` carved from the training clips for model selection.
Folds are made once, saved, and reused by every later run on the same clips."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold

from mer.datasets.records import ClipRecord, natural_key
from mer.common.errors import MerError
from mer.common.files import atomic_write_text, json_digest

PROTOCOLS = ("holdout", "loso", "kfold", "lodo", "cross")
# Protocols whose test part is whole datasets of a composite (data=megc_composite).
DATASET_PROTOCOLS = ("lodo", "cross")
# Bumped when the same settings would make other folds, so a split saved by older code is
# never reused for them. 2: k-fold and LOSO through scikit-learn, LOSO in natural subject order.
# 3: the inner validation split holds whole subjects out wherever the test part does.
SPLIT_SCHEME = 3
SELECTIONS = ("last", "val")


@dataclass(frozen=True)
class ProtocolSettings:
    """Mirrors `conf/protocol/*.yaml`."""

    name: str = "holdout"
    holdout_fraction: float = 0.2  # holdout: share of clips held out for the reported figure
    k: int = 5  # kfold
    split_seed: int = 0  # fixed apart from the training seed: every run sees the same folds
    stratify: bool = True
    subject_disjoint: bool = False  # holdout: whole subjects held out, from the test part and the inner val
    inner_val_fraction: float = 0.0  # share of each training part kept aside for selection
    selection: str = "last"  # which epoch is reported: the last, or the best on the inner val
    fold: int | None = None  # run one fold only (a Hydra multirun over protocol.fold runs them all)
    monitor_heldout: bool = True  # per-epoch heldout/* curves on the held-out clips, for monitoring only
    train: str | None = None  # cross: the dataset trained on; null: every dataset but `test`
    test: str | None = None  # cross: the dataset tested on; null: every dataset but `train`

    def __post_init__(self):
        if self.name not in PROTOCOLS:
            raise MerError(f"protocol.name={self.name!r} is unknown; choose one of {list(PROTOCOLS)}")
        if self.selection not in SELECTIONS:
            raise MerError(f"protocol.selection={self.selection!r} is unknown; choose one of {list(SELECTIONS)}")
        if self.selection == "val" and not self.inner_val_fraction > 0:
            raise MerError("protocol.selection=val needs protocol.inner_val_fraction > 0: the epoch is chosen on "
                           "clips carved from the training part, never on the test part")
        if not 0 < self.holdout_fraction < 1 or not 0 <= self.inner_val_fraction < 1:
            raise MerError("protocol.holdout_fraction must be in (0, 1) and protocol.inner_val_fraction in [0, 1)")
        if self.name == "kfold" and self.k < 2:
            raise MerError(f"protocol.k must be >= 2, got {self.k}")
        if self.subject_disjoint and self.name == "kfold":
            raise MerError("protocol.subject_disjoint=true cannot apply to protocol=kfold, whose folds are stratified "
                           "clips; use protocol=loso (one subject per fold) or protocol=holdout with subject_disjoint")
        if self.name == "cross" and self.train == self.test:
            raise MerError("protocol=cross needs protocol.train and protocol.test to name two datasets of the composite "
                           "(e.g. protocol.train=casme2 protocol.test=samm), or one of them with the other null for "
                           "every other dataset")
        if self.name != "cross" and (self.train is not None or self.test is not None):
            raise MerError(f"protocol.train / protocol.test choose datasets for protocol=cross, not protocol={self.name}")

    @property
    def holds_out_subjects(self) -> bool:
        """Whether test subjects are unseen in training: then validation subjects must be too,
        or selection on val/* has seen the validation subjects' other clips."""
        return self.name in ("loso", *DATASET_PROTOCOLS) or self.subject_disjoint

    def file_tag(self) -> str:
        # train/test only where set, so the protocols without them keep their file names.
        fields = {k: v for k, v in asdict(self).items() if k not in ("fold", "selection", "monitor_heldout")
                  and not (k in ("train", "test") and v is None)}
        fields["scheme"] = SPLIT_SCHEME
        return json_digest(fields, 8)


def data_fingerprint(records: Sequence[ClipRecord]) -> str:
    """Identifies the set of clips and labels a split was made for."""
    text = "\n".join(sorted(f"{r.subject}/{r.clip_id}/{r.label}" for r in records))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def clip_set_digest(clip_ids: Sequence[str]) -> str:
    """Identifies a set of clips (what a run was scored on), whatever their order."""
    return hashlib.sha256("\n".join(sorted(clip_ids)).encode()).hexdigest()[:12]


def holdout_split(records: Sequence[ClipRecord], fraction: float, seed: int, stratify: bool = True,
                  subject_disjoint: bool = False) -> tuple[list[str], list[str]]:
    """(kept, held-out) clip ids. Stratified: each class gives round(n * fraction) clips
    (SMIC-HS 70/51/43 -> 14/10/9 = 33 of 164, the paper's split). Subject-disjoint: whole
    subjects are held out until the fraction is reached."""
    rng = np.random.default_rng(seed)
    ids = sorted(r.clip_id for r in records)
    if subject_disjoint:
        subjects = sorted({r.subject for r in records})
        held: list[str] = []
        for s in (subjects[i] for i in rng.permutation(len(subjects))):
            if len(held) >= round(fraction * len(ids)):
                break
            held += [r.clip_id for r in records if r.subject == s]
    elif stratify:
        held = []
        for label in sorted({r.label for r in records}):
            members = sorted(r.clip_id for r in records if r.label == label)
            held += [members[i] for i in rng.permutation(len(members))[: int(round(fraction * len(members)))]]
    else:
        held = [ids[i] for i in rng.permutation(len(ids))[: int(round(fraction * len(ids)))]]
    held_set = set(held)
    if not held_set or len(held_set) == len(ids):
        raise MerError(f"a {fraction:g} split of {len(ids)} clips leaves one side empty; change the fraction")
    return [i for i in ids if i not in held_set], sorted(held_set)


def kfold_parts(records: Sequence[ClipRecord], k: int, seed: int, stratify: bool = True) -> list[list[str]]:
    """k disjoint test parts after a seeded shuffle, each class spread evenly over them when
    stratified (scikit-learn's StratifiedKFold, else KFold)."""
    if k > len(records):
        raise MerError(f"protocol.k={k} exceeds the {len(records)} clips")
    ordered = sorted(records, key=lambda r: r.clip_id)
    labels = [r.label for r in ordered]
    if stratify and min(Counter(labels).values()) < k:
        raise MerError(f"protocol.k={k} exceeds the clips of the smallest class ({min(Counter(labels).values())}): "
                       "lower protocol.k or set protocol.stratify=false")
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=seed)
    return [sorted(ordered[i].clip_id for i in test) for _, test in splitter.split(ordered, labels)]


def subject_parts(records: Sequence[ClipRecord]) -> list[tuple[str, list[str]]]:
    """(subject, its clip ids) per fold of scikit-learn's LeaveOneGroupOut, subjects in
    natural order (s2 before s11), as the data summary lists them."""
    subjects = sorted({r.subject for r in records}, key=natural_key)
    if len(subjects) < 2:
        raise MerError("protocol=loso needs at least two subjects")
    ordered = sorted(records, key=lambda r: r.clip_id)
    groups = [subjects.index(r.subject) for r in ordered]
    return [(subjects[groups[test[0]]], sorted(ordered[i].clip_id for i in test))
            for _, test in LeaveOneGroupOut().split(ordered, groups=groups)]


def dataset_parts(records: Sequence[ClipRecord], p: ProtocolSettings) -> list[tuple[str, list[str], list[str]]]:
    """(fold name, training clip ids, test clip ids) per fold, by each record's dataset: lodo
    holds each dataset out in turn; cross trains on `p.train` and tests on `p.test`."""
    datasets = sorted({r.source for r in records})
    if len(datasets) < 2:
        raise MerError(f"protocol={p.name} needs clips of several datasets: add data=builtin_composite, or "
                       f"data=megc_composite data.root=...; these clips are all from {datasets[0] or 'one dataset'}")

    def clips(names: set[str]) -> list[str]:
        return sorted(r.clip_id for r in records if r.source in names)

    if p.name == "lodo":
        return [(f"dataset={d}", clips(set(datasets) - {d}), clips({d})) for d in datasets]
    for key in ("train", "test"):
        if getattr(p, key) is not None and getattr(p, key) not in datasets:
            raise MerError(f"protocol.{key}={getattr(p, key)} is not a dataset of these clips; choose one of {datasets}")
    train = {p.train} if p.train is not None else set(datasets) - {p.test}
    test = {p.test} if p.test is not None else set(datasets) - {p.train}
    return [(f"train={'+'.join(sorted(train))} test={'+'.join(sorted(test))}", clips(train), clips(test))]


def make_folds(records: Sequence[ClipRecord], p: ProtocolSettings) -> list[dict]:
    if p.name in DATASET_PROTOCOLS:
        parts = dataset_parts(records, p)
    else:
        if p.name == "holdout":
            _, test = holdout_split(records, p.holdout_fraction, p.split_seed, p.stratify, p.subject_disjoint)
            tests = [("holdout", test)]
        elif p.name == "loso":
            tests = [(f"subject={s}", part) for s, part in subject_parts(records)]
        else:
            tests = [(f"fold={i}", part) for i, part in enumerate(kfold_parts(records, p.k, p.split_seed, p.stratify))]
        ids = {r.clip_id for r in records}
        parts = [(name, sorted(ids - set(test)), test) for name, test in tests]
    by_id = {r.clip_id: r for r in records}
    folds = []
    for index, (name, train, test) in enumerate(parts):
        val: list[str] = []
        if p.inner_val_fraction > 0:
            train, val = holdout_split([by_id[i] for i in train], p.inner_val_fraction, p.split_seed + 1 + index, p.stratify,
                                       subject_disjoint=p.holds_out_subjects)
        folds.append({"index": index, "name": name, "train": train, "val": val, "test": test})
    return folds


def load_or_make_folds(folder: Path, records: Sequence[ClipRecord], p: ProtocolSettings) -> tuple[dict, Path]:
    """The folds for these clips and settings: reused when present, else made and saved
    atomically. The file name carries the data fingerprint and the protocol settings,
    so other data or settings never pick up a stale split."""
    fingerprint = data_fingerprint(records)
    path = Path(folder) / f"{p.name}-{fingerprint}-{p.file_tag()}-seed{p.split_seed}.json"
    if path.is_file():
        return json.loads(path.read_text()), path
    document = {"protocol": asdict(p) | {"fold": None}, "data_fingerprint": fingerprint, "folds": make_folds(records, p)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(document, indent=1), "free space there or set paths.split_dir")
    return document, path
