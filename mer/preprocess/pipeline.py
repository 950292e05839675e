"""The tiered preprocessing of one clip: frames -> face -> alignment -> landmarks -> crop
-> eye mask -> recombined regions -> greyscale, over `depth` frames around the apex."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mer.errors import MerError
from mer.preprocess.align import alignment_matrix
from mer.preprocess.faces import DlibFaces, largest_face
from mer.preprocess.frames import read_gray
from mer.preprocess.regions import ClipGeometry, clip_geometry, layout
from mer.preprocess.temporal import window_indices

ALIGNMENT_MODES = ("reference", "per_frame")


@dataclass(frozen=True)
class PreprocessSettings:
    """Mirrors `conf/preprocess/*.yaml`; its fields are hashed into the cache key."""

    depth: int = 10
    size: int = 128
    layout: str = "regions"
    eye_mask: bool = True
    mask_scale: float = 1.4
    margin: float = 0.2
    alignment: str = "reference"
    backend: str = "dlib"
    detector_upsample: int = 0

    def __post_init__(self):
        layout(self.layout)
        if self.alignment not in ALIGNMENT_MODES:
            raise MerError(f"preprocess.alignment={self.alignment!r} is unknown; choose one of {ALIGNMENT_MODES}")
        if self.depth < 1 or self.size < 8:
            raise MerError(f"preprocess.depth must be >= 1 and preprocess.size >= 8 (got {self.depth}, {self.size})")
        if self.backend != "dlib":
            raise MerError(f"preprocess.backend={self.backend!r} is unknown; available: ['dlib']")

    def as_dict(self) -> dict:
        return asdict(self)


def face_backend(settings: PreprocessSettings) -> DlibFaces:
    return DlibFaces(upsample=settings.detector_upsample)


def geometry_for(gray: np.ndarray, backend, settings: PreprocessSettings) -> ClipGeometry | None:
    """Detect, align and landmark one frame; None when no face is found."""
    face = largest_face(backend, gray)
    if face is None:
        return None
    return clip_geometry(
        face.landmarks,
        alignment_matrix(face.landmarks),
        settings.layout,
        settings.size,
        settings.margin,
        settings.eye_mask,
        settings.mask_scale,
    )


def preprocess_frames(
    frames: Sequence[np.ndarray], settings: PreprocessSettings, backend=None, reference: int = 0
) -> np.ndarray:
    """(depth, size, size) uint8 from already-selected greyscale frames.

    Reference mode finds the face once, on `reference` (the onset), and applies that
    geometry to every frame: per-frame landmark jitter is larger than a micro-expression
    and would drown it. If the reference frame has no face, the next frames are tried.
    Per-frame mode re-detects on each frame and reuses the last good geometry where a
    frame has no face."""
    backend = backend or face_backend(settings)
    order = list(range(reference, len(frames))) + list(range(0, reference))
    geometry = None
    for i in order:
        geometry = geometry_for(frames[i], backend, settings)
        if geometry is not None:
            break
    if geometry is None:
        raise MerError("no face found in any selected frame")
    out = np.empty((len(frames), settings.size, settings.size), dtype=np.uint8)
    for i, gray in enumerate(frames):
        if settings.alignment == "per_frame":
            geometry = geometry_for(gray, backend, settings) or geometry
        out[i] = geometry.apply(gray)
    return out


def preprocess_clip(
    frame_paths: Sequence[Path], settings: PreprocessSettings, apex: int | None = None, backend=None
) -> np.ndarray:
    """Read only the `depth` frames around the apex (plus the onset as reference) and
    preprocess them. `apex` is an index into `frame_paths`."""
    if not frame_paths:
        raise MerError("clip has no frames")
    indices = window_indices(len(frame_paths), settings.depth, apex)
    frames = [read_gray(frame_paths[i]) for i in indices]
    return preprocess_frames(frames, settings, backend)
