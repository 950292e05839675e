"""Sliding `depth`-frame windows over a streamed recording, each preprocessed exactly as a
training clip (`window_clip`: one face geometry per window from its reference frame, or
per frame, as the checkpoint's `preprocess.alignment` says), classified in batches.

Faces are found on a schedule: `window` looks at each window's own first frame, the
reference a training clip uses; `every` looks every N frames and a window takes the
latest look at or before its start (cheaper on long, steady recordings). Where the
scheduled frame has no face, the window's own frames are tried, as in training; a window
with no face anywhere is reported as such, never classified."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from mer.errors import MerError
from mer.preprocess.faces import FaceBackend
from mer.preprocess.pipeline import PreprocessSettings, face_backend, geometry_for, window_clip
from mer.preprocess.regions import ClipGeometry

REDETECT = ("window", "every")


@dataclass(frozen=True)
class WindowSettings:
    stride: int = 5
    batch_size: int = 20
    redetect: str = "window"
    every: int = 50

    def __post_init__(self):
        if self.stride < 1 or self.batch_size < 1 or self.every < 1:
            raise MerError("window.stride, window.batch_size and faces.every must be >= 1")
        if self.redetect not in REDETECT:
            raise MerError(f"faces.redetect={self.redetect!r} is unknown; choose one of {list(REDETECT)}")


@dataclass
class Window:
    start: int  # first frame index
    end: int  # last frame index (inclusive)
    face: bool
    motion: float = float("nan")  # mean absolute grey-level change from the window's first frame
    probabilities: np.ndarray | None = None

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
        self.settings, self.windows, self.classify = settings, windows, classify
        self.backend = backend or face_backend(settings)
        self.period = windows.stride if windows.redetect == "window" else windows.every
        self.buffer: deque[tuple[int, np.ndarray]] = deque(maxlen=settings.depth)
        self.looks: dict[int, ClipGeometry | None] = {}  # frame index -> face geometry found there
        self.pending: list[tuple[Window, np.ndarray | None]] = []

    def _look(self, index: int, frames: dict[int, np.ndarray]) -> ClipGeometry | None:
        if index not in self.looks:
            self.looks[index] = geometry_for(frames[index], self.backend, self.settings) if index in frames else None
        return self.looks[index]

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
            self._look(index, {index: frame})
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
