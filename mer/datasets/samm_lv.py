"""SAMM Long Videos indexer (200 fps): `SAMM_longvideos/006_1/006_1_0001.jpg` plus
`SAMM_LongVideos_V*_Release.xlsx` (V1-V3; the highest version present is read), sheet
`FACS_Movement_Only`, whose header (Subject, Filename, Inducement Code, Onset, Apex,
Offset, Duration, Type, Action Units, Notes) sits on row 10 below a preamble and is found
by its column names. Filename `006_1_2` is the second movement of recording `006_1`;
Type is `Micro - 1/2` or `Macro`. Frame numbers count from 1, as the files do.

The long-video sheet names no emotion. Micro-expressions get theirs from SAMM's own
`SAMM_Micro_FACS_Codes_v2.xlsx` where it is given (`data.emotions`, or found beside the
workbook), matched on Filename, as ME-TST's `load_excel.py` merges the two.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.long_videos import IntervalRow, interval_records, kind_of, require_records
from mer.datasets.records import MICRO, ClipRecord
from mer.datasets.samm import SAMM, SAMM_CLASSES
from mer.datasets.workbook import cell_number_in, cell_text, read_table
from mer.datasets.workbook_index import SkipRow, find_child
from mer.common.errors import MerError

FPS = 200.0
FRAMES_FOLDER = "SAMM_longvideos"
SHEET = "FACS_Movement_Only"
COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "Type")
HINT = "SAMM_longvideos/006_1/006_1_0001.jpg with SAMM_LongVideos_V2_Release.xlsx beside SAMM_longvideos/"
MICRO_WORDS = ("micro - 1/2", "micro")
MACRO_WORDS = ("macro",)
_VERSION = re.compile(r"^samm_longvideos_v(\d+).*\.xlsx$", re.IGNORECASE)


def workbook_in(root: Path) -> Path | None:
    """The highest-versioned `SAMM_LongVideos_V*.xlsx` in `root`."""
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _VERSION.match(p.name)) and p.is_file()]
    return max(found)[1] if found else None


def micro_emotions(path: Path) -> dict[str, object]:
    """Filename -> Estimated Emotion, from SAMM's micro-expression workbook."""
    table = read_table(path, (SAMM.filename_column, SAMM.emotion_column))
    return {cell_text(row[SAMM.filename_column]): row[SAMM.emotion_column] for _, row in table.rows}


def index_samm_lv(root: Path, classes: Sequence[str] = SAMM_CLASSES, *, annotation: str | Path | None = None,
                  emotions: str | Path | None = None, label_map: Mapping[str, str] | None = None
                  ) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Every micro- and macro-movement interval of SAMM Long Videos; micro-expressions carry
    the emotion SAMM's micro workbook gives them, macro ones none."""
    root = Path(root).expanduser()
    frames_root = find_child(root, FRAMES_FOLDER) if root.is_dir() else None
    if frames_root is None or not frames_root.is_dir():
        raise MerError(f"data.root={root} holds no {FRAMES_FOLDER}/; point it at a SAMM Long Videos tree ({HINT})")
    path = root / annotation if annotation is not None else workbook_in(root)
    if path is None or not path.is_file():
        raise MerError(f"{path or root}: no SAMM_LongVideos_V*.xlsx; put it next to {FRAMES_FOLDER}/ or set "
                       "data.annotation=/path/to/it")
    emotion_file = root / emotions if emotions is not None else find_child(root, SAMM.annotation_file)
    if emotions is not None and not emotion_file.is_file():
        raise MerError(f"data.emotions={emotion_file} does not exist; point it at {SAMM.annotation_file}")
    by_filename = micro_emotions(emotion_file) if emotion_file is not None and emotion_file.is_file() else {}
    table = read_table(path, COLUMNS, sheet=SHEET)
    rows, problems = [], []
    for number, row in table.rows:
        filename = cell_text(row["Filename"])
        where = f"{path} row {number} ({filename or 'no Filename'})"
        try:
            parts = filename.split("_")
            if len(parts) < 2:
                raise SkipRow(f"Filename {filename!r} is not <subject>_<recording>_<movement>, e.g. 006_1_2")
            name = "_".join(parts[:2])
            video = find_child(frames_root, name)
            if video is None or not video.is_dir():
                raise SkipRow(f"no recording folder {frames_root / name}")
            # Subject cells hold 6, '006' or '6': the folder names pad to three digits.
            number_in = cell_number_in(row["Subject"])
            number_in = cell_number_in(parts[0]) if number_in is None else number_in
            if number_in is None:
                raise SkipRow(f"Subject {cell_text(row['Subject'])!r} has no subject number")
            subject = f"{number_in:03d}"
            kind = kind_of(row["Type"], MICRO_WORDS, MACRO_WORDS)
        except SkipRow as problem:
            problems.append((where, f"skipped: {problem}"))
            continue
        emotion = by_filename.get(filename) if kind == MICRO else None
        rows.append(IntervalRow(where, subject, name, video, row["Onset"], row["Apex"], row["Offset"], kind, emotion))
    records, notes = interval_records(rows, "samm_lv", FPS, classes, label_map)
    return require_records(records, problems + notes, "SAMM Long Videos", root, HINT)
