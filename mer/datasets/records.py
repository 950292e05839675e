"""One clip as every later stage sees it, whatever dataset it came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mer.preprocess.frames import FrameSource

# An annotated interval's type in long videos (the corpora's micro-expression / macro-expression).
MICRO, MACRO = "micro", "macro"


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
    offset: int | None = None  # the expression's last frame, where a long video annotates it
    # Long videos: MICRO or MACRO as the corpus annotates the interval, and the corpus frame rate.
    kind: str = ""
    fps: float | None = None
    recording: str = ""  # the long recording's name, unique in its corpus, where several intervals share it

    def open(self) -> FrameSource:
        return FrameSource(self.path, self.frames)


def natural_key(text: str) -> tuple:
    """Sorts s2 before s11, as people number subjects."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))
