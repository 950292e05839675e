"""A face followed through a recording, so that most looks fit landmarks without detecting.

Training makes each clip's geometry from one look at its reference frame (`largest_face`:
detection, then 68 landmarks). A long recording needs a look at every window's reference
frame, and detection is most of a look's time. The tracker fits the landmarks of a look in
a box carried from the previous look's landmarks, placed on them as the last detection's
box sat on its own landmarks: on a face that has not moved, the box and so the fit are the
detection's. It detects again (by training's rule):

- on its first look, and while it holds no face (a face lost is found again on the first
  look where the detector sees it);
- at least every `every` frames, where the largest face is chosen again, as training
  chooses it (a second, larger face that entered is taken there);
- when the fit moved more than `max_shift` face sizes since the previous look (a fast head
  turn: a carried box that far off gives a poor fit);
- when the face's appearance departs from the last detection's (normalised correlation of
  its grey patch below `min_similarity`): the face left the frame or turned away, and the
  landmarks were fitted to something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mer.preprocess.faces import Face, FaceBackend, largest_face

PATCH = 32  # pixels of the square grey patch the appearance check compares


@dataclass(frozen=True)
class TrackSettings:
    every: int = 50
    max_shift: float = 0.15
    min_similarity: float = 0.6


def _centre_and_size(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    return (low + high) / 2, float(np.sqrt(np.prod(np.maximum(high - low, 1.0))))


def _patch(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The box's pixels at PATCH x PATCH, zero-mean and unit-norm; None when the box is off the frame."""
    x0, y0, x1, y1 = (max(0, v) for v in box)
    x1, y1 = min(x1, gray.shape[1]), min(y1, gray.shape[0])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    patch = cv2.resize(gray[y0:y1, x0:x1], (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-6 else None


class FaceTracker:
    """Looks in frame order (`look(index, gray)`); each gives the face there, or None."""

    def __init__(self, backend: FaceBackend, detect_scale: float, settings: TrackSettings = TrackSettings()):
        self.backend, self.detect_scale, self.settings = backend, detect_scale, settings
        self.face: Face | None = None  # the previous look's face
        self.detected_at = 0
        self.template: np.ndarray | None = None  # the grey patch of the last detected face
        self.placement = (np.zeros(2), 1.0, 1.0)  # detection box on its landmarks: offset, width, height / size
        self.detections = 0  # counted, so a benchmark can say how often the detector ran

    def _detect(self, index: int, gray: np.ndarray) -> Face | None:
        self.detections += 1
        self.face = largest_face(self.backend, gray, self.detect_scale)
        self.template = None
        if self.face is not None:
            centre, size = _centre_and_size(self.face.landmarks)
            x0, y0, x1, y1 = self.face.box
            self.placement = ((np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - centre) / size, (x1 - x0) / size,
                              (y1 - y0) / size)
            self.template = _patch(gray, self.face.box)
            self.detected_at = index
        return self.face

    def _carried_box(self, centre: np.ndarray, size: float) -> tuple[int, int, int, int]:
        offset, width, height = self.placement
        cx, cy = centre + offset * size
        half_w, half_h = width * size / 2, height * size / 2
        return tuple(int(round(v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))

    def _holds(self, gray: np.ndarray, before: np.ndarray, size: float, fitted: Face) -> bool:
        after, _ = _centre_and_size(fitted.landmarks)
        if np.linalg.norm(after - before) > self.settings.max_shift * size:
            return False
        patch = _patch(gray, fitted.box)
        return patch is not None and self.template is not None and float((patch * self.template).sum()) >= \
            self.settings.min_similarity

    def look(self, index: int, gray: np.ndarray) -> Face | None:
        previous = self.face
        if previous is None or index - self.detected_at >= self.settings.every:
            return self._detect(index, gray)
        centre, size = _centre_and_size(previous.landmarks)
        box = self._carried_box(centre, size)
        fitted = Face(box, self.backend.landmarks(gray, box))
        if not self._holds(gray, centre, size, fitted):
            return self._detect(index, gray)
        self.face = fitted
        return fitted
