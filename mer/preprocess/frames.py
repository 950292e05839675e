"""Frames stage: a clip's frames from an image folder (numeric frame order) or a video
file (OpenCV), as greyscale, all of one size, optionally resized (the paper: 640x480)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from mer.errors import MerError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg"}
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
    """A folder's frame images in frame order. Hidden files are never frames (macOS copies
    leave `._image000001.bmp` beside each image, metadata under the image's own name); an
    image without a frame number (a cover, a thumbnail) is left out with a warning, so the
    clip still loads from its numbered frames."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MerError(f"{folder}: clip folder does not exist")
    numbered = []
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            numbered.append((frame_number(path), path))
        except MerError:
            log.warning("%s: image file name has no frame number at its end; left out of the clip", path)
    return [path for _, path in sorted(numbered)]


def read_gray(path: Path) -> np.ndarray:
    """One frame as greyscale uint8. Greyscale first is exact up to rounding: every later
    stage is a linear warp, and the colour-to-grey map is linear too."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise MerError(f"{path}: unreadable or corrupt image (re-export the frame or remove the clip)")
    return image


def read_video_gray(path: Path) -> list[np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise MerError(f"{path}: video file does not exist")
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        capture.release()
    if not frames:
        raise MerError(f"{path}: no frames could be decoded (empty, corrupt or unsupported video)")
    return frames


class FrameSource:
    """Random access to a clip's greyscale frames, reading only what is asked for.
    A video is decoded once, in order (seeking is unreliable in many codecs)."""

    def __init__(self, path: Path, frames: Sequence[Path] = ()):
        self.path = Path(path)
        self.frames = list(frames)
        self._video: list[np.ndarray] | None = None
        if not self.frames:
            if self.path.suffix.lower() in VIDEO_SUFFIXES:
                self._video = read_video_gray(self.path)
            elif self.path.is_dir():
                self.frames = list_frames(self.path)
            elif not self.path.exists():
                raise MerError(f"{self.path}: clip path does not exist")
            else:
                raise MerError(f"{self.path}: neither a frame folder nor a video ({sorted(VIDEO_SUFFIXES)})")
        if len(self) == 0:
            raise MerError(f"{self.path}: clip has no frames")

    def __len__(self) -> int:
        return len(self._video) if self._video is not None else len(self.frames)

    def name(self, index: int) -> str:
        return str(self.frames[index]) if self._video is None else f"{self.path} frame {index}"

    def read(self, indices: Sequence[int], size: Sequence[int] | None = None) -> dict[int, np.ndarray]:
        """Frames by index, checked to share one resolution, resized to `size` (w, h) if given."""
        out = {i: (self._video[i] if self._video is not None else read_gray(self.frames[i])) for i in dict.fromkeys(indices)}
        shapes = {image.shape for image in out.values()}
        if len(shapes) > 1:
            first = next(iter(out.values())).shape
            odd = next(i for i, image in out.items() if image.shape != first)
            raise MerError(f"{self.path}: frames of one clip differ in size ({self.name(odd)} is "
                           f"{out[odd].shape[1]}x{out[odd].shape[0]}, others {first[1]}x{first[0]}); re-export the clip")
        if size is not None:
            w, h = size
            out = {i: image if image.shape == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
                   for i, image in out.items()}
        return out
