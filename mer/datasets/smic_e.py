"""SMIC-E indexer (long videos): `HS/s01/s1_ne_01/image559700.jpg` plus
`SMIC-HS-E_annotation.xlsx` (Subject, Filename, OnsetF, OffsetF, FirstF, LastF, Emotion).

A clip is the whole long video; OnsetF / OffsetF are absolute frame numbers and FirstF
is the number of the video's first frame, so OnsetF - FirstF is the onset's index.
SMIC-E annotates no apex: the apex is taken as the centre of onset..offset, the frame
the SMIC-HS path centres on for a clip cut from onset to offset. Without it the window
would sit at the middle of the long video, possibly far from the micro-expression.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.workbook_index import AnnotatedLayout, Marks, SkipRow, frame_index, index_annotated
from mer.datasets.workbook import cell_int, cell_text
from mer.datasets.records import ClipRecord
from mer.datasets.smic_hs import SMIC_CLASSES


def _marks(row: Mapping[str, object], numbers: Sequence[int]) -> Marks:
    values = {}
    for column in ("FirstF", "OnsetF", "OffsetF"):
        values[column] = cell_int(row[column])
        if values[column] is None:
            raise SkipRow(f"{column} is {cell_text(row[column])!r}, not a frame number")
    first, onset, offset = values["FirstF"], values["OnsetF"], values["OffsetF"]
    if offset < onset:
        raise SkipRow(f"OffsetF {offset} comes before OnsetF {onset}")
    notes = []
    # Counting from FirstF keeps the onset right even if the files were renumbered.
    shift = numbers[0] - first
    if shift:
        notes.append(f"FirstF {first} differs from the first frame file ({numbers[0]}): frames are counted from FirstF")
    start, end = frame_index(numbers, onset + shift), frame_index(numbers, offset + shift)
    if start is None or end is None:
        raise SkipRow(f"OnsetF..OffsetF {onset}..{offset} is not inside the video's frames "
                      f"{numbers[0] - shift}..{numbers[-1] - shift} (FirstF {first})")
    return Marks(start, start + (end - start + 1) // 2, tuple(notes), end)


SMIC_E = AnnotatedLayout(
    name="smic_e",
    title="SMIC-E",
    frames_folder="HS",
    annotation_file="SMIC-HS-E_annotation.xlsx",
    hint="HS/s01/s1_ne_01/image559700.jpg with SMIC-HS-E_annotation.xlsx beside HS/",
    subject_folder=re.compile(r"^s(\d+)$", re.IGNORECASE),
    subject_id=lambda n: f"s{n}",
    subject_column="Subject",
    filename_column="Filename",
    emotion_column="Emotion",
    mark_columns=("OnsetF", "OffsetF", "FirstF"),
    marks=_marks,
)


def index_smic_e(root: Path, classes: Sequence[str] = SMIC_CLASSES, *, annotation: str | Path | None = None,
                 label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """SMIC-E long videos with the annotated onset and the onset..offset centre as apex."""
    return index_annotated(SMIC_E, root, classes, annotation, label_map)
