"""The built-in data's clips: real faces from pip packages, animated with class-specific
micro-movements (`layout_writers` writes them in each dataset's on-disk layout).

It exists so the framework runs and is tested without a licensed dataset. Each clip
is one real face placed in a 640x480 frame and deformed by a smooth displacement
field attached to its 68 landmarks, following an onset-apex-offset envelope:
positive = lip-corner raise (AU12), negative = brow lowering and drawing together
(AU4) with lip-corner depression (AU15), surprise = brow raise (AU1+2) with jaw drop
(AU26). Amplitudes are a few pixels: small like a micro-expression, yet learnable.
"""

from __future__ import annotations

import math
import os
from collections import Counter
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from mer.synthetic.real_faces import FACE_SOURCES, FaceSource
from mer.errors import MerError
from mer.files import atomic_write_text
from mer.preprocess.align import transform_points
from mer.preprocess.faces import DlibFaces

FRAME_W, FRAME_H = 640, 480
CLASSES = ("negative", "positive", "surprise")
SMIC_ABBREVIATIONS = {"negative": "ne", "positive": "po", "surprise": "sur"}
# SMIC-HS class counts (70/51/43): the built-in data keeps the same imbalance.
SMIC_CLASS_COUNTS = {"negative": 70, "positive": 51, "surprise": 43}

# Landmark displacements at the apex, in units of the inter-ocular distance.
# Image x grows to the subject's left; "outward" therefore flips sign between sides.
_BROWS = list(range(17, 27))
MOTIONS: dict[str, dict[int, tuple[float, float]]] = {
    "positive": {
        48: (-0.06, -0.05), 54: (0.06, -0.05),
        49: (-0.02, -0.025), 53: (0.02, -0.025), 59: (-0.03, -0.02), 55: (0.03, -0.02),
        # AU6: cheeks rise a little, narrowing the lower eyelids.
        40: (0.0, -0.015), 41: (0.0, -0.015), 46: (0.0, -0.015), 47: (0.0, -0.015),
    },
    "negative": {
        19: (0.02, 0.04), 20: (0.035, 0.05), 21: (0.045, 0.055),
        24: (-0.02, 0.04), 23: (-0.035, 0.05), 22: (-0.045, 0.055),
        48: (-0.01, 0.05), 54: (0.01, 0.05), 59: (0.0, 0.025), 55: (0.0, 0.025),
    },
    "surprise": {
        **{i: (0.0, -0.065) for i in _BROWS},
        **{i: (0.0, 0.07) for i in (56, 57, 58, 65, 66, 67)},
        **{i: (0.0, 0.06) for i in (6, 7, 8, 9, 10)},
    },
}


@dataclass(frozen=True)
class GeneratorSettings:
    subjects: int = 9
    clips_per_subject: int = 8
    min_frames: int = 12
    max_frames: int = 16
    face_width: int = 210  # face box width in the 640x480 frame, like SMIC-HS's framing
    intensity: float = 0.6  # scales every displacement
    noise: float = 2.0  # sensor noise, grey levels (std)
    seed: int = 0
    # SMIC-E layout only. 0: each video is its clip with a few still frames around it.
    # N: each video is a recording of N frames, neutral but for its clip's micro-expression
    # at a drawn place inside: material for spotting.
    recording_frames: int = 0

    def __post_init__(self):
        if not 1 <= self.subjects <= len(FACE_SOURCES):
            raise MerError(f"data.generator.subjects must be 1..{len(FACE_SOURCES)} (real faces available), got {self.subjects}")
        if self.clips_per_subject < 1:
            raise MerError("data.generator.clips_per_subject must be >= 1")
        if not 2 <= self.min_frames <= self.max_frames:
            raise MerError("data.generator needs 2 <= min_frames <= max_frames")
        if self.recording_frames and self.recording_frames < self.max_frames:
            raise MerError(f"data.generator.recording_frames={self.recording_frames} cannot hold a micro-expression of "
                           f"max_frames={self.max_frames}; set it to 0 (no recordings) or at least max_frames")


@dataclass(frozen=True)
class Portrait:
    image: np.ndarray  # BGR source image
    landmarks: np.ndarray  # (68, 2) in source coordinates
    box: tuple[int, int, int, int]


def portrait(source: FaceSource, backend: DlibFaces) -> Portrait:
    image = source.load_bgr()
    faces = sorted(backend.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)), key=lambda f: f.box[0])
    if len(faces) <= source.face_index:
        raise MerError(f"{source.path()}: expected at least {source.face_index + 1} faces, dlib found {len(faces)}")
    face = faces[source.face_index]
    return Portrait(image, face.landmarks, face.box)


@lru_cache(maxsize=None)
def source_portrait(index: int) -> Portrait:
    """The portrait of `FACE_SOURCES[index]`, cached: face detection is the slow part of
    generation, and one process may write several trees from the same faces."""
    return portrait(FACE_SOURCES[index], DlibFaces(upsample=1))


# Written last into every finished tree: a tree without it was cut short (or written by a
# mer older than the marker), and is never taken for complete.
COMPLETE_MARKER = ".mer-complete"
WRITE_HINT = "free space on that disk and run again (nothing half-written is kept)"


@contextmanager
def staged_tree(root: Path) -> Iterator[Path]:
    """A temporary sibling of `root` to write into, renamed to `root` (holding
    `COMPLETE_MARKER`) when the block ends without error, so an interrupted run never
    leaves a partial tree that a later run would take for complete."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise MerError(f"{root} is not empty; the generator writes only into a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        yield staging
        atomic_write_text(staging / COMPLETE_MARKER, "written whole by mer's built-in generator\n", WRITE_HINT)
        try:
            if root.exists():
                root.rmdir()
            os.replace(staging, root)
        except OSError:
            # Another process wrote the same tree meanwhile (the jobs of a parallel or SLURM
            # sweep, on first use): its copy is kept.
            if not (root / COMPLETE_MARKER).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):  # a workbook or folder on a full disk
            raise MerError(f"cannot write the built-in data to {root}: {error.strerror or error}; {WRITE_HINT}") from error
        raise


def interocular_distance(landmarks: np.ndarray) -> float:
    return math.dist(landmarks[36:42].mean(0), landmarks[42:48].mean(0))


def envelope(n_frames: int, apex: int) -> np.ndarray:
    """Raised-cosine rise from onset (0) to apex (1) and fall back to offset (0)."""
    t = np.arange(n_frames, dtype=np.float64)
    rise = 0.5 * (1 - np.cos(np.pi * t / max(apex, 1)))
    fall = 0.5 * (1 + np.cos(np.pi * (t - apex) / max(n_frames - 1 - apex, 1)))
    return np.where(t <= apex, rise, fall)


def displacement_field(landmarks: np.ndarray, label: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense (dx, dy) over the frame: each moving landmark drags a Gaussian neighbourhood."""
    iod = interocular_distance(landmarks)
    sigma = 0.14 * iod
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    dx = np.zeros((FRAME_H, FRAME_W), np.float32)
    dy = np.zeros((FRAME_H, FRAME_W), np.float32)
    for index, (ux, uy) in MOTIONS[label].items():
        px, py = landmarks[index]
        weight = np.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma**2))
        dx += weight * ux * iod * scale
        dy += weight * uy * iod * scale
    return dx, dy


def clip_plan(settings: GeneratorSettings) -> list[tuple[int, str]]:
    """(subject number, label) for every clip, with SMIC-HS's class shares and each
    subject showing several classes."""
    rng = np.random.default_rng(settings.seed)
    total = settings.subjects * settings.clips_per_subject
    shares = np.array([SMIC_CLASS_COUNTS[c] for c in CLASSES], dtype=float)
    counts = np.floor(shares / shares.sum() * total).astype(int)
    for i in np.argsort(-shares)[: total - counts.sum()]:
        counts[i] += 1
    labels = [c for c, n in zip(CLASSES, counts) for _ in range(n)]
    labels = [labels[i] for i in rng.permutation(total)]
    return [(1 + i % settings.subjects, label) for i, label in enumerate(labels)]


def render_clip(portrait_: Portrait, label: str, n_frames: int, rng: np.random.Generator, settings: GeneratorSettings) -> list[np.ndarray]:
    """A clip cut from onset to offset: the motion peaks at its centre frame."""
    return render_frames(portrait_, label, envelope(n_frames, n_frames // 2), rng, settings)


def render_frames(portrait_: Portrait, label: str, amplitudes: np.ndarray, rng: np.random.Generator,
                  settings: GeneratorSettings) -> list[np.ndarray]:
    """One frame per amplitude (0 = neutral, 1 = apex), each with fresh sensor noise."""
    x0, y0, x1, y1 = portrait_.box
    scale = settings.face_width * rng.uniform(0.95, 1.05) / max(x1 - x0, 1)
    cx, cy = FRAME_W / 2 + rng.uniform(-15, 15), FRAME_H * 0.47 + rng.uniform(-10, 10)
    place = np.array([[scale, 0, cx - scale * (x0 + x1) / 2], [0, scale, cy - scale * (y0 + y1) / 2]])
    neutral = cv2.warpAffine(portrait_.image, place, (FRAME_W, FRAME_H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    landmarks = transform_points(place, portrait_.landmarks)
    dx, dy = displacement_field(landmarks, label, settings.intensity * rng.uniform(0.75, 1.25))
    gain = rng.uniform(0.9, 1.1)
    drift = rng.normal(0, 0.3, size=2)  # sub-pixel head drift over the clip
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    frames = []
    n_frames = len(amplitudes)
    for t, a in enumerate(amplitudes):
        shift = drift * t / max(n_frames - 1, 1)
        map_x = (xs - a * dx - shift[0]).astype(np.float32)
        map_y = (ys - a * dy - shift[1]).astype(np.float32)
        frame = cv2.remap(neutral, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        frame = frame * gain + rng.normal(0, settings.noise, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


@dataclass(frozen=True)
class RenderedClip:
    number: int  # 0-based, over the dataset
    subject: int  # 1-based
    label: str  # the class of the rendered motion
    count: int  # 1-based, over this subject's clips of this class
    in_subject: int  # 1-based, over this subject's clips
    frames: list[np.ndarray]
    first: int | None  # an absolute first frame number, where one was drawn
    onset: int = 0  # index of the micro-expression's first frame in `frames`
    length: int = 0  # its frames (all of `frames` but in a recording)


def rendered_clips(settings: GeneratorSettings, faces: Sequence[int], progress: bool, desc: str,
                   absolute_first: bool = False) -> Iterator[RenderedClip]:
    """The clips of `clip_plan(settings)`, subject n played by `FACE_SOURCES[faces[n - 1]]`.
    `absolute_first` draws each clip an absolute first frame number (SMIC-HS's) from the
    same stream, between its length and its motion, so the SMIC-HS data stays as it was."""
    portraits = {n + 1: source_portrait(face) for n, face in enumerate(faces)}
    rng = np.random.default_rng(settings.seed)
    per_label: Counter = Counter()
    per_subject: Counter = Counter()
    for number, (subject, label) in enumerate(tqdm(clip_plan(settings), desc=desc, disable=not progress)):
        per_label[subject, label] += 1
        per_subject[subject] += 1
        n_frames = int(rng.integers(settings.min_frames, settings.max_frames + 1))
        first = 100_000 + 1_000 * number + int(rng.integers(0, 500)) if absolute_first else None
        onset = 0
        if settings.recording_frames:
            # Away from the ends where the recording allows, so windows see still face on both sides.
            room = settings.recording_frames - n_frames
            margin = n_frames if room >= 2 * n_frames else 0
            onset = int(rng.integers(margin, room - margin + 1))
            amplitudes = np.zeros(settings.recording_frames)
            amplitudes[onset:onset + n_frames] = envelope(n_frames, n_frames // 2)
            frames = render_frames(portraits[subject], label, amplitudes, rng, settings)
        else:
            frames = render_clip(portraits[subject], label, n_frames, rng, settings)
        yield RenderedClip(number, subject, label, per_label[subject, label], per_subject[subject], frames, first,
                           onset, n_frames)
