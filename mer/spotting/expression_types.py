"""Micro vs macro, in seconds: the MEGC convention, computed from a recording's frame rate.

An expression is micro when it lasts at most `micro_max_s` (0.5 s), macro otherwise. Its
duration is the time from its onset frame to its offset frame, (offset - onset) / fps: at
30 fps (CAS(ME)^2, CAS(ME)^3) a micro-expression spans at most 16 frames, the upper length
of the MEGC 2020 baseline's CAS(ME)^2 filter (7-16 frames); at 200 fps (SAMM Long Videos)
at most 101 frames (that baseline's SAMM-LV filter keeps 47-105)."""

from __future__ import annotations

from dataclasses import dataclass

from mer.datasets.records import MACRO, MICRO
from mer.common.errors import MerError

TYPES = (MICRO, MACRO)


@dataclass(frozen=True)
class ExpressionTypes:
    micro_max_s: float = 0.5

    def __post_init__(self):
        if not self.micro_max_s > 0:
            raise MerError(f"spotting.micro_max_s must be > 0 seconds (got {self.micro_max_s})")

    def of(self, onset: int, offset: int, fps: float) -> str:
        """MICRO or MACRO for the inclusive frame interval onset..offset at `fps`."""
        if not fps or fps <= 0:
            raise MerError(f"micro vs macro needs the recording's frame rate (got fps={fps}); give --fps or data.fps")
        if offset < onset:
            raise MerError(f"interval {onset}-{offset} ends before it starts")
        # A hair of slack: 15 frame steps at 30 fps are 0.5 s, not 0.5000000001.
        return MICRO if (offset - onset) / fps <= self.micro_max_s + 1e-9 else MACRO
