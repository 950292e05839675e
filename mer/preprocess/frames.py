"""Frames stage: a clip's frames from an image folder (numeric frame order) or a video
file (OpenCV), as greyscale, all of one size, optionally resized (the paper: 640x480)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from mer.common.errors import MerError

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
    stream = FrameStream(path)
    frames = [frame for frame in stream if frame is not None]
    if not frames:
        raise MerError(f"{path}: no frames could be decoded (empty, corrupt or unsupported video)")
    return frames


class FrameStream:
    """A video or a frame folder read one frame at a time, greyscale, resized to `size`
    (w, h) when given: memory stays flat over hours of recording.

    Iterating yields each frame, or None for a frame folder's unreadable image (a gap the
    caller must not bridge). A video that stops decoding before the frame count its
    header announces (a truncated file) ends early, and `problem` says where."""

    def __init__(self, path: Path, frames: Sequence[Path] = (), size: Sequence[int] | None = None,
                 fps: float | None = None):
        self.path = Path(path)
        self.size = tuple(size) if size is not None else None
        self.frames = list(frames)
        self.fps = fps
        self.announced: int | None = None
        self.problem: str | None = None
        self._capture = None
        if self.frames:
            self.announced = len(self.frames)
        elif self.path.is_dir():
            self.frames = list_frames(self.path)
            self.announced = len(self.frames)
        elif not self.path.exists():
            raise MerError(f"{self.path}: does not exist (no such video file or frame folder)")
        elif self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise MerError(f"{self.path}: neither a frame folder nor a video ({sorted(VIDEO_SUFFIXES)})")
        else:
            self._capture = cv2.VideoCapture(str(self.path))
            if not self._capture.isOpened():
                raise MerError(f"{self.path}: no frames could be decoded (empty, corrupt or unsupported video)")
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.announced = count if count > 0 else None
            rate = self._capture.get(cv2.CAP_PROP_FPS)
            # The file's own rate wins: a --fps given for a folder must not rescale a video.
            self.fps = rate if rate and rate > 0 else fps

    def _resized(self, gray: np.ndarray) -> np.ndarray:
        if self.size is None or gray.shape == (self.size[1], self.size[0]):
            return gray
        return cv2.resize(gray, self.size, interpolation=cv2.INTER_AREA)

    def __iter__(self) -> Iterator[np.ndarray | None]:
        if self._capture is None:
            for path in self.frames:
                try:
                    yield self._resized(read_gray(path))
                except MerError as error:
                    log.warning("%s", error)
                    yield None
            return
        decoded = 0
        try:
            while True:
                ok, frame = self._capture.read()
                if not ok:
                    break
                decoded += 1
                yield self._resized(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        finally:
            self._capture.release()
        if decoded == 0:
            self.problem = f"{self.path}: no frames could be decoded (empty, corrupt or unsupported video)"
        elif self.announced and decoded < self.announced:
            self.problem = (f"{self.path}: decoding stopped after {decoded} of the {self.announced} frames its header "
                            "announces (a truncated or damaged file); the frames before are used")


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
