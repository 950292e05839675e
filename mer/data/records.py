"""One clip as every later stage sees it, whatever dataset it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str  # unique within a dataset, e.g. "s1_po_01"
    subject: str  # e.g. "s1"
    label: str  # class name, e.g. "positive"
    frames: tuple[Path, ...] = field(repr=False)  # in temporal order
    apex: int | None = None  # index into `frames`, when the annotation gives it
    source: str = ""  # dataset name

    @property
    def folder(self) -> Path:
        return self.frames[0].parent
