"""Sliding `depth`-frame windows over a streamed recording, each preprocessed exactly as a
training clip (`window_clip`: one face geometry per window from its reference frame, or
per frame, as the checkpoint's `preprocess.alignment` says), classified in batches.

Every look follows training's rule (`largest_face` at the model's `preprocess.detect_scale`,
unless `faces.detect_scale` says otherwise) on a schedule: `track` (the default) looks at
each window's own first frame, the reference a training clip uses, and fits its landmarks
in a box carried from the previous look, detecting only as `FaceTracker` says; `window`
detects on each window's first frame (with `faces.detect_scale=1`, the exact path the
tracked one is checked against); `every` looks every N frames and a window takes the
latest look at or before its start. Where the scheduled frame has no face, the window's
own frames are searched by detection, as in training; a window with no face anywhere is
reported as such, never classified."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

import numpy as np

from mer.common.errors import MerError
from mer.preprocess.faces import FaceBackend
from mer.preprocess.pipeline import (PreprocessSettings, clip_reference_geometry, face_backend, geometry_for, geometry_of,
                                     window_clip)
from mer.preprocess.regions import ClipGeometry
from mer.preprocess.tracking import FaceTracker, TrackSettings

REDETECT = ("track", "window", "every")


@dataclass(frozen=True)
class WindowSettings:
    stride: int = 5
    batch_size: int = 20
    redetect: str = "track"
    every: int = 50  # every: frames between looks; track: at most this many frames between detections
    detect_scale: float | None = None  # None: the model's preprocess.detect_scale
    max_shift: float = TrackSettings.max_shift
    min_similarity: float = TrackSettings.min_similarity

    def __post_init__(self):
        if self.stride < 1 or self.batch_size < 1 or self.every < 1:
            raise MerError("window.stride, window.batch_size and faces.every must be >= 1")
        if self.redetect not in REDETECT:
            raise MerError(f"faces.redetect={self.redetect!r} is unknown; choose one of {list(REDETECT)}")
        if self.detect_scale is not None and not 0 < self.detect_scale <= 1:
            raise MerError(f"faces.detect_scale must be null or in (0, 1] (got {self.detect_scale})")

    def track(self) -> TrackSettings:
        return TrackSettings(self.every, self.max_shift, self.min_similarity)


@dataclass
class Window:
    start: int  # first frame index
    end: int  # last frame index (inclusive)
    face: bool
    motion: float = float("nan")  # mean absolute grey-level change from the window's first frame
    probabilities: np.ndarray | None = None
    eyes: np.ndarray | None = None  # the outer eye corners of the face its geometry came from: where the head is

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


def motion(clip: np.ndarray) -> float:
    """How much the preprocessed face moves within the window, relative to its reference
    (first) frame: the spotting score's raw material (the classes have no neutral one)."""
    return float(np.abs(clip[1:].astype(np.int16) - clip[:1]).mean())


class WindowStream:
    """Feed frames in order; windows come out in order, classified in batches."""

    def __init__(self, settings: PreprocessSettings, windows: WindowSettings,
                 classify: Callable[[np.ndarray], np.ndarray], backend: FaceBackend | None = None):
        self.backend = backend or face_backend(settings)
        if windows.detect_scale is not None:
            settings = replace(settings, detect_scale=windows.detect_scale)
        self.settings, self.windows, self.classify = settings, windows, classify
        self.tracker = FaceTracker(self.backend, settings.detect_scale, windows.track()) \
            if windows.redetect == "track" else None
        per_frame = settings.alignment == "per_frame"
        # Tracking follows the face through every frame a window's geometry is taken from.
        self.period = {"track": 1 if per_frame else windows.stride, "window": windows.stride,
                       "every": windows.every}[windows.redetect]
        self.buffer: deque[tuple[int, np.ndarray]] = deque(maxlen=settings.depth)
        self.looks: dict[int, ClipGeometry | None] = {}  # frame index -> face geometry found there
        self.pending: list[tuple[Window, np.ndarray | None]] = []

    def _look(self, index: int, frames: dict[int, np.ndarray]) -> ClipGeometry | None:
        """A frame's face: the tracker's where it looked (every scheduled frame, in order),
        else a detection (a window searching its own frames)."""
        if index not in self.looks:
            self.looks[index] = geometry_for(frames[index], self.backend, self.settings) if index in frames else None
        return self.looks[index]

    def _scheduled_look(self, index: int, frame: np.ndarray) -> None:
        if self.tracker is None:
            self._look(index, {index: frame})
        else:
            face = self.tracker.look(index, frame)
            self.looks[index] = None if face is None else geometry_of(face, self.settings)

    def _window(self, start: int) -> tuple[Window, np.ndarray | None]:
        frames = dict(self.buffer)
        indices = range(start, start + self.settings.depth)
        reference = start - start % self.period if self.windows.redetect == "every" else start
        window = Window(start, indices[-1], face=False)
        try:
            clip = window_clip(indices, reference, frames.__getitem__, lambda i: self._look(i, frames), self.settings)
        except MerError:
            return window, None
        window.face, window.motion = True, motion(clip)
        # The looks window_clip took are cached, so this finds the face it warped by without detecting again.
        window.eyes = clip_reference_geometry(indices, reference, self.looks.get).eyes
        return window, clip

    def _flush(self) -> Iterator[Window]:
        clips = [clip for _, clip in self.pending if clip is not None]
        probabilities = iter(self.classify(np.stack(clips)) if clips else ())
        for window, clip in self.pending:
            if clip is not None:
                window.probabilities = next(probabilities)
            yield window
        self.pending = []

    def feed(self, index: int, frame: np.ndarray | None) -> Iterator[Window]:
        """One frame; None breaks the stream (an unreadable frame): no window spans it."""
        if frame is None:
            self.buffer.clear()
            return
        self.buffer.append((index, frame))
        if index % self.period == 0:
            self._scheduled_look(index, frame)
        start = index - self.settings.depth + 1
        if len(self.buffer) == self.settings.depth and self.buffer[0][0] == start and start % self.windows.stride == 0:
            self.pending.append(self._window(start))
            # Looks older than any later window's reference are never needed again.
            oldest = start - (self.windows.every if self.windows.redetect == "every" else 0)
            for stale in [i for i in self.looks if i < oldest]:
                del self.looks[stale]
            if sum(clip is not None for _, clip in self.pending) >= self.windows.batch_size:
                yield from self._flush()

    def finish(self) -> Iterator[Window]:
        yield from self._flush()


def stream_windows(frames: Iterable[np.ndarray | None], settings: PreprocessSettings, windows: WindowSettings,
                   classify: Callable[[np.ndarray], np.ndarray], backend: FaceBackend | None = None) -> Iterator[Window]:
    stream = WindowStream(settings, windows, classify, backend)
    for index, frame in enumerate(frames):
        yield from stream.feed(index, frame)
    yield from stream.finish()
