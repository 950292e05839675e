"""The built-in data's clips: real faces from pip packages, animated with class-specific
micro-movements (`layout_writers` writes them in each dataset's on-disk layout).

It exists so the framework runs and is tested without a licensed dataset. Each clip
is one real face placed in a 640x480 frame and deformed by a smooth displacement
field attached to its 68 landmarks, following an onset-apex-offset envelope:
positive = lip-corner raise (AU12), negative = brow lowering and drawing together
(AU4) with lip-corner depression (AU15), surprise = brow raise (AU1+2) with jaw drop
(AU26).

A benchmark that a network solves perfectly cannot tell settings apart, so the clips
are hard the way real recordings are, never by mislabelling them: the apex moves the
face a pixel or a few, and some clips barely at all; each subject has their own
expressiveness, way of moving and timing; the head sways, the light drifts, the eyes
blink, all independent of the class; and the sensor adds signal-dependent noise.
Every draw comes from `GeneratorSettings.seed`.
"""

from __future__ import annotations

import math
import os
from collections import Counter
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from typing import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from mer.synthetic.real_faces import FACE_SOURCES, FaceSource
from mer.common.errors import MerError
from mer.common.files import atomic_write_text
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
# Per eye: outer and inner corner, upper-lid and lower-lid landmarks (iBUG 300-W).
EYELIDS = (((36, 39), (37, 38), (41, 40)), ((42, 45), (43, 44), (47, 46)))
# Head sway and illumination drift are sums of a few sinusoids with periods in this range,
# in frames at 100 fps (0.3-3 s; other rates scale them): slow beside a micro-expression but not still.
SWAY_PERIODS = (30.0, 300.0)
SWAY_COMPONENTS = 3
# A blink at 100 fps: the lid closes in ~60 ms, stays ~30 ms, reopens in ~120 ms.
BLINK_PHASES = (6, 3, 12)
# A head turn's peak: the head yaws this far (radians, ~26 degrees) and back; seen from the
# front the face narrows by its cosine and slides sideways by its sine of half a face width.
HEAD_TURN_YAW = 0.45
# A macro-expression moves the face this many times as far as the recording's micro-expression.
MACRO_STRENGTH = 2.5


@dataclass(frozen=True)
class GeneratorSettings:
    subjects: int = 9
    clips_per_subject: int = 12
    min_frames: int = 12
    max_frames: int = 16
    face_width: int = 210  # face box width in the 640x480 frame, like SMIC-HS's framing
    intensity: float = 0.55  # scales every displacement (1.0: ~5 px at the lip corners)
    intensity_spread: float = 0.7  # log-std of a clip's intensity: micro-expressions range from barely visible to clear
    noise: float = 2.0  # sensor read noise, grey levels (std)
    shot_noise: float = 0.05  # photon noise: its variance grows by this per grey level of signal
    subject_spread: float = 0.3  # log-std across subjects of expressiveness, of each movement's shape, of sway and blinking
    timing_spread: float = 0.12  # std of the apex's place, as a fraction of the clip, across subjects (half of it per clip)
    head_motion: float = 0.8  # std of the head's sway, px (translation; roll as seen at the face's edge)
    illumination: float = 0.02  # std of the light's drift: relative gain, and its gradient across the face
    blink_rate: float = 0.3  # blinks per second
    seed: int = 0
    fps: float = 100.0  # the rate the recordings' timing (sway, blinks) is drawn for: SMIC's 100
    # SMIC-E layout only. 0: each video is its clip with a few still frames around it.
    # N: each video is a recording of N frames, neutral but for its clip's micro-expression
    # at a drawn place inside: material for spotting.
    recording_frames: int = 0
    # Recordings only: each also holds an annotated macro-expression of this many frames
    # (another class, stronger) and an unannotated head turn of this many (0: none of either).
    macro_frames: int = 0
    head_turn_frames: int = 0

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
        events = [n for n in (self.max_frames, self.macro_frames, self.head_turn_frames) if n]
        least = sum(events) + (len(events) + 1) * self.max_frames
        if len(events) > 1 and self.recording_frames < least:
            raise MerError(f"data.generator.recording_frames={self.recording_frames} cannot hold a micro-expression, "
                           f"a macro-expression of {self.macro_frames} and a head turn of {self.head_turn_frames} "
                           f"frames with max_frames still frames around each; give at least {least}")
        if self.fps <= 0:
            raise MerError(f"data.generator.fps must be > 0 (got {self.fps})")
        negative = [f.name for f in fields(self) if f.type == "float" and getattr(self, f.name) < 0]
        if negative:
            raise MerError(f"data.generator.{', data.generator.'.join(negative)} must be >= 0")


@dataclass(frozen=True)
class SubjectStyle:
    """How one person moves, the same in all their clips: people differ in how strongly,
    in which exact direction and with what timing they move, and in how much they fidget
    and blink."""

    expressiveness: float = 1.0
    apex_shift: float = 0.0  # the apex's habitual place, as a fraction of a clip from its centre
    gain: np.ndarray = field(default_factory=lambda: np.ones(68))  # per landmark, on its displacement
    turn: np.ndarray = field(default_factory=lambda: np.zeros(68))  # per landmark, radians
    sway: float = 1.0
    blinking: float = 1.0


def subject_style(settings: GeneratorSettings, subject: int) -> SubjectStyle:
    """Drawn from a stream of its own, so a subject moves alike whatever clips the plan
    gives them."""
    rng = np.random.default_rng([settings.seed, subject])
    spread = settings.subject_spread
    return SubjectStyle(expressiveness=float(np.exp(rng.normal(0, spread))),
                        apex_shift=float(rng.normal(0, settings.timing_spread)),
                        gain=np.exp(rng.normal(0, spread, 68)), turn=rng.normal(0, spread, 68),
                        sway=float(np.exp(rng.normal(0, spread))), blinking=float(np.exp(rng.normal(0, spread))))


# Material without nuisance: a still head in steady light that never blinks, every clip and
# subject moving alike. For checking a pipeline's mechanics (the expression is then the
# only motion); the built-in data itself keeps the realism.
STILL = {"intensity_spread": 0.0, "subject_spread": 0.0, "timing_spread": 0.0, "head_motion": 0.0,
         "illumination": 0.0, "blink_rate": 0.0, "shot_noise": 0.0}


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


# Raised whenever the generator renders other clips for the same settings.
GENERATOR_VERSION = 3
# Written last into every finished tree: a tree without it was cut short, or written by
# another version of the generator (its name carries the version), and is never taken
# for complete: results on it would not be comparable with results on this one's.
COMPLETE_MARKER = f".mer-complete-v{GENERATOR_VERSION}"
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
        atomic_write_text(staging / COMPLETE_MARKER,
                          f"written whole by mer's built-in generator, version {GENERATOR_VERSION}\n", WRITE_HINT)
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


def apex_index(n_frames: int, style: SubjectStyle, rng: np.random.Generator, settings: GeneratorSettings) -> int:
    """Where a clip's motion peaks: the subject's habit, varied per clip, and never on an
    end frame, so every clip both rises and falls. SMIC-HS gives no apex, and the window
    a loader centres on the clip then catches it off-centre, as it would in real clips."""
    place = 0.5 + style.apex_shift + rng.normal(0, settings.timing_spread / 2)
    return int(np.clip(round(place * (n_frames - 1)), 1, max(n_frames - 2, 1)))


def _window(centre: np.ndarray, reach: tuple[float, float]) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """The frame rows and columns within `reach` (x, y) px of `centre`, and their coordinates
    relative to it: a bump is computed only where it is not negligible."""
    x0, x1 = (int(np.clip(centre[0] + s * reach[0], 0, FRAME_W)) for s in (-1, 1))
    y0, y1 = (int(np.clip(centre[1] + s * reach[1], 0, FRAME_H)) for s in (-1, 1))
    ys, xs = np.ogrid[y0:y1, x0:x1]
    return slice(y0, y1), slice(x0, x1), (xs - centre[0]).astype(np.float32), (ys - centre[1]).astype(np.float32)


def displacement_field(landmarks: np.ndarray, label: str, scale: float, style: SubjectStyle = SubjectStyle()
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Dense (dx, dy) over the frame: each moving landmark drags a Gaussian neighbourhood,
    by the class's displacement as this subject makes it (their gain and turn)."""
    iod = interocular_distance(landmarks)
    sigma = 0.14 * iod
    dx = np.zeros((FRAME_H, FRAME_W), np.float32)
    dy = np.zeros((FRAME_H, FRAME_W), np.float32)
    for index, (ux, uy) in MOTIONS[label].items():
        c, s = math.cos(style.turn[index]), math.sin(style.turn[index])
        amount = style.gain[index] * iod * scale
        rows, cols, x, y = _window(landmarks[index], (4 * sigma, 4 * sigma))
        weight = np.exp(-(x**2 + y**2) / (2 * sigma**2))
        dx[rows, cols] += weight * amount * (c * ux - s * uy)
        dy[rows, cols] += weight * amount * (s * ux + c * uy)
    return dx, dy


def blink_field(landmarks: np.ndarray) -> np.ndarray:
    """dy of both eyes shut: the upper lid and the skin above it slide down over the eye.
    The shift is cut off at the lower lid rather than fading below it, so the eye is
    covered instead of squeezed under the lid."""
    dy = np.zeros((FRAME_H, FRAME_W), np.float32)
    for corners, upper, lower in EYELIDS:
        outer, inner = landmarks[list(corners)]
        top, bottom = landmarks[list(upper)][:, 1].mean(), landmarks[list(lower)][:, 1].mean()
        opening = max(bottom - top, 1.0)
        width = abs(inner[0] - outer[0])
        centre = np.array([(outer[0] + inner[0]) / 2, top])
        rows, cols, x, y = _window(centre, (width, 4 * opening))
        # Above the lid the shift fades as fast as it can without folding the skin over
        # itself (slope < 1), so the brow stays put.
        above = np.exp(-np.minimum(y, 0) ** 2 / (2 * (0.7 * opening) ** 2))
        lower_lid = opening * (1 - 0.6 * (2 * x / width) ** 2)
        dy[rows, cols] += opening * np.exp(-x**2 / (2 * (0.4 * width) ** 2)) * above * (y <= lower_lid)
    return dy


def sway(n_frames: int, rng: np.random.Generator, std: float, pace: float = 1.0) -> np.ndarray:
    """A smooth stationary wander of standard deviation `std`: head motion and light drift
    in a recording of any length, slow beside a micro-expression yet moving inside one.
    `pace`: frames per frame at 100 fps (2 at 200 fps)."""
    periods = pace * np.exp(rng.uniform(*np.log(SWAY_PERIODS), SWAY_COMPONENTS))
    phases = rng.uniform(0, 2 * np.pi, SWAY_COMPONENTS)
    t = np.arange(n_frames)[:, None]
    return std * math.sqrt(2 / SWAY_COMPONENTS) * np.sin(2 * np.pi * t / periods + phases).sum(axis=1)


def blinks(n_frames: int, rng: np.random.Generator, rate: float, pace: float = 1.0) -> np.ndarray:
    """Eyelid closure per frame (0 open, 1 shut): blinks at `rate` per second, any of them
    possibly cut by the clip's ends. `pace` as for `sway`."""
    closure = np.zeros(n_frames)
    close, hold, reopen = (pace * p for p in BLINK_PHASES)
    span = close + hold + reopen
    for start in rng.uniform(-span, n_frames, rng.poisson(rate * (n_frames + span) / (100 * pace))):
        pace, depth = rng.uniform(0.8, 1.4), rng.uniform(0.7, 1.0)
        t = (np.arange(n_frames) - start) / pace
        shape = np.select([t < 0, t < close, t < close + hold, t < close + hold + reopen],
                          [0, 0.5 * (1 - np.cos(np.pi * t / close)), 1,
                           0.5 * (1 + np.cos(np.pi * (t - close - hold) / reopen))], 0)
        closure = np.maximum(closure, depth * shape)
    return closure


@dataclass(frozen=True)
class Nuisance:
    """Everything in a clip that is not its micro-expression, frame by frame."""

    shift: np.ndarray  # (n, 2) head translation, px
    roll: np.ndarray  # (n,) radians
    gain: np.ndarray  # (n,) overall light
    gradient: np.ndarray  # (n,) light change from the face's one side to the other
    closure: np.ndarray  # (n,) eyelids

    @classmethod
    def draw(cls, n_frames: int, rng: np.random.Generator, settings: GeneratorSettings, style: SubjectStyle) -> Nuisance:
        head, pace = settings.head_motion * style.sway, settings.fps / 100
        return cls(np.stack([sway(n_frames, rng, head, pace), sway(n_frames, rng, head, pace)], axis=1),
                   sway(n_frames, rng, head / (settings.face_width / 2), pace),
                   rng.uniform(0.9, 1.1) * (1 + sway(n_frames, rng, settings.illumination, pace)),
                   sway(n_frames, rng, settings.illumination, pace),
                   blinks(n_frames, rng, settings.blink_rate * style.blinking, pace))


def placement(portrait_: Portrait, rng: np.random.Generator, settings: GeneratorSettings) -> np.ndarray:
    """2x3 from the source image to the frame: the face at SMIC-HS's size, near the centre."""
    x0, y0, x1, y1 = portrait_.box
    scale = settings.face_width * rng.uniform(0.95, 1.05) / max(x1 - x0, 1)
    cx, cy = FRAME_W / 2 + rng.uniform(-15, 15), FRAME_H * 0.47 + rng.uniform(-10, 10)
    return np.array([[scale, 0, cx - scale * (x0 + x1) / 2], [0, scale, cy - scale * (y0 + y1) / 2]])


def head_pose(shift: np.ndarray, roll: float, pivot: np.ndarray, yaw: float = 0.0) -> np.ndarray:
    """2x3 from a moved frame's pixels back to the still face's: the head rolled about
    `pivot`, shifted, and turned by `yaw` (narrowed across by its cosine about `pivot`)."""
    c, s = math.cos(roll), math.sin(roll)
    rotation = np.diag([1 / math.cos(yaw), 1.0]) @ np.array([[c, s], [-s, c]])
    return np.hstack([rotation, (pivot - rotation @ (pivot + shift))[:, None]])


@lru_cache(maxsize=1)
def normal_quantiles() -> np.ndarray:
    """N(0, 1) at the midpoints of the 65536 16-bit values: indexed by random integers it
    draws Gaussian noise (tails cut at 4.3 std) at twice `standard_normal`'s speed, and
    sensor noise on every pixel of every frame is most of the generator's time."""
    normal = NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / 65536) for i in range(65536)], np.float32)


def sensor(frame: np.ndarray, rng: np.random.Generator, settings: GeneratorSettings) -> np.ndarray:
    """A camera's noise: read noise plus photon noise that grows with the signal, as in
    the uncompressed frames of a high-speed camera (SMIC-HS's BMPs)."""
    sigma = np.sqrt(settings.noise**2 + settings.shot_noise * np.arange(256, dtype=np.float32))
    noise = normal_quantiles()[rng.integers(0, 65536, frame.shape, dtype=np.uint16)]
    frame += sigma[np.clip(frame, 0, 255).astype(np.uint8)] * noise
    return np.clip(frame, 0, 255).astype(np.uint8)


def source_maps(xs: np.ndarray, ys: np.ndarray, pose: np.ndarray, motion: tuple[np.ndarray, np.ndarray] | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Where each frame pixel reads the still face: back through the head's pose, then
    against the face's own `motion` (dx, dy), which rides on the head, so its field is
    read where the head put the pixel."""
    qx = pose[0, 0] * xs + pose[0, 1] * ys + pose[0, 2]
    qy = pose[1, 0] * xs + pose[1, 1] * ys + pose[1, 2]
    if motion is None:
        return qx, qy
    return qx - cv2.remap(motion[0], qx, qy, cv2.INTER_LINEAR), qy - cv2.remap(motion[1], qx, qy, cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Extras:
    """A recording's movements besides its micro-expression, frame by frame."""

    macro_label: str | None  # the class its macro-expression moves like
    macro: np.ndarray  # (n,) the macro-expression's amplitude, 0 outside it
    yaw: np.ndarray  # (n,) the head turn's, radians


def render_frames(portrait_: Portrait, label: str, amplitudes: np.ndarray, rng: np.random.Generator,
                  settings: GeneratorSettings, style: SubjectStyle = SubjectStyle(), extras: Extras | None = None
                  ) -> list[np.ndarray]:
    """One frame per amplitude (0 = neutral, 1 = apex), with the head, the light and the
    eyelids moving throughout (and `extras`' macro-expression and head turn), and fresh
    sensor noise on each."""
    place = placement(portrait_, rng, settings)
    neutral = cv2.warpAffine(portrait_.image, place, (FRAME_W, FRAME_H), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REPLICATE)
    landmarks = transform_points(place, portrait_.landmarks)
    strength = settings.intensity * style.expressiveness * math.exp(rng.normal(0, settings.intensity_spread))
    dx, dy = displacement_field(landmarks, label, strength, style)
    shut = blink_field(landmarks)
    nuisance = Nuisance.draw(len(amplitudes), rng, settings, style)
    macro = (extras.macro, *displacement_field(landmarks, extras.macro_label, settings.intensity * style.expressiveness
                                               * MACRO_STRENGTH, style)) if extras and extras.macro_label else None
    pivot = landmarks.mean(axis=0)
    across = ((np.arange(FRAME_W, dtype=np.float32) - pivot[0]) / settings.face_width)[None, :, None]
    ys, xs = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    frames = []
    for t, a in enumerate(amplitudes.tolist()):
        closure = float(nuisance.closure[t])
        motion = (a * dx, a * dy + closure * shut) if a or closure else None
        if macro is not None and macro[0][t]:
            m = float(macro[0][t])
            motion = (a * dx + m * macro[1], a * dy + m * macro[2] + closure * shut)
        yaw = float(extras.yaw[t]) if extras is not None else 0.0
        shift = nuisance.shift[t] + np.array([math.sin(yaw) * settings.face_width / 2, 0.0])
        pose = head_pose(shift, nuisance.roll[t], pivot, yaw).astype(np.float32)
        frame = cv2.remap(neutral, *source_maps(xs, ys, pose, motion), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        frame *= float(nuisance.gain[t]) * (1 + float(nuisance.gradient[t]) * across)
        frames.append(sensor(frame, rng, settings))
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
    onset: int  # index of the micro-expression's first frame in `frames`
    apex: int  # index of its apex in `frames`
    length: int  # its frames (all of `frames` but in a recording)
    macro: tuple[int, int, int, str] | None = None  # a recording's macro-expression: onset, apex, offset, class
    turn: tuple[int, int] | None = None  # a recording's head turn: first and last frame (never annotated)


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


def rendered_clips(settings: GeneratorSettings, faces: Sequence[int], progress: bool, desc: str,
                   absolute_first: bool = False) -> Iterator[RenderedClip]:
    """The clips of `clip_plan(settings)`, subject n played by `FACE_SOURCES[faces[n - 1]]`.
    `absolute_first` draws each clip an absolute first frame number (SMIC-HS's)."""
    portraits = {n + 1: source_portrait(face) for n, face in enumerate(faces)}
    styles = {n: subject_style(settings, n) for n in portraits}
    rng = np.random.default_rng(settings.seed)
    per_label: Counter = Counter()
    per_subject: Counter = Counter()
    for number, (subject, label) in enumerate(tqdm(clip_plan(settings), desc=desc, disable=not progress)):
        per_label[subject, label] += 1
        per_subject[subject] += 1
        n_frames = int(rng.integers(settings.min_frames, settings.max_frames + 1))
        first = 100_000 + 1_000 * number + int(rng.integers(0, 500)) if absolute_first else None
        apex = apex_index(n_frames, styles[subject], rng, settings)
        extras = macro = turn = None
        if settings.macro_frames or settings.head_turn_frames:
            onset, amplitudes, extras, macro, turn = recording_events(envelope(n_frames, apex), label, rng, settings,
                                                                      styles[subject])
        else:
            onset, amplitudes = recording_amplitudes(envelope(n_frames, apex), rng, settings)
        frames = render_frames(portraits[subject], label, amplitudes, rng, settings, styles[subject], extras)
        yield RenderedClip(number, subject, label, per_label[subject, label], per_subject[subject], frames, first,
                           onset, onset + apex, n_frames, macro, turn)


def recording_amplitudes(motion: np.ndarray, rng: np.random.Generator, settings: GeneratorSettings
                         ) -> tuple[int, np.ndarray]:
    """The micro-expression's onset and the amplitude of every frame: the clip alone, or,
    with `recording_frames`, placed in a neutral recording away from its ends where the
    recording allows, so windows see neutral face on both sides."""
    if not settings.recording_frames:
        return 0, motion
    room = settings.recording_frames - len(motion)
    margin = len(motion) if room >= 2 * len(motion) else 0
    onset = int(rng.integers(margin, room - margin + 1))
    amplitudes = np.zeros(settings.recording_frames)
    amplitudes[onset:onset + len(motion)] = motion
    return onset, amplitudes


def recording_events(motion: np.ndarray, label: str, rng: np.random.Generator, settings: GeneratorSettings,
                     style: SubjectStyle) -> tuple[int, np.ndarray, Extras, tuple | None, tuple | None]:
    """A recording of `recording_frames` holding the micro-expression `motion`, a
    macro-expression of another class and a head turn (as the settings ask), in a drawn
    order, with at least `max_frames` still frames before, between and after them: (micro onset, its amplitudes, the extras, the macro's (onset, apex,
    offset, class), the turn's (first, last))."""
    n = settings.recording_frames
    lengths = {"micro": len(motion), "macro": settings.macro_frames, "turn": settings.head_turn_frames}
    events = [name for name, length in lengths.items() if length]
    order = [events[i] for i in rng.permutation(len(events))]
    free = n - sum(lengths[e] for e in events) - (len(events) + 1) * settings.max_frames
    gaps = np.floor(rng.dirichlet(np.ones(len(events) + 1)) * free).astype(int)
    onsets, at = {}, 0
    for name, gap in zip(order, gaps):
        onsets[name] = at + settings.max_frames + int(gap)
        at = onsets[name] + lengths[name]
    amplitudes, macro_amplitudes, yaw = np.zeros(n), np.zeros(n), np.zeros(n)
    amplitudes[onsets["micro"]:onsets["micro"] + len(motion)] = motion
    macro = turn = None
    macro_label = None
    if settings.macro_frames:
        macro_label = str(rng.choice([c for c in CLASSES if c != label]))
        apex = apex_index(settings.macro_frames, style, rng, settings)
        start = onsets["macro"]
        macro_amplitudes[start:start + settings.macro_frames] = envelope(settings.macro_frames, apex)
        macro = (start, start + apex, start + settings.macro_frames - 1, macro_label)
    if settings.head_turn_frames:
        start, length = onsets["turn"], settings.head_turn_frames
        side = float(rng.choice([-1.0, 1.0]))
        yaw[start:start + length] = side * HEAD_TURN_YAW * 0.5 * (1 - np.cos(2 * np.pi * np.arange(length) / (length - 1)))
        turn = (start, start + length - 1)
    return onsets["micro"], amplitudes, Extras(macro_label, macro_amplitudes, yaw), macro, turn
