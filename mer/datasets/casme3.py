"""CAS(ME)^3 part A indexer (long videos, 30 fps): `part_A/spNO.1/a/color/0.jpg` (unpadded
frame numbers from 0; a `depth/` folder beside `color/` is not read) plus
`CAS(ME)3_part_A_v2.xls` (or a `.xlsx` copy), read by column position below its header
row as SFAMNet's `load_data.py` reads it: subject, video, onset, apex, offset, action units,
type (`Micro-expression` / `Macro-expression`), objective class.

Emotions come from `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` where it is given
(`data.emotions`, or found beside the workbook): subject, video, onset, apex, offset,
action units, objective class, emotion, matched on the first five. Its name says its
numbers are the jpg files' numbers, and both workbooks are read that way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.long_videos import IntervalRow, frame_cell, interval_records, kind_of, require_records
from mer.datasets.records import ClipRecord
from mer.datasets.workbook import cell_text, sheet_values
from mer.datasets.workbook_index import SkipRow, find_child
from mer.common.errors import MerError

FPS = 30.0
FRAMES_FOLDER = "part_A"
WORKBOOKS = ("CAS(ME)3_part_A_v2.xls", "CAS(ME)3_part_A_v2.xlsx")
EMOTIONS = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
HINT = "part_A/spNO.1/a/color/0.jpg with CAS(ME)3_part_A_v2.xls beside part_A/"
MICRO_WORDS = ("micro-expression", "micro")
MACRO_WORDS = ("macro-expression", "macro")
CASME3_CLASSES = ("anger", "disgust", "fear", "happy", "sad", "surprise", "others")


def _key(row: Sequence[object]) -> tuple:
    """(subject, video, onset, apex, offset) as both workbooks spell them."""
    def number(cell: object) -> int | None:
        try:
            return frame_cell(cell, "")[0]
        except SkipRow:
            return None

    return (cell_text(row[0]).lower(), cell_text(row[1]).lower(), *(number(cell) for cell in row[2:5]))


def emotions_by_interval(path: Path) -> dict[tuple, object]:
    return {_key(row): row[7] for row in sheet_values(path)[1:] if len(row) >= 8 and cell_text(row[0])}


def index_casme3(root: Path, classes: Sequence[str] = CASME3_CLASSES, *, annotation: str | Path | None = None,
                 emotions: str | Path | None = None, label_map: Mapping[str, str] | None = None
                 ) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Every micro- and macro-expression interval of CAS(ME)^3 part A's long videos."""
    root = Path(root).expanduser()
    frames_root = find_child(root, FRAMES_FOLDER) if root.is_dir() else None
    if frames_root is None or not frames_root.is_dir():
        raise MerError(f"data.root={root} holds no {FRAMES_FOLDER}/; point it at a CAS(ME)^3 tree ({HINT})")
    if annotation is not None:
        path = root / annotation
    else:
        path = next((p for p in (find_child(root, name) for name in WORKBOOKS) if p is not None), None)
    if path is None or not path.is_file():
        raise MerError(f"{path or root / WORKBOOKS[0]} does not exist; put {WORKBOOKS[0]} next to {FRAMES_FOLDER}/ "
                       "or set data.annotation=/path/to/it")
    emotion_file = root / emotions if emotions is not None else find_child(root, EMOTIONS)
    if emotions is not None and not emotion_file.is_file():
        raise MerError(f"data.emotions={emotion_file} does not exist; point it at {EMOTIONS}")
    by_interval = emotions_by_interval(emotion_file) if emotion_file is not None and emotion_file.is_file() else {}
    rows, problems = [], []
    for number, row in enumerate(sheet_values(path)[1:], start=2):
        row = tuple(row) + (None,) * (8 - len(row))
        if all(cell_text(c) == "" for c in row):
            continue
        subject, video = cell_text(row[0]), cell_text(row[1])
        where = f"{path} row {number} ({subject}/{video})"
        try:
            folder = find_child(frames_root, subject) if subject else None
            if folder is None or not folder.is_dir():
                raise SkipRow(f"no subject folder {frames_root / (subject or '?')}")
            recording = find_child(folder, video) if video else None
            colour = find_child(recording, "color") if recording is not None and recording.is_dir() else None
            if colour is None or not colour.is_dir():
                raise SkipRow(f"no recording folder {folder / (video or '?') / 'color'}")
            kind = kind_of(row[6], MICRO_WORDS, MACRO_WORDS)
        except SkipRow as problem:
            problems.append((where, f"skipped: {problem}"))
            continue
        rows.append(IntervalRow(where, folder.name, f"{folder.name}_{recording.name}", colour, row[2], row[3], row[4],
                                kind, by_interval.get(_key(row))))
    records, notes = interval_records(rows, "casme3", FPS, classes, label_map)
    return require_records(records, problems + notes, "CAS(ME)^3 part A", root, HINT)
