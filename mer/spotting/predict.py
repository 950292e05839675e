"""`mer predict`: a trained model over one recording, streamed, to per-window class
probabilities, spotted intervals, and their CSV, JSON and timeline PNG."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from mer.common.errors import MerError
from mer.common.files import atomic_write, atomic_write_text
from mer.preprocess.faces import FaceBackend
from mer.preprocess.frames import FrameStream
from mer.preprocess.read_ahead import read_ahead
from mer.spotting.expression_types import MICRO
from mer.spotting.intervals import RejectedInterval, SpottedInterval, SpottingSettings, spot
from mer.spotting.model import TrainedModel
from mer.spotting.windows import Window, WindowSettings, stream_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TruthInterval:
    onset: int
    offset: int
    label: str = ""
    kind: str = MICRO  # as the corpus annotates it; SMIC-E annotates micro-expressions only


@dataclass
class Prediction:
    source: str
    fps: float | None
    frames: int  # frames read
    classes: list[str]
    depth: int
    stride: int
    windows: list[Window] = field(default_factory=list)
    intervals: list[SpottedInterval] = field(default_factory=list)
    rejected: list[RejectedInterval] = field(default_factory=list)  # candidates the rule turned down, and why
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    head: np.ndarray = field(default_factory=lambda: np.empty(0))  # per window, see `intervals.head_shifts`
    threshold: float = float("nan")
    no_face: list[tuple[int, int]] = field(default_factory=list)  # frame stretches no window found a face in
    message: str | None = None  # why the result is empty or cut short
    provenance: dict = field(default_factory=dict)

    def seconds(self, frame: float) -> float:
        """A frame index as a time stamp: seconds at the recording's rate, else the index."""
        return frame / self.fps if self.fps else frame


def faceless_stretches(windows: Sequence[Window]) -> list[tuple[int, int]]:
    stretches: list[list[int]] = []
    for window in windows:
        if window.face:
            continue
        if stretches and window.start <= stretches[-1][1] + 1:
            stretches[-1][1] = max(stretches[-1][1], window.end)
        else:
            stretches.append([window.start, window.end])
    return [tuple(s) for s in stretches]


def predict_recording(path: Path, model: TrainedModel, classify: Callable[[np.ndarray], np.ndarray],
                      windows: WindowSettings, spotting: SpottingSettings, fps: float | None = None,
                      frames: Sequence[Path] = (), progress: bool = True, faces: FaceBackend | None = None
                      ) -> Prediction:
    """A video file or frame folder (`frames`: its files in order, when already listed).
    An input that cannot be read gives an empty prediction whose `message` says why.
    `faces` replaces the model's own face backend (a benchmark times it)."""
    settings = model.settings
    prediction = Prediction(str(path), fps, 0, model.classes, settings.depth, windows.stride)
    try:
        stream = FrameStream(path, frames, settings.frame_size, fps)
    except MerError as error:
        prediction.message = str(error)
        return prediction
    prediction.fps = stream.fps
    counted = []

    def counting():
        bar = tqdm(total=stream.announced, unit="frame", desc=Path(path).name, disable=not progress, leave=False)
        with bar:
            for frame in read_ahead(stream):
                counted.append(None)
                bar.update()
                yield frame

    prediction.windows = list(stream_windows(counting(), settings, windows, classify, faces))
    prediction.frames = len(counted)
    prediction.message = stream.problem
    if prediction.frames and prediction.frames < settings.depth:
        prediction.message = f"{path}: {prediction.frames} frames are fewer than the model's window of {settings.depth}"
    prediction.intervals, prediction.scores, prediction.threshold, prediction.rejected, prediction.head = spot(
        prediction.windows, model.classes, spotting, windows.stride, prediction.frames, prediction.fps)
    prediction.no_face = faceless_stretches(prediction.windows)
    if prediction.windows and not any(w.face for w in prediction.windows):
        prediction.message = f"{path}: no face found in any window"
    elif prediction.windows and not prediction.fps and not prediction.message:
        prediction.message = (f"{path}: no intervals spotted: spotting's lengths are in seconds and this frame folder's "
                              "rate is unknown; give --fps")
    return prediction


def window_rows(prediction: Prediction) -> list[dict]:
    rows = []
    for number, window in enumerate(prediction.windows):
        row = {"window": number, "start_frame": window.start, "end_frame": window.end,
               "centre_time": round(prediction.seconds(window.centre), 6), "face": int(window.face),
               "motion": round(window.motion, 6) if window.face else None,
               "head_shift": None if np.isnan(prediction.head[number]) else round(float(prediction.head[number]), 6),
               "score": None if np.isnan(prediction.scores[number]) else round(float(prediction.scores[number]), 6)}
        for k, name in enumerate(prediction.classes):
            row[f"p_{name}"] = None if window.probabilities is None else round(float(window.probabilities[k]), 6)
        row["predicted"] = None if window.probabilities is None else prediction.classes[int(np.argmax(window.probabilities))]
        rows.append(row)
    return rows


def span_row(prediction: Prediction, onset: int, offset: int) -> dict:
    """Frames onset..offset (inclusive) and their time span."""
    return {"onset_frame": onset, "offset_frame": offset, "onset_time": round(prediction.seconds(onset), 6),
            "offset_time": round(prediction.seconds(offset + 1), 6)}


def interval_rows(prediction: Prediction) -> list[dict]:
    return [{**span_row(prediction, i.onset, i.offset), "label": i.label, "type": i.kind,
             "peak_score": round(i.peak, 6),
             "probabilities": dict(zip(prediction.classes, (round(p, 6) for p in i.probabilities)))}
            for i in prediction.intervals]


def prediction_document(prediction: Prediction, truth: Sequence[TruthInterval] = ()) -> dict:
    return {
        "source": prediction.source, "fps": prediction.fps, "frames": prediction.frames,
        "time_unit": "s" if prediction.fps else "frame", "classes": prediction.classes,
        "window": {"depth": prediction.depth, "stride": prediction.stride}, "message": prediction.message,
        "threshold": None if np.isnan(prediction.threshold) else prediction.threshold,
        "intervals": interval_rows(prediction),
        "rejected": [{**span_row(prediction, r.onset, r.offset), "reason": r.reason} for r in prediction.rejected],
        "truth": [{"onset": t.onset, "offset": t.offset, "label": t.label, "type": t.kind} for t in truth],
        "no_face": [{"onset_frame": a, "offset_frame": b} for a, b in prediction.no_face],
        "windows": window_rows(prediction), "provenance": prediction.provenance,
    }


def csv_text(rows: list[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_prediction(prediction: Prediction, folder: Path, stem: str, truth: Sequence[TruthInterval] = ()
                     ) -> dict[str, Path]:
    """`<stem>.windows.csv`, `<stem>.json` and `<stem>.timeline.png` in `folder`, each written whole or not at all."""
    from mer.reporting.timeline import timeline_figure
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"csv": folder / f"{stem}.windows.csv", "json": folder / f"{stem}.json", "png": folder / f"{stem}.timeline.png"}
    columns = ["window", "start_frame", "end_frame", "centre_time", "face", "motion", "head_shift", "score",
               *[f"p_{name}" for name in prediction.classes], "predicted"]
    atomic_write_text(files["csv"], csv_text(window_rows(prediction), columns))
    atomic_write_text(files["json"], json.dumps(prediction_document(prediction, truth), indent=1) + "\n")
    figure = timeline_figure(prediction, truth)
    try:
        atomic_write(files["png"], lambda handle: figure.savefig(handle, format="png", dpi=110))
    finally:
        plt.close(figure)
    return files


def settings_from(cfg) -> tuple[WindowSettings, SpottingSettings]:
    """The `predict` config's window, face schedule and spotting sections."""
    return (WindowSettings(stride=cfg.window.stride, batch_size=cfg.window.batch_size, **cfg.faces),
            SpottingSettings(**cfg.spotting))


def predictor(cfg, model: TrainedModel) -> Callable[..., Prediction]:
    """`predict(path, frames=(), fps=None)` with the config's settings and backend, its
    results carrying their provenance (model, preprocessing, backend, settings, versions)."""
    from mer.spotting.model import classifier_for

    windows, spotting = settings_from(cfg)
    classify, backend = classifier_for(model, cfg.backend, Path(cfg.onnx_dir))
    provenance = {**model.provenance(), **backend, "window": asdict(windows), "spotting": asdict(spotting)}

    def predict(path: Path, frames: Sequence[Path] = (), fps: float | None = None) -> Prediction:
        prediction = predict_recording(path, model, classify, windows, spotting, fps or cfg.fps, frames, cfg.progress)
        prediction.provenance = provenance
        return prediction

    return predict


def summary_line(prediction: Prediction, files: dict[str, Path]) -> str:
    faceless = sum(not w.face for w in prediction.windows)
    spotted = ", ".join(f"{i.label} {prediction.seconds(i.onset):.2f}-{prediction.seconds(i.offset + 1):.2f}"
                        for i in prediction.intervals) or "none"
    unit = "s" if prediction.fps else "frames"
    return (f"{prediction.frames} frames, {len(prediction.windows)} windows ({faceless} without a face); "
            f"spotted ({unit}): {spotted}; wrote {', '.join(str(p) for p in files.values())}")
