"""CAS(ME)^2 indexer (long videos, 30 fps): `rawpic/s15/15_0101disgustingteeth/img001.jpg`
plus `CAS(ME)^2code_final.xlsx`, read as the MEGC loaders read it (SoftNet-SpotME
`load_label.py`, MTSN `load_gt.py`):

- sheet `CASFEcode_final` (some loaders ask for `CASMEcode_final`), no header, nine
  columns: subject index, expression code (`anger1_1`), onset, apex, offset, action units,
  emotion, type (`micro-expression` / `macro-expression`), self-report;
- sheet `naming rule1`: subject index -> subject folder (`15, s15, 1`: folder in column 2,
  index in column 3);
- sheet `naming rule2`: video code (text, column 1) -> the expression name the code column
  starts with (column 2), e.g. `'0401', anger1`.

A recording's folder is `<subject number>_<video code><description>` under its subject
folder; frames are `img` + their number (padded to 3 digits, 4 past 999), counted from 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.long_videos import IntervalRow, interval_records, kind_of, require_records
from mer.datasets.records import ClipRecord
from mer.datasets.workbook import cell_int, cell_text, sheet_values
from mer.datasets.workbook_index import SkipRow, find_child
from mer.common.errors import MerError

FPS = 30.0
FRAMES_FOLDER = "rawpic"
WORKBOOK = "CAS(ME)^2code_final.xlsx"
CODE_SHEETS = ("CASFEcode_final", "CASMEcode_final")
SUBJECT_SHEET, VIDEO_SHEET = "naming rule1", "naming rule2"
HINT = "rawpic/s15/15_0101disgustingteeth/img001.jpg with CAS(ME)^2code_final.xlsx beside rawpic/"
# The type column's words, and the looser spellings hand-typed copies use.
MICRO_WORDS = ("micro-expression", "micro")
MACRO_WORDS = ("macro-expression", "macro")
CASME_SQ_CLASSES = ("anger", "disgust", "happy", "sad", "surprise", "fear", "others")


def naming_rules(path: Path) -> tuple[dict[int, str], dict[str, str]]:
    """(subject index -> subject folder name, expression name -> video code)."""
    subjects = {}
    for row in sheet_values(path, SUBJECT_SHEET):
        if len(row) >= 3 and cell_int(row[2]) is not None and cell_text(row[1]):
            subjects[cell_int(row[2])] = cell_text(row[1])
    videos = {}
    for row in sheet_values(path, VIDEO_SHEET):
        if len(row) >= 2 and cell_text(row[0]) and cell_text(row[1]):
            # Codes are text ('0401'); a copy re-saved by a spreadsheet turns them into 401.
            code = cell_text(row[0])
            videos[cell_text(row[1]).lower()] = code.zfill(4) if code.isdigit() else code
    if not subjects or not videos:
        raise MerError(f"{path}: the '{SUBJECT_SHEET}' and '{VIDEO_SHEET}' sheets name no subjects or videos; "
                       f"they map the code sheet's subject indices and expression codes to folders ({HINT})")
    return subjects, videos


def interval_rows(frames_root: Path, path: Path) -> tuple[list[IntervalRow], list[tuple[str, str]]]:
    """The code sheet's rows as intervals, and (where, "skipped: ...") for those that name no recording."""
    subjects, videos = naming_rules(path)
    rows, problems = [], []
    for number, row in enumerate(sheet_values(path, CODE_SHEETS), start=1):
        row = tuple(row) + (None,) * (9 - len(row))
        if all(cell_text(c) == "" for c in row):
            continue
        where = f"{path} row {number} ({cell_text(row[1]) or 'no code'})"
        try:
            index = cell_int(row[0])
            if index not in subjects:
                raise SkipRow(f"subject index {cell_text(row[0])!r} is not in the '{SUBJECT_SHEET}' sheet")
            name = cell_text(row[1]).split("_")[0].lower()
            if name not in videos:
                raise SkipRow(f"expression {cell_text(row[1])!r} ({name}) is not in the '{VIDEO_SHEET}' sheet")
            subject = subjects[index]
            folder = find_child(frames_root, subject)
            if folder is None or not folder.is_dir():
                raise SkipRow(f"no subject folder {frames_root / subject}")
            prefix = f"{subject.lstrip('sS')}_{videos[name]}"
            video = next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.startswith(prefix)), None)
            if video is None:
                raise SkipRow(f"no recording folder {folder / prefix}* for {cell_text(row[1])}")
            kind = kind_of(row[7], MICRO_WORDS, MACRO_WORDS)
        except SkipRow as problem:
            problems.append((where, f"skipped: {problem}"))
            continue
        rows.append(IntervalRow(where, subject, video.name, video, row[2], row[3], row[4], kind, row[6]))
    return rows, problems


def index_casme_sq(root: Path, classes: Sequence[str] = CASME_SQ_CLASSES, *, annotation: str | Path | None = None,
                   label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Every micro- and macro-expression interval of CAS(ME)^2's long videos."""
    root = Path(root).expanduser()
    frames_root = find_child(root, FRAMES_FOLDER) if root.is_dir() else None
    if frames_root is None or not frames_root.is_dir():
        raise MerError(f"data.root={root} holds no {FRAMES_FOLDER}/; point it at a CAS(ME)^2 tree ({HINT})")
    path = root / annotation if annotation is not None else find_child(root, WORKBOOK)
    if path is None or not path.is_file():
        raise MerError(f"{path or root / WORKBOOK} does not exist; put {WORKBOOK} next to {FRAMES_FOLDER}/ or set "
                       "data.annotation=/path/to/it")
    rows, problems = interval_rows(frames_root, path)
    records, notes = interval_records(rows, "casme_sq", FPS, classes, label_map)
    return require_records(records, problems + notes, "CAS(ME)^2", root, HINT)
