"""The paper's holdout protocol: one stratified 80/20 split, made once, saved, reused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mer.data.records import ClipRecord
from mer.errors import MerError


def data_fingerprint(records: Sequence[ClipRecord]) -> str:
    """Identifies the set of clips and labels a split was made for."""
    text = "\n".join(sorted(f"{r.subject}/{r.clip_id}/{r.label}" for r in records))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def holdout_split(records: Sequence[ClipRecord], val_fraction: float, seed: int, stratify: bool = True,
                  subject_disjoint: bool = False) -> dict[str, list[str]]:
    """Clip ids for `train` and `val`. Stratified: each class gives round(n * fraction)
    clips to validation (SMIC-HS 70/51/43 -> 14/10/9 = 33 of 164, the paper's split).
    Subject-disjoint: whole subjects go to validation until the fraction is reached."""
    if not 0 < val_fraction < 1:
        raise MerError(f"protocol.val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    ids = sorted(r.clip_id for r in records)
    if subject_disjoint:
        subjects = sorted({r.subject for r in records})
        by_subject = {s: [r.clip_id for r in records if r.subject == s] for s in subjects}
        val: list[str] = []
        for s in (subjects[i] for i in rng.permutation(len(subjects))):
            if len(val) >= round(val_fraction * len(ids)):
                break
            val += by_subject[s]
    elif stratify:
        val = []
        for label in sorted({r.label for r in records}):
            members = sorted(r.clip_id for r in records if r.label == label)
            take = int(round(val_fraction * len(members)))
            val += [members[i] for i in rng.permutation(len(members))[:take]]
    else:
        val = [ids[i] for i in rng.permutation(len(ids))[: int(round(val_fraction * len(ids)))]]
    val_set = set(val)
    if not val_set or len(val_set) == len(ids):
        raise MerError(f"protocol.val_fraction={val_fraction} leaves an empty train or validation split for {len(ids)} clips")
    return {"train": [i for i in ids if i not in val_set], "val": sorted(val_set)}


def load_or_make_split(folder: Path, records: Sequence[ClipRecord], val_fraction: float, seed: int,
                       stratify: bool, subject_disjoint: bool) -> tuple[dict, Path]:
    """The split file for these clips and settings: reused when present, else made and
    saved atomically. The file name carries the data fingerprint, so other data never
    picks up a stale split."""
    fingerprint = data_fingerprint(records)
    kind = "subjects" if subject_disjoint else ("stratified" if stratify else "random")
    path = Path(folder) / f"holdout-{fingerprint}-{kind}-val{val_fraction:g}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text()), path
    split = {
        "protocol": "holdout",
        "data_fingerprint": fingerprint,
        "val_fraction": val_fraction,
        "seed": seed,
        "stratify": stratify,
        "subject_disjoint": subject_disjoint,
        **holdout_split(records, val_fraction, seed, stratify, subject_disjoint),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(split, indent=1))
    os.replace(tmp, path)
    return split, path
