"""`mer spot-eval`: spot and recognise micro-expressions over a long-video dataset and
score it the MEGC way (a hit is IoU >= 0.5; precision, recall and F1 over the database),
with recognition accuracy / UF1 on the hits, against random intervals of the true lengths
on the same recordings. The result is an MLflow run (experiment `logger.experiment_name`,
`mer-spotting` by default) holding the figures, a per-video table and every timeline.

A model is scored only on recordings it never trained on. One trained on another dataset
takes every recording; one trained on this very tree takes its held-out subjects' only,
so a leave-one-subject-out sweep's runs, given together, cover the tree once."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from mer.datasets.records import ClipRecord
from mer.errors import MerError
from mer.metrics import scores
from mer.spotting.megc import BaselineScores, SpotCounts, match_intervals, random_baseline
from mer.spotting.model import TrainedModel
from mer.spotting.predict import Prediction, TruthInterval, csv_text, predictor, write_prediction

log = logging.getLogger(__name__)


@dataclass
class Recording:
    path: Path
    subject: str
    frames: tuple[Path, ...]
    truth: list[TruthInterval] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name


def recordings_of(records: Sequence[ClipRecord]) -> list[Recording]:
    """One recording per video, with all its annotated intervals (a long video can hold several)."""
    by_path: dict[Path, Recording] = {}
    for record in records:
        if record.onset is None or record.offset is None:
            raise MerError(f"{record.path}: the annotation gives no onset..offset interval; spot-eval needs long "
                           "videos annotated with them (data=smic_e or data=builtin_smic_e)")
        recording = by_path.setdefault(record.path, Recording(record.path, record.subject, record.frames))
        recording.truth.append(TruthInterval(record.onset, record.offset, record.label))
        recording.clip_ids.append(record.clip_id)
    return sorted(by_path.values(), key=lambda r: str(r.path))


def heldout_clip_ids(model: TrainedModel, cfg: DictConfig) -> set[str] | None:
    """The clips `model` was tested on, when it was trained on this tree; None when it never saw it."""
    from mer.data.prepare import prepare_data
    from mer.evaluation import localise

    # The training run's paths, moved to this command's folders, as evaluate.py reads them.
    trained = localise(model.run_cfg, cfg)
    if trained.data.layout != cfg.data.layout or Path(trained.data.root).resolve() != Path(cfg.data.root).resolve():
        return None
    return set(prepare_data(trained, progress=False).selected_folds()[0]["test"])


def assign(recordings: Sequence[Recording], models: Sequence[TrainedModel], cfg: DictConfig
           ) -> list[tuple[Recording, TrainedModel]]:
    heldout = [heldout_clip_ids(model, cfg) for model in models]
    if any(ids is None for ids in heldout):
        if len(models) > 1:
            raise MerError("give one model trained on other data, or the runs of one sweep trained on this tree "
                           f"({cfg.data.root}) whose held-out subjects cover it; not a mix")
        return [(recording, models[0]) for recording in recordings]
    pairs = []
    for recording in recordings:
        owners = [m for m, ids in zip(models, heldout) if set(recording.clip_ids) <= ids]
        if owners:
            pairs.append((recording, owners[0]))
    if not pairs:
        raise MerError(f"every recording of {cfg.data.root} was in the given models' training clips: scoring them "
                       "would overstate the model; give runs whose held-out subjects (protocol=loso) cover the tree")
    if len(pairs) < len(recordings):
        log.warning("%d of %d recordings were training clips of every given model and are left out",
                    len(recordings) - len(pairs), len(recordings))
    return pairs


@dataclass
class VideoScore:
    recording: Recording
    prediction: Prediction
    counts: SpotCounts
    hits: list[tuple[str, str]]  # (true class, spotted class) of each hit

    def row(self) -> dict:
        p = self.prediction
        return {"video": self.recording.name, "subject": self.recording.subject, "frames": p.frames,
                "truth": " ".join(f"{t.onset}-{t.offset}:{t.label}" for t in self.recording.truth),
                "spotted": " ".join(f"{i.onset}-{i.offset}:{i.label}" for i in p.intervals),
                "tp": self.counts.tp, "fp": self.counts.fp, "fn": self.counts.fn,
                "hits_recognised": sum(a == b for a, b in self.hits), "message": p.message or ""}


def score_video(recording: Recording, prediction: Prediction) -> VideoScore:
    spotted = [(i.onset, i.offset) for i in prediction.intervals]
    truth = [(t.onset, t.offset) for t in recording.truth]
    matches = match_intervals(spotted, truth)
    hits = [(recording.truth[m.truth].label, prediction.intervals[m.predicted].label) for m in matches]
    return VideoScore(recording, prediction, SpotCounts.from_matches(matches, len(spotted), len(truth)), hits)


@dataclass
class SpotEvalResult:
    videos: list[VideoScore]
    counts: SpotCounts
    baseline: BaselineScores
    recognition: dict[str, float]
    classes: list[str]
    run_id: str | None = None

    def metrics(self) -> dict[str, float]:
        c = self.counts
        return {"spot/tp": c.tp, "spot/fp": c.fp, "spot/fn": c.fn, "spot/precision": c.precision,
                "spot/recall": c.recall, "spot/f1": c.f1, "baseline/precision": self.baseline.precision,
                "baseline/recall": self.baseline.recall, "baseline/f1": self.baseline.f1,
                **{f"hits/{k}": v for k, v in self.recognition.items()}, "videos": len(self.videos),
                "videos_with_problems": sum(v.prediction.message is not None for v in self.videos)}

    def report(self) -> str:
        c, b = self.counts, self.baseline
        lines = [f"{len(self.videos)} recordings; MEGC spotting (IoU >= 0.5), over the database:",
                 f"  spotting        TP {c.tp}  FP {c.fp}  FN {c.fn}  precision {c.precision:.3f}  recall {c.recall:.3f}  "
                 f"F1 {c.f1:.3f}",
                 f"  random baseline (true count and lengths, {b.draws} draws)  precision {b.precision:.3f}  "
                 f"recall {b.recall:.3f}  F1 {b.f1:.3f}",
                 f"  recognition on the {c.tp} hits: acc {self.recognition['acc']:.3f}  UF1 {self.recognition['uf1']:.3f}"]
        lines += [f"  {v.recording.name}: {v.prediction.message}" for v in self.videos if v.prediction.message]
        if self.run_id:
            lines.append(f"logged to MLflow run {self.run_id}")
        return "\n".join(lines)


def evaluate_recordings(pairs: Sequence[tuple[Recording, TrainedModel]], cfg: DictConfig, fps: float | None
                        ) -> list[VideoScore]:
    predictors = {}
    results = []
    for recording, model in pairs:
        if id(model) not in predictors:
            predictors[id(model)] = predictor(cfg, model)
        prediction = predictors[id(model)](recording.path, recording.frames, fps)
        results.append(score_video(recording, prediction))
    return results


def summarise(videos: list[VideoScore], classes: Sequence[str], draws: int, seed: int) -> SpotEvalResult:
    counts = sum((v.counts for v in videos), SpotCounts())
    # The baseline places its intervals in every recording spotting was scored on, at its
    # full length: a recording that could not be read still counts its misses for both.
    lengths = [max(v.prediction.frames, len(v.recording.frames)) for v in videos]
    baseline = random_baseline([([(t.onset, t.offset) for t in v.recording.truth],
                                 [t.offset - t.onset + 1 for t in v.recording.truth], n)
                                for v, n in zip(videos, lengths) if n], seed=seed, draws=draws)
    index = {name: k for k, name in enumerate(classes)}
    hits = [pair for v in videos for pair in v.hits]
    recognition = {k: v for k, v in scores([index[t] for t, _ in hits], [index[p] for _, p in hits]).items()
                   if k in ("acc", "uf1")}
    return SpotEvalResult(videos, counts, baseline, recognition, list(classes))


def spot_eval(cfg: DictConfig, models: Sequence[TrainedModel], overrides: Sequence[str]) -> SpotEvalResult:
    from mer.data.index import index_dataset
    from mer.tracking.runs import tracked_run

    records, skipped = index_dataset(cfg.data, progress=cfg.progress)
    for where, reason in skipped:
        log.warning("%s: %s", where, reason)
    pairs = assign(recordings_of(records), models, cfg)
    fps = cfg.fps or OmegaConf.select(cfg, "data.fps", default=None)
    classes = list(models[0].classes)
    if any(list(m.classes) != classes for m in models):
        raise MerError("the given models have different classes; spot-eval scores one set of classes")
    cfg = cfg.copy()
    if not cfg.logger.run_name:
        cfg.logger.run_name = f"spot-eval {cfg.data.name} {cfg.backend} " + (
            f"{len(models)} runs" if len(models) > 1 else (models[0].run_id or models[0].checkpoint_sha256[:12]))
    with tracked_run(cfg, overrides, extra_tags={"mer.kind": "spot-eval"}) as run:
        run.log_params({"model.run_ids": " ".join(str(m.run_id) for m in models),
                        "model.checkpoint_sha256": " ".join(m.checkpoint_sha256 for m in models),
                        "model.preprocess_sha256": models[0].preprocess_sha256, "backend": cfg.backend,
                        "data.root": str(cfg.data.root), "fps": fps, "recordings": len(pairs),
                        "baseline_draws": cfg.baseline_draws,
                        **{f"window.{k}": v for k, v in OmegaConf.to_container(cfg.window).items()},
                        **{f"faces.{k}": v for k, v in OmegaConf.to_container(cfg.faces).items()},
                        **{f"spotting.{k}": v for k, v in OmegaConf.to_container(cfg.spotting).items()}})
        videos = evaluate_recordings(pairs, cfg, fps)
        result = summarise(videos, classes, cfg.baseline_draws, cfg.seed)
        with tempfile.TemporaryDirectory() as scratch:
            for video in videos:
                files = write_prediction(video.prediction, Path(scratch) / "timelines", video.recording.name,
                                         video.recording.truth)
                run.log_artifact(files["png"], "timelines")
                run.log_artifact(files["json"], "predictions")
            rows = [v.row() for v in videos]
            run.log_text(csv_text(rows, list(rows[0])), "spot_eval/videos.csv")
        run.log_text(result.report() + "\n", "spot_eval/report.txt")
        run.log_metrics(result.metrics())
        result.run_id = run.run_id
    return result
