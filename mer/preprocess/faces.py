"""Face detection + 68-point landmarks (iBUG 300-W scheme) behind one interface.

The masks and region crops downstream index landmarks by the 68-point scheme, so
every backend must return exactly that layout.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mer.errors import MerError

# Index ranges of the 68-point scheme, used by alignment, masks and crops.
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)  # subject's right = image left
LEFT_BROW = slice(22, 27)
NOSE = slice(27, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
# Outer eye corners: the line the alignment stage makes horizontal.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray  # (68, 2) float32, x then y

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)


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


@lru_cache(maxsize=None)
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_predictor_path()))


class DlibFaces:
    """dlib HOG detector + the iBUG 68-point shape predictor, fully offline."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        self.upsample = int(upsample)

    def detect(self, gray: np.ndarray) -> list[Face]:
        detector, predictor = _dlib_models()
        return [self._face(gray, rect, predictor) for rect in detector(gray, self.upsample)]

    def landmarks_in_box(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> Face:
        """Landmarks inside a known face box (no detection), e.g. on an aligned frame."""
        import dlib

        _, predictor = _dlib_models()
        return self._face(gray, dlib.rectangle(*map(int, box)), predictor)

    @staticmethod
    def _face(gray, rect, predictor) -> Face:
        shape = predictor(gray, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return Face((rect.left(), rect.top(), rect.right(), rect.bottom()), pts)


def largest_face(backend, gray: np.ndarray) -> Face | None:
    faces = backend.detect(gray)
    return max(faces, key=lambda f: f.area) if faces else None
