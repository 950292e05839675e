"""Face detection + 68-point landmarks (iBUG 300-W scheme) behind one interface.

The masks and region crops downstream index landmarks by the 68-point scheme, so
every backend must return exactly that layout.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mer.common.errors import MerError
from mer.preprocess.timing import NullTimer


# Index ranges of the 68-point scheme, used by alignment, masks and crops.
RIGHT_BROW = slice(17, 22)  # subject's right = image left
LEFT_BROW = slice(22, 27)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
# Outer eye corners: the line the alignment stage makes horizontal.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray  # (68, 2) float32, x then y


def dlib_predictor_path() -> Path:
    """The 68-point model shipped by `face-recognition-models`, found without importing it
    (its import needs pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MerError(
            "dlib's 68-landmark model is missing: install the project's dependencies "
            "(`make setup`, which installs face-recognition-models)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MerError(f"dlib's 68-landmark model is missing at {path}: reinstall face-recognition-models.")
    return path


class FaceBackend(ABC):
    """Two steps, timed separately: face boxes, then 68 landmarks inside one box."""

    name = "base"

    @abstractmethod
    def detect_boxes(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x0, y0, x1, y1) in a greyscale frame."""

    @abstractmethod
    def landmarks(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(68, 2) float32 points of the iBUG 300-W scheme inside `box`."""

    def detect(self, gray: np.ndarray) -> list[Face]:
        """Every face with its landmarks."""
        return [Face(box, self.landmarks(gray, box)) for box in self.detect_boxes(gray)]


@lru_cache(maxsize=None)
def dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_predictor_path()))


class DlibFaces(FaceBackend):
    """dlib HOG detector + the iBUG 68-point shape predictor, fully offline."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        self.upsample = int(upsample)

    def detect_boxes(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        detector, _ = dlib_models()
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(gray, self.upsample)]

    def landmarks(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        import dlib

        _, predictor = dlib_models()
        shape = predictor(gray, dlib.rectangle(*map(int, box)))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def box_area(box: tuple[int, int, int, int]) -> int:
    x0, y0, x1, y1 = box
    return max(0, x1 - x0) * max(0, y1 - y0)


def detected_boxes(backend: FaceBackend, gray: np.ndarray, detect_scale: float) -> list[tuple[int, int, int, int]]:
    """Face boxes in full-resolution pixels, found on the frame scaled by `detect_scale`
    (the detector's cost grows with the pixels it scans; a face of 640x480 video is still
    found at half size), and on the full frame where the scaled one shows none, so a
    small face the full frame shows is never lost to the speed-up."""
    if detect_scale < 1:
        small = cv2.resize(gray, None, fx=detect_scale, fy=detect_scale, interpolation=cv2.INTER_AREA)
        boxes = backend.detect_boxes(small)
        if boxes:
            return [tuple(int(round(v / detect_scale)) for v in box) for box in boxes]
    return backend.detect_boxes(gray)


def largest_face(backend: FaceBackend, gray: np.ndarray, detect_scale: float, timer=None) -> Face | None:
    """The rule every face look of mer follows (training clips, `mer predict`, `mer
    spot-eval`): the largest box `detected_boxes` finds, and 68 landmarks fitted inside it
    on the full-resolution frame."""
    timer = timer or NullTimer()
    with timer.stage("detect"):
        boxes = detected_boxes(backend, gray, detect_scale)
    if not boxes:
        return None
    box = max(boxes, key=box_area)
    with timer.stage("landmarks"):
        return Face(box, backend.landmarks(gray, box))
