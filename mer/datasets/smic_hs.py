"""SMIC-HS indexer: `HS/s{N}/micro/{negative,positive,surprise}/s{N}_{ne,po,sur}_{NN}/image{6d}.bmp`."""

from __future__ import annotations

import re
from pathlib import Path

from mer.datasets.records import ClipRecord
from mer.common.errors import MerError
from mer.preprocess.frames import list_frames

SMIC_CLASSES = ("negative", "positive", "surprise")
_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)
LAYOUT_HINT = "HS/s1/micro/negative/s1_ne_01/image000001.bmp"


def hs_folder(root: Path) -> Path:
    """Accept either the folder holding `HS/` or `HS/` itself."""
    root = Path(root).expanduser()
    if not root.exists():
        raise MerError(f"data.root={root} does not exist; point it at a SMIC-HS tree ({LAYOUT_HINT})")
    for candidate in (root / "HS", root):
        if candidate.is_dir() and any(p.is_dir() and _SUBJECT.match(p.name) for p in candidate.iterdir()):
            return candidate
    raise MerError(f"data.root={root} holds no SMIC-HS subject folders; expected the layout {LAYOUT_HINT}")


def index_smic_hs(root: Path, classes=SMIC_CLASSES) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Clip records and (path, "skipped: reason") for every folder that cannot be used."""
    hs = hs_folder(root)
    records, skipped = [], []
    for subject_dir in sorted((p for p in hs.iterdir() if _SUBJECT.match(p.name)), key=lambda p: int(p.name[1:])):
        subject = subject_dir.name.lower()
        micro = subject_dir / "micro"
        if not micro.is_dir():
            skipped.append((str(subject_dir), "skipped: no micro/ folder"))
            continue
        for label_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            label = label_dir.name.lower()
            if label not in classes:
                skipped.append((str(label_dir), f"skipped: class {label!r} is not one of {list(classes)}"))
                continue
            for clip_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
                frames = list_frames(clip_dir)
                if not frames:
                    skipped.append((str(clip_dir), "skipped: no frame images"))
                    continue
                records.append(ClipRecord(clip_dir.name, subject, label, clip_dir, tuple(frames), source="smic_hs"))
    if not records:
        raise MerError(f"data.root={root}: no usable SMIC-HS clips found (expected {LAYOUT_HINT})")
    return records, skipped
