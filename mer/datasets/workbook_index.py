"""Indexing datasets that list their clips in an annotation workbook (CASME II, SAMM,
SMIC-E): one row per clip, frames in `<frames folder>/<subject>/<clip>/`.

Each dataset module describes its layout (`AnnotatedLayout`) and how a row's frame
numbers become indices (`marks`); this module finds the folders, reads the rows and
turns every per-row problem into a report instead of a crash.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mer.datasets.workbook import cell_int, cell_number_in, cell_text, read_table
from mer.datasets.records import ClipRecord
from mer.common.errors import MerError
from mer.preprocess.frames import frame_number, list_frames


class SkipRow(Exception):
    """This row cannot become a clip; the message says why."""


@dataclass(frozen=True)
class Marks:
    onset: int | None
    apex: int | None
    notes: tuple[str, ...] = ()  # problems worked around; the clip is kept
    offset: int | None = None  # long videos: where the micro-expression ends


@dataclass(frozen=True)
class AnnotatedLayout:
    name: str  # the records' `source`, e.g. "casme2"
    title: str  # for messages, e.g. "CASME II"
    frames_folder: str  # e.g. "CASME2_RAW_selected"
    annotation_file: str  # e.g. "CASME2-coding-20140508.xlsx"
    hint: str  # one example frame path and the workbook, for messages
    subject_folder: re.Pattern  # group 1 is the subject number
    subject_id: Callable[[int], str]
    subject_column: str
    filename_column: str
    emotion_column: str
    mark_columns: tuple[str, ...]  # the frame-number columns `marks` reads
    marks: Callable[[Mapping[str, object], Sequence[int]], Marks]  # row, frame numbers on disk
    clip_id: Callable[[str, str], str] = lambda subject, folder: folder

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.subject_column, self.filename_column, *self.mark_columns, self.emotion_column)


def find_child(folder: Path, name: str) -> Path | None:
    """`folder/name`, matching case-insensitively when the exact name is absent:
    annotations and folder names disagree in case between releases and file systems."""
    exact = folder / name
    if exact.exists():
        return exact
    lowered = name.lower()
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == lowered), None)


def frame_index(numbers: Sequence[int], number: int) -> int | None:
    """Index of frame `number` among the sorted frame numbers on disk; a number that
    falls in a gap maps to the next frame present; None outside the clip."""
    if not numbers or number < numbers[0] or number > numbers[-1]:
        return None
    return bisect_left(numbers, number)


def absolute_mark(row: Mapping[str, object], column: str, numbers: Sequence[int]) -> tuple[int | None, list[str]]:
    """A column holding an absolute frame number (as the frame files are numbered) as an index."""
    raw = row[column]
    number = cell_int(raw)
    if number is None:
        return None, [f"{column} is {cell_text(raw)!r}, not a frame number: left unset"]
    index = frame_index(numbers, number)
    if index is None:
        return None, [f"{column} {number} is outside the clip's frames {numbers[0]}..{numbers[-1]}: left unset"]
    if numbers[index] != number:
        return index, [f"{column} {number} has no frame file: the next frame, {numbers[index]}, is used"]
    return index, []


def onset_apex_marks(onset_column: str, apex_column: str) -> Callable[[Mapping[str, object], Sequence[int]], Marks]:
    """Marks read from onset and apex columns that hold absolute frame numbers (CASME II, SAMM)."""
    def marks(row: Mapping[str, object], numbers: Sequence[int]) -> Marks:
        onset, onset_notes = absolute_mark(row, onset_column, numbers)
        apex, apex_notes = absolute_mark(row, apex_column, numbers)
        return Marks(onset, apex, tuple(onset_notes + apex_notes))

    return marks


def frame_gaps(numbers: Sequence[int]) -> str | None:
    jumps = [(a, b) for a, b in zip(numbers, numbers[1:]) if b - a != 1]
    if not jumps:
        return None
    missing = sum(b - a - 1 for a, b in jumps)
    shown = ", ".join(f"{a}->{b}" for a, b in jumps[:3])
    return f"frame numbers jump ({shown}{', ...' if len(jumps) > 3 else ''}; {missing} missing): used as they are"


def normalise_label_map(label_map: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).strip().lower(): str(v).strip().lower() for k, v in (label_map or {}).items()}


def label_for(emotion: object, classes: Sequence[str], label_map: Mapping[str, str]) -> str:
    """The class of an emotion cell, after the (normalised) label map; SkipRow if none."""
    text = cell_text(emotion).lower()
    label = label_map.get(text, text)
    if label not in classes:
        via = f" (mapped to {label!r} by data.label_map)" if label != text else ""
        raise SkipRow(f"emotion {cell_text(emotion)!r}{via} is not one of data.classes {list(classes)}")
    return label


def locate(layout: AnnotatedLayout, root: Path, annotation: str | Path | None) -> tuple[Path, Path]:
    """The folder holding the subject folders and the annotation workbook.

    `root` may be the folder holding both (as the datasets ship) or the frames folder
    itself; a relative `annotation` is taken from `root`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MerError(f"data.root={root} does not exist; point it at a {layout.title} tree ({layout.hint})")
    frames_root = None
    for candidate in (find_child(root, layout.frames_folder), root):
        if candidate is not None and candidate.is_dir() and any(
                p.is_dir() and layout.subject_folder.match(p.name) for p in candidate.iterdir()):
            frames_root = candidate
            break
    if frames_root is None:
        raise MerError(f"data.root={root} holds no {layout.frames_folder}/ with subject folders; expected {layout.hint}")
    if annotation is not None:
        path = root / Path(annotation).expanduser()
        if not path.is_file():
            raise MerError(f"data.annotation={path} does not exist; point it at {layout.annotation_file}")
        return frames_root, path
    searched = [root, frames_root] if frames_root != root else [root, root.parent]
    for folder in searched:
        path = find_child(folder, layout.annotation_file)
        if path is not None and path.is_file():
            return frames_root, path
    raise MerError(f"{layout.annotation_file} not found in {' or '.join(str(f) for f in searched)}; "
                   f"put it next to {frames_root.name}/ or set data.annotation=/path/to/{layout.annotation_file}")


def index_annotated(layout: AnnotatedLayout, root: Path, classes: Sequence[str], annotation: str | Path | None = None,
                    label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Clip records, and (row or folder, reason) for every row skipped or clip kept with a
    workaround; the reason starts with "skipped: " or "kept: "."""
    frames_root, path = locate(layout, root, annotation)
    table = read_table(path, layout.columns)
    subjects: dict[int, Path] = {}
    for folder in sorted(frames_root.iterdir()):
        match = layout.subject_folder.match(folder.name)
        if folder.is_dir() and match:
            subjects.setdefault(int(match.group(1)), folder)
    labels = normalise_label_map(label_map)
    classes = tuple(classes)
    records: list[ClipRecord] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for row_number, row in table.rows:
        where = f"{path} row {row_number} ({cell_text(row[layout.filename_column]) or 'no Filename'})"
        try:
            record, notes = _row_record(layout, row, subjects, frames_root, classes, labels)
            if record.clip_id in seen:
                raise SkipRow(f"clip {record.clip_id} is listed twice; the first row is used")
        except SkipRow as problem:
            skipped.append((where, f"skipped: {problem}"))
            continue
        seen.add(record.clip_id)
        records.append(record)
        skipped.extend((str(record.path), f"kept: {note}") for note in notes)
    if not records:
        first = "; ".join(f"{w}: {r}" for w, r in skipped[:3])
        raise MerError(f"data.root={root}: no usable {layout.title} clips in {path} (expected {layout.hint})"
                       + (f"; first problems: {first}" if first else ""))
    return records, skipped


def _row_record(layout: AnnotatedLayout, row: Mapping[str, object], subjects: Mapping[int, Path],
                frames_root: Path, classes: Sequence[str], labels: Mapping[str, str]) -> tuple[ClipRecord, list[str]]:
    label = label_for(row[layout.emotion_column], classes, labels)
    number = cell_number_in(row[layout.subject_column])
    if number is None:
        raise SkipRow(f"{layout.subject_column} {cell_text(row[layout.subject_column])!r} has no subject number")
    if number not in subjects:
        raise SkipRow(f"no folder for subject {number} in {frames_root}")
    filename = cell_text(row[layout.filename_column])
    if not filename:
        raise SkipRow(f"{layout.filename_column} is empty")
    folder = find_child(subjects[number], filename)
    if folder is None or not folder.is_dir():
        raise SkipRow(f"clip folder {subjects[number] / filename} does not exist")
    notes = []
    if folder.name != filename:
        notes.append(f"{layout.filename_column} {filename!r} differs in case from the folder name: matched it")
    try:
        frames = list_frames(folder)
    except MerError as error:
        raise SkipRow(str(error)) from error
    if not frames:
        raise SkipRow(f"{folder} holds no frame images")
    numbers = [frame_number(f) for f in frames]
    gaps = frame_gaps(numbers)
    if gaps:
        notes.append(gaps)
    marks = layout.marks(row, numbers)
    notes.extend(marks.notes)
    subject = layout.subject_id(number)
    record = ClipRecord(layout.clip_id(subject, folder.name), subject, label, folder, tuple(frames),
                        onset=marks.onset, apex=marks.apex, source=layout.name,
                        offset=marks.offset)
    return record, notes
