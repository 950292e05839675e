"""The built-in data written in the licensed datasets' on-disk layouts (SMIC-HS, SMIC-E,
CASME II, SAMM, the MEGC2019 composite of the first three), so every loader runs on
real face frames without the licensed data.

Clips are rendered by the generator (`rendered_clips`, `clip_plan`); this module only
names folders and frames the way each dataset does and writes its annotation workbook
as the original lays it out: SAMM's header below a 13-row preamble, CASME II's '/' in
some ApexFrame cells, SMIC-E's absolute OnsetF/OffsetF with the video's FirstF. Beside
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
from openpyxl import Workbook

from mer.datasets.composite import DEFAULT_ROOTS
from mer.datasets.identity import write_faces
from mer.synthetic.real_faces import FACE_SOURCES
from mer.synthetic.generator import SMIC_ABBREVIATIONS, WRITE_HINT, GeneratorSettings, rendered_clips, staged_tree
from mer.errors import MerError

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


def write_annotation(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]], preamble: Sequence[str] = ()) -> Path:
    """One sheet: `preamble` lines (one per row, '' for a blank row), the header, then the rows."""
    workbook = Workbook()
    sheet = workbook.active
    for number, line in enumerate(preamble, start=1):
        sheet.cell(number, 1, line or None)
    for column, name in enumerate(columns, start=1):
        sheet.cell(len(preamble) + 1, column, name)
    for offset, row in enumerate(rows, start=len(preamble) + 2):
        for column, name in enumerate(columns, start=1):
            sheet.cell(offset, column, row.get(name))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
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
