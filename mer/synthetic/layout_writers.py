"""The built-in data written in the licensed datasets' on-disk layouts (SMIC-HS, SMIC-E,
CASME II, SAMM, the MEGC2019 composite of the first three, and the spotting corpora
CAS(ME)^2, SAMM Long Videos and CAS(ME)^3 part A), so every loader runs on real face
frames without the licensed data.

Clips are rendered by the generator (`rendered_clips`, `clip_plan`); this module only
names folders and frames the way each dataset does and writes its annotation workbook
as the original lays it out: SAMM's header below a 13-row preamble, CASME II's '/' in
some ApexFrame cells, SMIC-E's absolute OnsetF/OffsetF with the video's FirstF, the
spotting corpora's micro and macro rows with their quirks (CAS(ME)^2's offset 0 and naming
sheets, SAMM-LV's Apex -1, onset-0 rows and int-or-text subjects, CAS(ME)^3's .xls). Beside
each tree's annotation it records which face plays which subject (`identity.FACES_FILE`):
the layouts reuse the same few faces, and a model must not be scored on a person it
trained on under another dataset's name.
The rendered motion is one of three classes (negative, positive, surprise); annotations
name it with each dataset's own emotion words.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
import xlwt
from openpyxl import Workbook

from mer.datasets.composite import DEFAULT_ROOTS
from mer.datasets.identity import write_faces
from mer.synthetic.real_faces import FACE_SOURCES
from mer.synthetic.generator import CLASSES, SMIC_ABBREVIATIONS, WRITE_HINT, GeneratorSettings, rendered_clips, staged_tree
from mer.common.errors import MerError

CASME2_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")
SAMM_COLUMNS = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
                "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes")
SMIC_E_COLUMNS = ("Subject", "Filename", "OnsetF", "OffsetF", "FirstF", "LastF", "Emotion")
_SAMM_TEXT = (
    "SAMM - Spontaneous Actions and Micro-Movements",
    "Micro-movement FACS codes (v2 layout)",
    "",
    "Built-in stand-in written by mer: real faces from pip packages, animated; not SAMM data.",
    "Subject: participant number. Filename: subject_inducement_clip.",
    "Onset, Apex and Offset Frame: absolute frame numbers, as in the frame file names.",
    "Duration: frames from onset to offset.",
)
SAMM_PREAMBLE = (*_SAMM_TEXT, *[""] * (13 - len(_SAMM_TEXT)))  # the header lands on row 14, as in SAMM's file

# The rendered movements (see generator.MOTIONS) as FACS action units.
ACTION_UNITS = {"positive": "6+12", "negative": "4+15", "surprise": "1+2+26"}
CASME2_NEGATIVE = ("disgust", "repression")
SAMM_NEGATIVE = ("Anger", "Contempt", "Disgust")
# SAMM's objective classes are AU-based: I = AU6/12, II = AU1+2, III-V = AU4, AU14, AU9.
SAMM_OBJECTIVE = {"Happiness": 1, "Surprise": 2, "Anger": 3, "Contempt": 4, "Disgust": 5}
# SMIC-E videos run on past the micro-expression: neutral frames before onset and after offset.
SMIC_E_TAIL = 2
# One clip in five gets '/' for its apex, like the few such rows in CASME II.
CASME2_NO_APEX = 5
# SAMM's participants start at 006.
SAMM_FIRST_SUBJECT = 6


def write_annotation(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]], preamble: Sequence[str] = (),
                     sheet_name: str | None = None) -> Path:
    """One sheet: `preamble` lines (one per row, '' for a blank row), the header, then the rows."""
    return write_sheets(path, {sheet_name: [[line or None] for line in preamble] + [list(columns)]
                               + [[row.get(name) for name in columns] for row in rows]})


def write_sheets(path: Path, sheets: Mapping[str | None, Sequence[Sequence[object]]]) -> Path:
    """A workbook of these sheets' rows (a None name: the default sheet's), as .xlsx, or as
    .xls where the path says so (CAS(ME)^3 ships one)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if Path(path).suffix.lower() == ".xls":
        book = xlwt.Workbook()
        for name, rows in sheets.items():
            sheet = book.add_sheet(name or "Sheet1")
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    if value is not None:
                        sheet.write(r, c, value)
        book.save(str(path))
        return Path(path)
    workbook = Workbook()
    for k, (name, rows) in enumerate(sheets.items()):
        sheet = workbook.active if k == 0 else workbook.create_sheet()
        if name:
            sheet.title = name
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(r, c, value)
    workbook.save(path)
    return Path(path)


def _record_faces(folder: Path, faces: Sequence[int], first_subject: int = 1) -> None:
    """Subject `first_subject + k` is played by `FACE_SOURCES[faces[k]]`, as `rendered_clips` casts them."""
    write_faces(folder, {first_subject + k: FACE_SOURCES[face].name for k, face in enumerate(faces)})


def _write_frames(folder: Path, names: Sequence[str], frames: Sequence[np.ndarray], grey: bool = False) -> None:
    folder.mkdir(parents=True)
    for name, frame in zip(names, frames):
        path = folder / name
        # OpenCV reports a failed write (a full disk) by returning False, not by raising.
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if grey else frame):
            raise MerError(f"cannot write {path}; {WRITE_HINT}")


def generate_smic_hs(root: Path, settings: GeneratorSettings = GeneratorSettings(), progress: bool = True) -> Path:
    """Write the built-in dataset to `root` as `HS/s{N}/micro/{class}/s{N}_{ab}_{NN}/image{6d}.bmp`,
    frame numbers absolute as in SMIC-HS recordings."""
    root = Path(root)
    faces = range(settings.subjects)
    with staged_tree(root) as staging:
        for clip in rendered_clips(settings, faces, progress, "generating built-in clips", absolute_first=True):
            clip_id = f"s{clip.subject}_{SMIC_ABBREVIATIONS[clip.label]}_{clip.count:02d}"
            _write_frames(staging / "HS" / f"s{clip.subject}" / "micro" / clip.label / clip_id,
                          [f"image{clip.first + t:06d}.bmp" for t in range(len(clip.frames))], clip.frames)
        _record_faces(staging, faces)
    return root


def write_casme2(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`CASME2_RAW_selected/sub01/EP02_01f/img46.jpg` + `CASME2-coding-20140508.xlsx`."""
    rows = []
    for clip in rendered_clips(settings, faces, progress, "writing CASME II clips"):
        n = len(clip.frames)
        first = 30 + 5 * clip.number  # absolute and unpadded, like img46.jpg
        # Episode names repeat across subjects, as in CASME II.
        filename = f"EP{clip.in_subject + 1:02d}_{clip.count:02d}f"
        folder = root / "CASME2_RAW_selected" / f"sub{clip.subject:02d}" / filename
        _write_frames(folder, [f"img{first + t}.jpg" for t in range(n)], clip.frames)
        emotion = {"positive": "happiness", "surprise": "surprise"}.get(clip.label) or CASME2_NEGATIVE[clip.number % 2]
        no_apex = clip.number % CASME2_NO_APEX == 2
        rows.append({"Subject": f"{clip.subject:02d}", "Filename": filename, "OnsetFrame": first,
                     "ApexFrame": "/" if no_apex else first + clip.apex, "OffsetFrame": first + n - 1,
                     "Action Units": ACTION_UNITS[clip.label], "Estimated Emotion": emotion})
    write_annotation(root / "CASME2-coding-20140508.xlsx", CASME2_COLUMNS, rows)
    _record_faces(root, faces)


def write_samm(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`SAMM/006/006_1_2/006_05562.jpg` (greyscale, like SAMM) + `SAMM_Micro_FACS_Codes_v2.xlsx`."""
    rows = []
    for clip in rendered_clips(settings, faces, progress, "writing SAMM clips"):
        n = len(clip.frames)
        subject = f"{SAMM_FIRST_SUBJECT - 1 + clip.subject:03d}"
        inducement = 1 + clip.number % 7
        filename = f"{subject}_{inducement}_{clip.in_subject}"
        first = 1_000 + 400 * clip.number
        _write_frames(root / "SAMM" / subject / filename, [f"{subject}_{first + t:05d}.jpg" for t in range(n)],
                      clip.frames, grey=True)
        emotion = {"positive": "Happiness", "surprise": "Surprise"}.get(clip.label) or SAMM_NEGATIVE[clip.number % 3]
        rows.append({"Subject": subject, "Filename": filename, "Inducement Code": inducement, "Onset Frame": first,
                     "Apex Frame": first + clip.apex, "Offset Frame": first + n - 1, "Duration": n, "Micro": "Micro",
                     "Action Units": ACTION_UNITS[clip.label], "Estimated Emotion": emotion,
                     "Objective Classes": SAMM_OBJECTIVE[emotion], "Notes": None})
    write_annotation(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_COLUMNS, rows, SAMM_PREAMBLE)
    _record_faces(root, faces, SAMM_FIRST_SUBJECT)


def write_smic_e(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`HS/s01/s1_ne_01/image559700.jpg` + `SMIC-HS-E_annotation.xlsx`: each clip a longer
    video whose micro-expression starts a few frames in, or, with `recording_frames`, a
    recording of that many frames with the micro-expression somewhere inside."""
    if settings.macro_frames:
        raise MerError("SMIC-E annotates micro-expressions only, so its built-in recordings hold none of "
                       "data.generator.macro_frames; set it to 0 (head turns and blinks stay unannotated, as there)")
    rows = []
    for clip in rendered_clips(settings, faces, progress, "writing SMIC-E videos"):
        if settings.recording_frames:
            video, onset = clip.frames, clip.onset
        else:
            onset = 1 + clip.number % 3
            video = [clip.frames[0]] * onset + clip.frames + [clip.frames[-1]] * SMIC_E_TAIL
        first = 559_700 + 1_000 * clip.number
        filename = f"s{clip.subject}_{SMIC_ABBREVIATIONS[clip.label]}_{clip.count:02d}"
        _write_frames(root / "HS" / f"s{clip.subject:02d}" / filename,
                      [f"image{first + t:06d}.jpg" for t in range(len(video))], video)
        rows.append({"Subject": clip.subject, "Filename": filename, "OnsetF": first + onset,
                     "OffsetF": first + onset + clip.length - 1, "FirstF": first, "LastF": first + len(video) - 1,
                     "Emotion": clip.label})
    write_annotation(root / "SMIC-HS-E_annotation.xlsx", SMIC_E_COLUMNS, rows)
    _record_faces(root, faces)


# CAS(ME)^2's subjects are numbered from 15 (folders s15..s40), its videos by code.
CASME_SQ_FIRST_SUBJECT = 15
# (code, expression name in the code sheet, folder description), as in `naming rule2`.
CASME_SQ_VIDEOS = (("0101", "disgust1", "disgustingteeth"), ("0102", "disgust2", "eatingworms"),
                   ("0401", "anger1", "girlcrashing"), ("0502", "happy1", "funnydog"),
                   ("0503", "happy2", "smilingbaby"), ("0507", "happy3", "talkingshow"))
CASME_SQ_EMOTIONS = {"positive": ("happy",), "negative": ("disgust", "anger"), "surprise": ("surprise",)}
CASME3_EMOTIONS = CASME_SQ_EMOTIONS
# Every third CAS(ME)^2 micro row gives offset 0 ("use the apex"), as some real rows do.
CASME_SQ_OFFSET_ZERO = 3
SAMM_LV_PREAMBLE = ("SAMM Long Videos", "FACS_Movement_Only", "",
                    "Built-in stand-in written by mer: real faces from pip packages, animated; not SAMM data.",
                    "Onset, Apex, Offset: frame numbers as in the file names, counted from 1.", "", "", "", "")
SAMM_LV_COLUMNS = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
                   "Action Units", "Notes")
CASME3_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Type", "Objective class")
CASME3_EMOTION_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")


def recordings_of(settings: GeneratorSettings, faces: Sequence[int], progress: bool, desc: str, layout: str):
    if not settings.recording_frames:
        raise MerError(f"the {layout} layout holds long recordings: set data.generator.recording_frames (and "
                       "macro_frames, head_turn_frames)")
    return rendered_clips(settings, faces, progress, desc)


def intervals_of(clip) -> list[tuple[str, int, int, int, str]]:
    """(type, onset, apex, offset, class) of a rendered recording's annotated expressions, by onset."""
    found = [("micro", clip.onset, clip.apex, clip.onset + clip.length - 1, clip.label)]
    if clip.macro is not None:
        found.append(("macro", *clip.macro))
    return sorted(found, key=lambda i: i[1])


def write_casme_sq(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`rawpic/s15/15_0101disgustingteeth/img001.jpg` + `CAS(ME)^2code_final.xlsx` (code
    sheet without header, the two naming-rule sheets)."""
    code_rows, subjects = [], {}
    for clip in recordings_of(settings, faces, progress, "writing CAS(ME)^2 recordings", "casme_sq"):
        number = CASME_SQ_FIRST_SUBJECT - 1 + clip.subject
        subjects[number] = clip.subject
        code, name, description = CASME_SQ_VIDEOS[(clip.in_subject - 1) % len(CASME_SQ_VIDEOS)]
        _write_frames(root / "rawpic" / f"s{number}" / f"{number}_{code}{description}",
                      [f"img{t + 1:03d}.jpg" for t in range(len(clip.frames))], clip.frames)
        for k, (kind, onset, apex, offset, label) in enumerate(intervals_of(clip), start=1):
            words = CASME_SQ_EMOTIONS[label]
            use_apex = kind == "micro" and clip.number % CASME_SQ_OFFSET_ZERO == 1
            code_rows.append([clip.subject, f"{name}_{k}", onset + 1, apex + 1, 0 if use_apex else offset + 1,
                              ACTION_UNITS[label], words[clip.number % len(words)], f"{kind}-expression",
                              words[0] if k == 1 else "others"])
    write_sheets(root / "CAS(ME)^2code_final.xlsx", {
        "CASFEcode_final": code_rows,
        "naming rule1": [[number, f"s{number}", index] for number, index in sorted(subjects.items())],
        "naming rule2": [[code, name] for code, name, _ in CASME_SQ_VIDEOS]})
    _record_faces(root, faces, CASME_SQ_FIRST_SUBJECT)


def write_samm_lv(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`SAMM_longvideos/006_1/006_1_0001.jpg` (greyscale) + `SAMM_LongVideos_V2_Release.xlsx`
    (sheet FACS_Movement_Only, header on row 10) + `SAMM_Micro_FACS_Codes_v2.xlsx` naming
    the micro-expressions' emotions."""
    rows, micro_rows = [], []
    for clip in recordings_of(settings, faces, progress, "writing SAMM Long Videos", "samm_lv"):
        subject = f"{SAMM_FIRST_SUBJECT - 1 + clip.subject:03d}"
        name = f"{subject}_{clip.in_subject}"
        _write_frames(root / "SAMM_longvideos" / name, [f"{name}_{t + 1:04d}.jpg" for t in range(len(clip.frames))],
                      clip.frames, grey=True)
        # Subject cells are text ('006') in some rows and numbers in others.
        cell = subject if clip.subject % 2 else int(subject)
        for k, (kind, onset, apex, offset, label) in enumerate(intervals_of(clip), start=1):
            filename = f"{name}_{k}"
            no_apex = kind == "macro" and clip.number % 2 == 0
            rows.append({"Subject": cell, "Filename": filename, "Inducement Code": clip.in_subject,
                         "Onset": onset + 1, "Apex": -1 if no_apex else apex + 1, "Offset": offset + 1,
                         "Duration": offset - onset + 1, "Type": "Micro - 1/2" if kind == "micro" else "Macro",
                         "Action Units": ACTION_UNITS[label], "Notes": None})
            if kind == "micro":
                emotion = {"positive": "Happiness", "surprise": "Surprise"}.get(label) or SAMM_NEGATIVE[clip.number % 3]
                micro_rows.append({"Subject": subject, "Filename": filename, "Inducement Code": clip.in_subject,
                                   "Onset Frame": onset + 1, "Apex Frame": apex + 1, "Offset Frame": offset + 1,
                                   "Duration": offset - onset + 1, "Micro": "Micro", "Action Units": ACTION_UNITS[label],
                                   "Estimated Emotion": emotion, "Objective Classes": SAMM_OBJECTIVE[emotion]})
        # The real sheet's longest macro movements start at Onset 0; the MEGC loaders leave them out.
        rows.append({"Subject": cell, "Filename": f"{name}_{len(intervals_of(clip)) + 1}", "Inducement Code": clip.in_subject,
                     "Onset": 0, "Apex": -1, "Offset": len(clip.frames), "Type": "Macro", "Notes": "whole video"})
    write_annotation(root / "SAMM_LongVideos_V2_Release.xlsx", SAMM_LV_COLUMNS, rows, SAMM_LV_PREAMBLE,
                     sheet_name="FACS_Movement_Only")
    write_annotation(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_COLUMNS, micro_rows, SAMM_PREAMBLE)
    _record_faces(root, faces, SAMM_FIRST_SUBJECT)


def write_casme3(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """`part_A/spNO.1/a/color/0.jpg` (unpadded, from 0; an empty `depth/` beside) +
    `CAS(ME)3_part_A_v2.xls` + `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (micro emotions)."""
    rows, emotion_rows = [], []
    for clip in recordings_of(settings, faces, progress, "writing CAS(ME)^3 recordings", "casme3"):
        subject, video = f"spNO.{clip.subject}", "abcdefghijklmnop"[(clip.in_subject - 1) % 16]
        folder = root / "part_A" / subject / video
        _write_frames(folder / "color", [f"{t}.jpg" for t in range(len(clip.frames))], clip.frames)
        (folder / "depth").mkdir()
        for kind, onset, apex, offset, label in intervals_of(clip):
            rows.append([subject, video, onset, apex, offset, ACTION_UNITS[label], f"{kind.capitalize()}-expression",
                         1 + CLASSES.index(label)])
            if kind == "micro":
                words = CASME3_EMOTIONS[label]
                emotion_rows.append([subject, video, onset, apex, offset, ACTION_UNITS[label], 1 + CLASSES.index(label),
                                     words[clip.number % len(words)]])
    write_sheets(root / "CAS(ME)3_part_A_v2.xls", {"Sheet1": [list(CASME3_COLUMNS), *rows]})
    write_sheets(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", {None: [list(CASME3_EMOTION_COLUMNS),
                                                                           *emotion_rows]})
    _record_faces(root, faces)


def write_composite(root: Path, settings: GeneratorSettings, faces: Sequence[int], progress: bool) -> None:
    """SMIC-HS, CASME II and SAMM under `root/{SMIC,CASME2,SAMM}` (the composite's default
    roots). Each dataset takes the next `subjects` faces, so while 3 x subjects faces
    exist no person appears in two datasets, as in the real composite; beyond that
    faces repeat across datasets."""
    generate_smic_hs(root / DEFAULT_ROOTS["smic"], settings, progress)  # plays subject n with face n-1
    for k, (name, writer) in enumerate((("casme2", write_casme2), ("samm", write_samm)), start=1):
        shifted = [(k * settings.subjects + face) % len(FACE_SOURCES) for face in faces]
        writer(root / DEFAULT_ROOTS[name], replace(settings, seed=settings.seed + k), shifted, progress)


WRITERS: dict[str, Callable[[Path, GeneratorSettings, Sequence[int], bool], None]] = {
    "smic_e": write_smic_e,
    "casme2": write_casme2,
    "samm": write_samm,
    "composite": write_composite,
    "casme_sq": write_casme_sq,
    "samm_lv": write_samm_lv,
    "casme3": write_casme3,
}
LAYOUTS = ("smic_hs", *WRITERS)


def generate_layout(layout: str, root: Path, settings: GeneratorSettings = GeneratorSettings(), progress: bool = True) -> Path:
    """Write the built-in data to `root` (new or empty) in `layout`, one of `LAYOUTS`."""
    if layout not in LAYOUTS:
        raise MerError(f"the built-in data cannot be written as data.layout={layout!r}; available: {sorted(LAYOUTS)}")
    root = Path(root)
    if layout == "smic_hs":
        return generate_smic_hs(root, settings, progress)
    with staged_tree(root) as staging:
        WRITERS[layout](staging, settings, range(settings.subjects), progress)
    return root
