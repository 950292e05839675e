"""Reading frames: image folders in numeric frame order, or video files through OpenCV."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from mer.errors import MerError

IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv"}
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def frame_number(path: Path) -> int:
    """The number at the end of a frame's file stem (`image000123.bmp` -> 123).

    Datasets number frames absolutely (SMIC starts near 500000) and not always
    zero-padded, so frames must be ordered by this number, never lexically."""
    match = _TRAILING_NUMBER.search(Path(path).stem)
    if match is None:
        raise MerError(f"{path}: frame file name has no frame number at its end")
    return int(match.group(1))


def list_frames(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise MerError(f"{folder}: clip folder does not exist")
    frames = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(frames, key=frame_number)


def read_gray(path: Path) -> np.ndarray:
    """One frame as greyscale uint8. Greyscale first is exact up to rounding: every later
    stage is a linear warp, and the colour-to-grey map is linear too."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise MerError(f"{path}: unreadable or corrupt image (re-export the frame or remove the clip)")
    return image


def read_video_gray(path: Path, max_frames: int | None = None) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        capture.release()
    if not frames:
        raise MerError(f"{path}: no frames could be decoded (empty, corrupt or unsupported video)")
    return frames
