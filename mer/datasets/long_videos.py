"""Records of the spotting corpora (CAS(ME)^2, SAMM Long Videos, CAS(ME)^3): every annotated
interval of a long recording, micro or macro, with its onset, apex and offset as indices
into the recording's frames, its emotion where the corpus gives one, and the corpus frame
rate. Each corpus module reads its own workbook into `IntervalRow`s; this module maps their
frame numbers and handles the quirks real sheets have, each reported in one line naming
the row:

- offset 0 means "use the apex" (CAS(ME)^2's convention, as the MEGC loaders read it);
- an apex of -1, empty, or outside onset..offset is replaced by the interval's centre;
- an onset before the recording's first frame (SAMM-LV's onset 0 on its longest macros)
  leaves the row out, as the MEGC reference loaders leave it out;
- an offset past the recording's last frame is cut there;
- a frame number stored as a non-integer is rounded (the sheets show them as integers).

An emotion that `classes` (after `label_map`) does not name leaves the record's label empty:
the interval is spotted and scored for spotting, not for recognition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mer.datasets.records import MACRO, MICRO, ClipRecord
from mer.datasets.workbook import cell_text
from mer.datasets.workbook_index import SkipRow, frame_gaps, frame_index, normalise_label_map
from mer.common.errors import MerError
from mer.preprocess.frames import frame_number, list_frames


@dataclass(frozen=True)
class IntervalRow:
    where: str  # "<workbook> row N (<video>)", for reports
    subject: str  # as the records name it, e.g. "s15", "006", "spNO.1"
    name: str  # the recording's, unique in the corpus: "15_0101disgustingteeth", "006_1", "spNO.1_a"
    video: Path  # its frame folder
    onset: object  # cells as the sheet holds them
    apex: object
    offset: object
    kind: str  # MICRO or MACRO
    emotion: object = None


def frame_cell(value: object, column: str) -> tuple[int | None, list[str]]:
    """A frame-number cell: None when empty or not a number; a non-integer rounded, with a note."""
    if isinstance(value, bool) or value is None or cell_text(value) == "":
        return None, []
    try:
        number = float(cell_text(value))
    except ValueError:
        raise SkipRow(f"{column} is {cell_text(value)!r}, not a frame number") from None
    if not number.is_integer():
        return round(number), [f"{column} {number} is not a whole frame: rounded to {round(number)}"]
    return int(number), []


def interval_marks(row: IntervalRow, numbers: Sequence[int]) -> tuple[int, int, int, list[str]]:
    """(onset, apex, offset) as indices into the recording's frames, and the notes of the
    quirks worked around; SkipRow when the row cannot be an interval."""
    onset, notes = frame_cell(row.onset, "Onset")
    apex, apex_notes = frame_cell(row.apex, "Apex")
    offset, offset_notes = frame_cell(row.offset, "Offset")
    notes += apex_notes + offset_notes
    first, last = numbers[0], numbers[-1]
    if onset is None:
        raise SkipRow(f"Onset is {cell_text(row.onset)!r}, not a frame number")
    if onset < first:
        raise SkipRow(f"Onset {onset} comes before the recording's first frame {first} (the MEGC loaders leave such "
                      "rows out)")
    if onset > last:
        raise SkipRow(f"Onset {onset} is past the recording's last frame {last}")
    if offset == 0 and apex is not None and apex >= onset:
        notes.append(f"Offset 0 means 'use the apex': offset = Apex {apex}")
        offset = apex
    if offset is None or offset < onset:
        shown = offset if offset is not None else repr(cell_text(row.offset))
        raise SkipRow(f"Offset {shown} is no frame at or after Onset {onset}")
    if offset > last:
        notes.append(f"Offset {offset} is past the recording's last frame {last}: cut there")
        offset = last
    if apex is None or not onset <= apex <= offset:
        centre = onset + (offset - onset) // 2
        notes.append(f"Apex {cell_text(row.apex) or 'empty'} is not inside Onset..Offset {onset}..{offset}: the centre, "
                     f"{centre}, is used")
        apex = centre
    return frame_index(numbers, onset), frame_index(numbers, apex), frame_index(numbers, offset), notes


def interval_records(rows: Iterable[IntervalRow], source: str, fps: float, classes: Sequence[str],
                     label_map: Mapping[str, str] | None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """One record per usable row (its clip id `<video>#<n>`, n counting the recording's
    intervals), and (where, "skipped: ..." or "kept: ...") for every row left out or kept
    with a workaround."""
    labels = normalise_label_map(label_map)
    listed: dict[Path, tuple[list[Path], list[int]] | str] = {}
    records: list[ClipRecord] = []
    notes: list[tuple[str, str]] = []
    per_video: dict[Path, int] = {}
    for row in rows:
        if row.video not in listed:
            try:
                frames = list_frames(row.video)
                listed[row.video] = (frames, [frame_number(f) for f in frames]) if frames else \
                    f"{row.video} holds no frame images"
            except MerError as error:
                listed[row.video] = str(error)
            if not isinstance(listed[row.video], str) and frame_gaps(listed[row.video][1]):
                notes.append((str(row.video), f"kept: {frame_gaps(listed[row.video][1])}"))
        found = listed[row.video]
        try:
            if isinstance(found, str):
                raise SkipRow(found)
            onset, apex, offset, row_notes = interval_marks(row, found[1])
        except SkipRow as problem:
            notes.append((row.where, f"skipped: {problem}"))
            continue
        per_video[row.video] = per_video.get(row.video, 0) + 1
        emotion = cell_text(row.emotion).lower()
        label = labels.get(emotion, emotion)
        record = ClipRecord(f"{row.name}#{per_video[row.video]}", row.subject, label if label in classes else "", row.video,
                            tuple(found[0]), onset=onset, apex=apex, source=source, offset=offset, kind=row.kind,
                            fps=fps, recording=row.name)
        records.append(record)
        notes.extend((row.where, f"kept: {note}") for note in row_notes)
    return records, notes


def kind_of(text: object, micro: Sequence[str], macro: Sequence[str]) -> str:
    """MICRO or MACRO from a type cell, matched case- and space-insensitively; SkipRow otherwise."""
    key = " ".join(cell_text(text).split()).lower()
    if key in micro:
        return MICRO
    if key in macro:
        return MACRO
    raise SkipRow(f"type {cell_text(text)!r} is neither micro ({', '.join(micro)}) nor macro ({', '.join(macro)})")


def require_records(records: list[ClipRecord], notes: list[tuple[str, str]], title: str, root: Path, hint: str
                    ) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    if not records:
        first = "; ".join(f"{w}: {r}" for w, r in notes[:3])
        raise MerError(f"data.root={root}: no usable {title} intervals (expected {hint})"
                       + (f"; first problems: {first}" if first else ""))
    return records, notes
