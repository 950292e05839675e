"""One clip as every later stage sees it, whatever dataset it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mer.preprocess.frames import FrameSource


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str  # unique within a dataset, e.g. "s1_po_01"
    subject: str  # e.g. "s1"
    label: str  # class name, e.g. "positive"
    path: Path  # the clip's frame folder or video file
    frames: tuple[Path, ...] = field(default=(), repr=False)  # in temporal order; empty for a video
    onset: int | None = None  # indices from the clip's first frame, when annotated
    apex: int | None = None
    source: str = ""  # dataset name
    offset: int | None = None  # the micro-expression's last frame, where a long video annotates it

    def open(self) -> FrameSource:
        return FrameSource(self.path, self.frames)


def natural_key(text: str) -> tuple:
    """Sorts s2 before s11, as people number subjects."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))
