"""Training material for a spotter: windows of long recordings, labelled by what they show.

The recognition classes have no neutral one, so a model trained on them cannot say
"nothing here". A spotter learns it: from each recording of a long-video corpus
(`smic_e`, `casme_sq`, `samm_lv`, `casme3`), windows of `preprocess.depth` frames every
`data.windows.stride` frames, each labelled

- with the emotion of the annotated interval its centre lies in (the recognition class,
  so the same network spots and recognises: spot-then-recognise), or
- `none` where its centre lies in no annotated interval.

A window centred in an interval whose emotion is none of the classes (a SAMM-LV
macro-movement names none) is neither, and is left out. `none` windows outnumber the
others many times over; `data.windows.none_ratio` of them are kept per expression window,
drawn with `data.windows.seed` (stated in the run's params, so the set is made again
exactly). Each window is a clip record like any other: its subject is its recording's,
so `protocol=loso` holds subjects out, and the window's first frame is its reference,
as in `mer predict`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from mer.datasets.records import ClipRecord
from mer.common.errors import MerError

NONE = "none"


@dataclass(frozen=True)
class WindowSampling:
    depth: int  # the model's preprocess.depth
    stride: int = 5
    none_ratio: float = 2.0
    seed: int = 0

    def __post_init__(self):
        if self.depth < 1 or self.stride < 1 or self.none_ratio < 0:
            raise MerError("data.windows needs stride >= 1 and none_ratio >= 0 (and preprocess.depth >= 1)")


def spotting_windows(records: Sequence[ClipRecord], classes: Sequence[str], sampling: WindowSampling
                     ) -> list[ClipRecord]:
    """Window records of every recording in `records` (one record per annotated interval)."""
    if not classes or classes[0] != NONE:
        raise MerError(f"a spotter's data.classes start with {NONE!r} (got {list(classes)}), e.g. "
                       f"[{NONE}, negative, positive, surprise]")
    by_recording: dict = {}
    for record in records:
        if record.offset is None or record.onset is None:
            raise MerError(f"{record.path}: data.windows needs long recordings annotated with onset..offset "
                           "(data=smic_e, casme_sq, samm_lv, casme3 or their builtin_*)")
        by_recording.setdefault(record.path, []).append(record)
    rng = np.random.default_rng(sampling.seed)
    chosen: list[ClipRecord] = []
    for path in sorted(by_recording, key=str):
        intervals = by_recording[path]
        first = intervals[0]
        name = first.recording or path.name
        expressions, nones = [], []
        for start in range(0, len(first.frames) - sampling.depth + 1, sampling.stride):
            centre = start + sampling.depth // 2
            inside = [r for r in intervals if r.onset <= centre <= r.offset]
            if inside and inside[0].label not in classes:
                continue
            label = inside[0].label if inside else NONE
            window = replace(first, clip_id=f"{name}@{start}", label=label, onset=None, apex=centre, offset=None,
                             kind="", recording=name)
            (expressions if inside else nones).append(window)
        keep = min(len(nones), int(round(sampling.none_ratio * len(expressions))))
        picked = sorted(rng.choice(len(nones), keep, replace=False)) if keep else []
        chosen += expressions + [nones[i] for i in picked]
    if not any(r.label != NONE for r in chosen):
        raise MerError("no window lies in an annotated interval whose emotion is one of data.classes; check "
                       "data.classes and data.label_map")
    return chosen
