"""Alignment: rotate so the outer eye corners lie on a horizontal line (paper Sec. III-B)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from mer.preprocess.faces import LEFT_EYE_OUTER, RIGHT_EYE_OUTER


def eye_line_angle(landmarks: np.ndarray) -> float:
    """Angle in degrees of the line from the image-left to the image-right outer eye corner."""
    dx, dy = landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]
    return math.degrees(math.atan2(float(dy), float(dx)))


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 rotation about the eye-corner midpoint that makes the eye line horizontal."""
    centre = (landmarks[RIGHT_EYE_OUTER] + landmarks[LEFT_EYE_OUTER]) / 2.0
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), eye_line_angle(landmarks), 1.0)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
