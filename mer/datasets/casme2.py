"""CASME II indexer: `CASME2_RAW_selected/sub01/EP02_01f/img46.jpg` plus
`CASME2-coding-20140508.xlsx` (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
Action Units, Estimated Emotion).

Frame files carry absolute numbers (img46.jpg is frame 46), the same numbers as the
OnsetFrame / ApexFrame cells. A few ApexFrame cells hold '/': those clips are kept
without an apex (the window is then centred on the clip, which runs onset to offset)
and reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.workbook_index import AnnotatedLayout, index_annotated, onset_apex_marks
from mer.datasets.records import ClipRecord

CASME2_CLASSES = ("happiness", "disgust", "repression", "surprise", "others")


CASME2 = AnnotatedLayout(
    name="casme2",
    title="CASME II",
    frames_folder="CASME2_RAW_selected",
    annotation_file="CASME2-coding-20140508.xlsx",
    hint="CASME2_RAW_selected/sub01/EP02_01f/img46.jpg with CASME2-coding-20140508.xlsx beside CASME2_RAW_selected/",
    subject_folder=re.compile(r"^sub(\d+)$", re.IGNORECASE),
    subject_id=lambda n: f"sub{n:02d}",
    subject_column="Subject",
    filename_column="Filename",
    emotion_column="Estimated Emotion",
    mark_columns=("OnsetFrame", "ApexFrame"),
    marks=onset_apex_marks("OnsetFrame", "ApexFrame"),
    # Episode names (EP02_01f) repeat across subjects.
    clip_id=lambda subject, folder: f"{subject}_{folder}",
)


def index_casme2(root: Path, classes: Sequence[str] = CASME2_CLASSES, *, annotation: str | Path | None = None,
                 label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """CASME II clips labelled by Estimated Emotion (renamed by `label_map` first)."""
    return index_annotated(CASME2, root, classes, annotation, label_map)
