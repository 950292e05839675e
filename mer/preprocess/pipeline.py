"""The tiered preprocessing of one clip (paper Sec. III-B, Fig. 3):

frames -> face detection -> alignment -> 68 landmarks -> face crop -> eye mask
-> eye+brow and mouth regions recombined -> greyscale, over `depth` frames around the apex.

Each stage is its own module; this file only orders them and times them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from mer.common.errors import MerError
from mer.preprocess.align import alignment_matrix
from mer.preprocess.faces import DlibFaces, Face, FaceBackend, largest_face
from mer.preprocess.frames import FrameSource
from mer.preprocess.regions import ClipGeometry, clip_geometry, layout
from mer.preprocess.temporal import window_indices
from mer.preprocess.timing import NullTimer, StageTimer

ALIGNMENT_MODES = ("reference", "per_frame")
MISSING_FACE_POLICIES = ("reuse", "skip")
BACKENDS = ("dlib", "insightface")


@dataclass(frozen=True)
class PreprocessSettings:
    """Mirrors `conf/preprocess/*.yaml`; its fields are hashed into the cache key."""

    depth: int = 10
    size: int = 128
    frame_size: tuple[int, int] | None = (640, 480)
    layout: str = "regions"
    eye_mask: bool = True
    mask_scale: float = 1.4
    margin: float = 0.2
    alignment: str = "reference"
    on_missing_face: str = "reuse"
    backend: str = "dlib"
    detector_upsample: int = 0
    detect_scale: float = 0.5
    insightface_model_dir: str = "~/.insightface/models/buffalo_l"
    max_stretch: float = 2.0

    def __post_init__(self):
        layout(self.layout)
        for key, value, allowed in (("alignment", self.alignment, ALIGNMENT_MODES),
                                    ("on_missing_face", self.on_missing_face, MISSING_FACE_POLICIES),
                                    ("backend", self.backend, BACKENDS)):
            if value not in allowed:
                raise MerError(f"preprocess.{key}={value!r} is unknown; choose one of {list(allowed)}")
        if not 0 < self.detect_scale <= 1:
            raise MerError(f"preprocess.detect_scale must be in (0, 1] (got {self.detect_scale})")
        if not self.max_stretch >= 1:
            raise MerError(f"preprocess.max_stretch must be >= 1 (got {self.max_stretch})")
        if self.depth < 1 or self.size < 8:
            raise MerError(f"preprocess.depth must be >= 1 and preprocess.size >= 8 (got {self.depth}, {self.size})")
        if self.frame_size is not None:
            object.__setattr__(self, "frame_size", tuple(int(v) for v in self.frame_size))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, preprocess) -> "PreprocessSettings":
        """From a `preprocess` config section; one saved before `detect_scale` existed was
        made with detection on the full frame, so it keeps that geometry."""
        values = dict(preprocess)
        values.setdefault("detect_scale", 1.0)
        return cls(**values)


@lru_cache(maxsize=None)
def face_backend(settings: PreprocessSettings) -> FaceBackend:
    """One backend per process and settings (insightface loads ONNX sessions)."""
    if settings.backend == "insightface":
        from mer.preprocess.insightface_backend import InsightFaces

        return InsightFaces(settings.insightface_model_dir)
    return DlibFaces(upsample=settings.detector_upsample)


def geometry_for(gray: np.ndarray, backend: FaceBackend, settings: PreprocessSettings, timer: StageTimer | None = None
                 ) -> ClipGeometry | None:
    """Detect, align and landmark one frame; None when no face is found."""
    timer = timer or NullTimer()
    face = largest_face(backend, gray, settings.detect_scale, timer)
    if face is None:
        return None
    with timer.stage("align+crop+mask geometry"):
        return geometry_of(face, settings)


def geometry_of(face: Face, settings: PreprocessSettings) -> ClipGeometry:
    """Alignment, crop boxes and eye mask from a face's landmarks."""
    return clip_geometry(face.landmarks, alignment_matrix(face.landmarks), settings.layout, settings.size,
                         settings.margin, settings.eye_mask, settings.mask_scale)


def preprocess_frames(frames: Sequence[np.ndarray], reference: np.ndarray, settings: PreprocessSettings,
                      backend: FaceBackend | None = None, timer: StageTimer | None = None) -> np.ndarray:
    """(depth, size, size) uint8 from already-selected greyscale frames (see `window_clip`)."""
    backend = backend or face_backend(settings)
    timer = timer or NullTimer()
    images = [reference, *frames]
    return window_clip(range(1, len(images)), 0, images.__getitem__,
                       lambda i: geometry_for(images[i], backend, settings, timer), settings, timer)


def clip_reference_geometry(indices: Sequence[int], reference: int,
                            geometry: Callable[[int], ClipGeometry | None]) -> ClipGeometry | None:
    """The face a clip's frames are warped by: the reference frame's, else the first selected
    frame's that has one; None where none has."""
    for candidate in (reference, *indices):
        found = geometry(candidate)
        if found is not None:
            return found
    return None


def window_clip(indices: Sequence[int], reference: int, frame: Callable[[int], np.ndarray],
                geometry: Callable[[int], ClipGeometry | None], settings: PreprocessSettings,
                timer: StageTimer | None = None) -> np.ndarray:
    """(len(indices), size, size) uint8: frames by index through `frame`, their faces through
    `geometry` (a long video caches it per frame index).

    Reference mode finds the face once, on `reference` (the onset), and applies that
    geometry to every frame: per-frame landmark jitter is larger than a micro-expression
    and would drown it. If the reference has no face, the selected frames are tried in
    order. Per-frame mode re-detects on each frame; where a frame has no face it reuses
    the last good geometry (`on_missing_face=reuse`) or fails the clip (`skip`)."""
    timer = timer or NullTimer()
    found = clip_reference_geometry(indices, reference, geometry)
    if found is None:
        raise MerError("no face found in the reference frame nor in any selected frame")
    out = np.empty((len(indices), settings.size, settings.size), dtype=np.uint8)
    for i, index in enumerate(indices):
        if settings.alignment == "per_frame":
            own = geometry(index)
            if own is None and settings.on_missing_face == "skip":
                raise MerError(f"no face in selected frame {i} (preprocess.on_missing_face=skip)")
            found = own or found
        with timer.stage("warp regions+mask"):
            out[i] = found.apply(frame(index))
    return out


def reference_index(n_frames: int, window: Sequence[int], onset: int | None) -> int:
    """The annotated onset when there is one, else the window's first frame: a clip cut
    at onset starts there anyway, and in a long recording the head may have moved far
    from its first frame by the time of the apex."""
    return window[0] if onset is None else int(np.clip(onset, 0, n_frames - 1))


def preprocess_clip(source: FrameSource, settings: PreprocessSettings, apex: int | None = None, onset: int | None = None,
                    backend: FaceBackend | None = None, timer: StageTimer | None = None) -> np.ndarray:
    """Read only the `depth` frames around the apex plus the reference frame, and
    preprocess them. Indices count from the clip's first frame."""
    timer = timer or NullTimer()
    if settings.depth > settings.max_stretch * len(source):
        raise MerError(f"{source.path}: its {len(source)} frames cannot fill preprocess.depth={settings.depth} "
                       f"without repeating each more than preprocess.max_stretch={settings.max_stretch:g} times")
    indices = window_indices(len(source), settings.depth, apex)
    reference = reference_index(len(source), indices, onset)
    with timer.stage("read frames+grey"):
        frames = source.read([reference, *indices], settings.frame_size)
    return preprocess_frames([frames[i] for i in indices], frames[reference], settings, backend, timer)
