"""insightface backend (optional): SCRFD detection + the 68-point 3D landmark model.

It uses model files the user already has and never downloads: insightface's own
FaceAnalysis fetches `buffalo_l` from the internet when files are missing, so this
backend loads the two ONNX files it needs directly and says clearly what is absent."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mer.common.errors import MerError
from mer.preprocess.faces import FaceBackend

REQUIRED_FILES = ("det_10g.onnx", "1k3d68.onnx")  # from insightface's buffalo_l pack


class InsightFaces(FaceBackend):
    name = "insightface"

    def __init__(self, model_dir: str | Path, det_size: int = 640):
        folder = Path(model_dir).expanduser()
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise MerError(
                f"preprocess.backend=insightface needs {', '.join(missing)} in {folder} "
                "(files of insightface's buffalo_l model pack). Copy them there, or point "
                "preprocess.insightface_model_dir at the folder holding them; nothing is downloaded."
            )
        try:
            from insightface.model_zoo import get_model
        except ImportError as error:
            raise MerError("preprocess.backend=insightface needs the insightface package: `pip install -e .[insightface]`") from error
        providers = ["CPUExecutionProvider"]
        self.detector = get_model(str(folder / "det_10g.onnx"), providers=providers)
        self.detector.prepare(ctx_id=-1, input_size=(det_size, det_size))
        self.landmarker = get_model(str(folder / "1k3d68.onnx"), providers=providers)
        self.landmarker.prepare(ctx_id=-1)

    def detect_boxes(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        boxes, _ = self.detector.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), max_num=0)
        return [tuple(int(round(v)) for v in box[:4]) for box in boxes]

    def landmarks(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        from insightface.app.common import Face

        face = Face(bbox=np.asarray(box, dtype=np.float32))
        # 1k3d68 predicts the iBUG 68 points in 3D, in the 68-point order: keep x, y.
        points = self.landmarker.get(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), face)
        return np.asarray(points[:, :2], dtype=np.float32)
