"""SAMM indexer: `SAMM/006/006_1_2/006_05562.jpg` plus `SAMM_Micro_FACS_Codes_v2.xlsx`,
whose header (Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame,
Duration, Micro, Action Units, Estimated Emotion, Objective Classes, Notes) sits on
row 14 below a preamble; the header row is found by its column names.

Frame files carry absolute numbers (006_05562.jpg is frame 5562), as the Onset Frame /
Apex Frame cells do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.workbook_index import AnnotatedLayout, index_annotated, onset_apex_marks
from mer.datasets.records import ClipRecord

SAMM_CLASSES = ("anger", "contempt", "happiness", "surprise", "other")


SAMM = AnnotatedLayout(
    name="samm",
    title="SAMM",
    frames_folder="SAMM",
    annotation_file="SAMM_Micro_FACS_Codes_v2.xlsx",
    hint="SAMM/006/006_1_2/006_05562.jpg with SAMM_Micro_FACS_Codes_v2.xlsx beside SAMM/",
    subject_folder=re.compile(r"^(\d+)$"),
    subject_id=lambda n: f"{n:03d}",
    subject_column="Subject",
    filename_column="Filename",
    emotion_column="Estimated Emotion",
    mark_columns=("Onset Frame", "Apex Frame"),
    marks=onset_apex_marks("Onset Frame", "Apex Frame"),
)


def index_samm(root: Path, classes: Sequence[str] = SAMM_CLASSES, *, annotation: str | Path | None = None,
               label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """SAMM clips labelled by Estimated Emotion (renamed by `label_map` first)."""
    return index_annotated(SAMM, root, classes, annotation, label_map)
