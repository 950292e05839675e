"""`mer spot-eval`: spot and recognise micro-expressions over a long-video dataset and
score it the MEGC way (a hit is IoU >= 0.5; precision, recall and F1 over the database),
with recognition accuracy / UF1 on the hits, against random intervals of the true lengths
on the same recordings. The result is an MLflow run (experiment `logger.experiment_name`,
`mer-spotting` by default) holding the figures, a per-video table and every timeline.

A recording is scored only by a model that never trained on its subject: the same person
under another dataset's name counts (SMIC-HS is cut from the SMIC-E recordings, the built-in
layouts reuse the same faces; see `mer.datasets.identity`). Whom a model trained on is read
from the split file its run logged (train + val of the folds it trained), so a
leave-one-subject-out sweep's runs, given together, cover a tree of its subjects once, each
recording by the run that held its subject out. `allow_seen_subjects` scores the others too,
and says so in the run's tags and report."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from mer.data.index import index_dataset
from mer.datasets.identity import subject_identities
from mer.datasets.records import ClipRecord, natural_key
from mer.common.errors import MerError
from mer.tracking.reproduce import fetch_split, localise
from mer.common.metrics import scores
from mer.spotting.expression_types import MICRO, TYPES
from mer.spotting.megc import BaselineScores, SpotCounts, overall, random_baseline, typed_spotting
from mer.spotting.strs import AnalysisScores, analysis_scores, strs as strs_score
from mer.spotting.model import TrainedModel
from mer.spotting.predict import Prediction, TruthInterval, csv_text, predictor, write_prediction
from mer.synthetic.generator import COMPLETE_MARKER

log = logging.getLogger(__name__)


@dataclass
class Recording:
    path: Path
    subject: str
    identity: str  # the person, across the datasets of one corpus family
    frames: tuple[Path, ...]
    name: str  # unique in the tree: CAS(ME)^3's frame folders are all `color`
    fps: float | None = None  # the corpus's, where its loader knows it
    truth: list[TruthInterval] = field(default_factory=list)


def tree_identities(data: DictConfig, records: Sequence[ClipRecord]) -> dict[str, str]:
    """Subject -> identity for records of the tree `data` names."""
    root = Path(data.root).expanduser()
    return subject_identities(records, root, built_in=(root / COMPLETE_MARKER).is_file())


def recordings_in(data: DictConfig, progress: bool = False) -> list[Recording]:
    """One recording per video of the tree, with all its annotated intervals (a long video can hold several)."""
    records, skipped = index_dataset(data, progress=progress)
    for where, reason in skipped:
        log.warning("%s: %s", where, reason)
    identities = tree_identities(data, records)
    by_path: dict[Path, Recording] = {}
    for record in records:
        if record.onset is None or record.offset is None:
            raise MerError(f"{record.path}: the annotation gives no onset..offset interval; spot-eval needs long "
                           "videos annotated with them (data=smic_e, casme_sq, samm_lv, casme3 or their builtin_*)")
        recording = by_path.setdefault(record.path, Recording(
            record.path, record.subject, identities[record.subject], record.frames, record.recording or record.path.name,
            record.fps))
        # SMIC-E annotates micro-expressions only, and says so by giving no type.
        recording.truth.append(TruthInterval(record.onset, record.offset, record.label, record.kind or MICRO))
    return sorted(by_path.values(), key=lambda r: str(r.path))


def split_run(model: TrainedModel) -> tuple[MlflowClient, str, str]:
    """(store, run, split file name) of the run that logged the split `model` trained on: its
    own run, or for one fold of a multi-fold run, the parent that made the folds. A
    checkpoint's run is looked up in the store given, then in the one its config logged to."""
    if model.run_id is None:
        raise MerError(f"{model.checkpoint} names no MLflow run, so the split it trained on is unknown; give --run-id "
                       "of the train.py run that logged it")
    stores = list(dict.fromkeys(u for u in (model.tracking_uri, OmegaConf.select(model.run_cfg, "logger.tracking_uri"))
                                if u))
    for uri in stores:
        # A client on a missing sqlite file would create an empty store there.
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            continue
        client = MlflowClient(uri)
        try:
            run = client.get_run(model.run_id)
        except MlflowException:
            continue
        while "data.split_file" not in run.data.params and MLFLOW_PARENT_RUN_ID in run.data.tags:
            run = client.get_run(run.data.tags[MLFLOW_PARENT_RUN_ID])
        name = run.data.params.get("data.split_file")
        if not name:
            raise MerError(f"run {model.run_id} logged no split file (param data.split_file), so which subjects it "
                           "trained on is unknown and spot-eval cannot keep them out; give a train.py run that logged one")
        return client, run.info.run_id, name
    raise MerError(f"run {model.run_id} (named by {model.checkpoint}) is in none of the stores {', '.join(stores)}, so "
                   "the split it trained on is unknown; give --tracking-uri of the store it was logged to")


def trained_folds(model: TrainedModel, cfg: DictConfig) -> list[dict]:
    """The folds `model` trained, as its run logged them: a split made again here could
    differ from the one it trained on (other clips preprocessed, a newer split scheme)."""
    client, run_id, name = split_run(model)
    split_dir = Path(cfg.paths.split_dir)
    try:
        fetch_split(client, run_id, split_dir)
        folds = json.loads((split_dir / name).read_text())["folds"]
    except (MlflowException, OSError, ValueError, KeyError) as error:
        raise MerError(f"run {run_id} logged data.split_file={name}, but its artifact data/{name} cannot be read "
                       f"({type(error).__name__}: {error})") from error
    fold = OmegaConf.select(model.run_cfg, "protocol.fold", default=None)
    return folds if fold is None else [folds[fold]]


def trained_identities(model: TrainedModel, cfg: DictConfig) -> set[str]:
    """Who `model` trained on: the subjects of its folds' train and val clips, read from the
    tree it trained on (here, under this command's paths), as identities."""
    clips = {clip for fold in trained_folds(model, cfg) for clip in (*fold["train"], *fold["val"])}
    trained = localise(model.run_cfg, cfg)
    try:
        records, _ = index_dataset(trained.data, progress=False)
    except MerError as error:
        raise MerError(f"the data run {model.run_id} trained on is needed to know whom it saw: {error}") from error
    by_id = {record.clip_id: record for record in records}
    missing = sorted(clips - set(by_id))
    if missing:
        raise MerError(f"run {model.run_id}'s split names {len(missing)} training clips that {trained.data.root} does "
                       f"not hold (e.g. {missing[0]}): that is not the tree it trained on")
    return set(tree_identities(trained.data, [by_id[clip] for clip in clips]).values())


def subjects_of(recordings: Sequence[Recording]) -> list[str]:
    return sorted({r.subject for r in recordings}, key=natural_key)


@dataclass
class Assignment:
    pairs: list[tuple[Recording, TrainedModel]]
    left_out: list[Recording]  # every given model trained on their subjects
    seen: list[Recording]  # scored by a model that trained on their subject (allow_seen_subjects)
    allow_seen_subjects: bool = False

    def notes(self) -> list[str]:
        total = len(self.pairs) + len(self.left_out)
        lines = []
        if self.left_out:
            lines.append(f"left out {len(self.left_out)} of {total} recordings: every given model trained on their "
                         f"subjects ({', '.join(subjects_of(self.left_out))})")
        if self.seen:
            lines.append(f"--allow-seen-subjects: {len(self.seen)} of {total} recordings (subjects "
                         f"{', '.join(subjects_of(self.seen))}) were scored by a model that trained on their "
                         "subjects; these figures overstate it")
        elif self.allow_seen_subjects:
            lines.append("--allow-seen-subjects: given, but every recording was scored by a model that never trained "
                         "on its subject")
        return lines


def assign(recordings: Sequence[Recording], models: Sequence[TrainedModel], cfg: DictConfig,
           allow_seen_subjects: bool = False) -> Assignment:
    """Each recording with the one given model that never trained on its subject (with
    `allow_seen_subjects`, where there is none, the one given model that did)."""
    seen_by = [trained_identities(model, cfg) for model in models]
    pairs, left_out, seen = [], [], []
    for recording in recordings:
        unseen = [m for m, identities in zip(models, seen_by) if recording.identity not in identities]
        scorers = unseen or (list(models) if allow_seen_subjects else [])
        if len(scorers) > 1:
            raise MerError(f"{recording.name} (subject {recording.subject}) could be scored by {len(scorers)} of the "
                           "given models; give models whose unseen subjects do not overlap (the runs of one LOSO "
                           "sweep), so that each recording has one")
        if not scorers:
            left_out.append(recording)
            continue
        pairs.append((recording, scorers[0]))
        if not unseen:
            seen.append(recording)
    if not pairs:
        raise MerError(f"every recording of {cfg.data.root} shows a subject the given "
                       f"model{'s' if len(models) > 1 else ''} trained on ({', '.join(subjects_of(left_out))}), and "
                       "scores on them would overstate it; give runs that held these subjects out (protocol=loso, or "
                       "protocol.subject_disjoint=true), or pass --allow-seen-subjects to score them anyway")
    return Assignment(pairs, left_out, seen, allow_seen_subjects)


@dataclass
class VideoScore:
    recording: Recording
    prediction: Prediction
    typed: dict[str, SpotCounts]  # MICRO and MACRO
    hits: list[tuple[str, str]]  # (true class, spotted class) of each hit

    @property
    def counts(self) -> SpotCounts:
        return overall(self.typed)

    def row(self) -> dict:
        p, c = self.prediction, self.counts
        return {"video": self.recording.name, "subject": self.recording.subject, "frames": p.frames,
                "truth": " ".join(f"{t.onset}-{t.offset}:{t.label}:{t.kind}" for t in self.recording.truth),
                "spotted": " ".join(f"{i.onset}-{i.offset}:{i.label}:{i.kind}" for i in p.intervals),
                "tp": c.tp, "fp": c.fp, "fn": c.fn,
                **{f"{kind}_{n}": getattr(self.typed[kind], n) for kind in TYPES for n in ("tp", "fp", "fn")},
                "hits_recognised": sum(a == b for a, b in self.hits), "message": p.message or ""}


def score_video(recording: Recording, prediction: Prediction) -> VideoScore:
    """MEGC's typed scores: spotted intervals typed by their seconds at the recording's
    frame rate, annotations by their corpus."""
    if not prediction.fps and prediction.frames:
        raise MerError(f"{recording.path}: spotting's lengths and micro vs macro are in seconds and this recording's "
                       "frame rate is unknown; give fps= (or data.fps)")
    scored = typed_spotting([((i.onset, i.offset), i.kind) for i in prediction.intervals],
                            [((t.onset, t.offset), t.kind) for t in recording.truth])
    hits = [(recording.truth[m.truth].label, prediction.intervals[m.predicted].label)
            for kind in TYPES for m in scored.matches[kind]]
    return VideoScore(recording, prediction, scored.counts, hits)


@dataclass
class SpotEvalResult:
    videos: list[VideoScore]
    typed: dict[str, SpotCounts]  # MICRO and MACRO, summed over the recordings
    baseline: dict[str, BaselineScores]  # MICRO, MACRO and "overall"
    recognition: dict[str, float]  # on the hits
    analysis: AnalysisScores  # MEGC 2023's, on the hits
    classes: list[str]
    notes: list[str] = field(default_factory=list)  # recordings left out, or scored by a model that saw their subject
    run_id: str | None = None

    @property
    def counts(self) -> SpotCounts:
        return overall(self.typed)

    @property
    def strs(self) -> float:
        return strs_score(self.counts, self.analysis)

    def metrics(self) -> dict[str, float]:
        rows = {"": self.counts, **{f"{kind}/": self.typed[kind] for kind in TYPES}}
        baselines = {"": self.baseline["overall"], **{f"{kind}/": self.baseline[kind] for kind in TYPES}}
        return {**{f"spot/{prefix}{n}": getattr(c, n) for prefix, c in rows.items()
                   for n in ("tp", "fp", "fn", "precision", "recall", "f1")},
                **{f"baseline/{prefix}{n}": getattr(b, n) for prefix, b in baselines.items()
                   for n in ("precision", "recall", "f1")},
                **{f"hits/{k}": v for k, v in self.recognition.items()},
                "strs": self.strs, "analysis/f1": self.analysis.f1, "analysis/uf1": self.analysis.uf1,
                "analysis/uar": self.analysis.uar, "videos": len(self.videos),
                "videos_with_problems": sum(v.prediction.message is not None for v in self.videos)}

    def report(self) -> str:
        draws = self.baseline["overall"].draws
        lines = [f"{len(self.videos)} recordings; MEGC spotting (IoU >= 0.5), over the database "
                 f"(micro: at most spotting.micro_max_s seconds from onset to offset; overall from the summed counts):",
                 f"  {'':<9}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}{'F1':>7}"
                 f"{'random F1':>11}"]
        for name, c in (*((kind, self.typed[kind]) for kind in TYPES), ("overall", self.counts)):
            lines.append(f"  {name:<9}{c.tp:>5}{c.fp:>5}{c.fn:>5}{c.precision:>11.3f}{c.recall:>8.3f}{c.f1:>7.3f}"
                         f"{self.baseline[name].f1:>11.3f}")
        lines += [f"  random baseline: the true count and lengths of each type, {draws} draws",
                  f"  recognition on the {self.counts.tp} hits: acc {self.recognition['acc']:.3f}  "
                  f"UF1 {self.recognition['uf1']:.3f}; STRS {self.strs:.3f} (spotting F1 {self.counts.f1:.3f} x "
                  f"analysis F1 {self.analysis.f1:.3f})"]
        lines += [f"  {v.recording.name}: {v.prediction.message}" for v in self.videos if v.prediction.message]
        lines += [f"  {note}" for note in self.notes]
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
        prediction = predictors[id(model)](recording.path, recording.frames, fps or recording.fps)
        results.append(score_video(recording, prediction))
    return results


def spot_eval_result(videos: list[VideoScore], classes: Sequence[str], draws: int, seed: int) -> SpotEvalResult:
    typed = {kind: sum((v.typed[kind] for v in videos), SpotCounts()) for kind in TYPES}
    # The baseline places its intervals in every recording spotting was scored on, at its
    # full length: a recording that could not be read still counts its misses for both.
    lengths = [max(v.prediction.frames, len(v.recording.frames)) for v in videos]
    baseline = random_baseline([([((t.onset, t.offset), t.kind) for t in v.recording.truth], n)
                                for v, n in zip(videos, lengths) if n], seed=seed, draws=draws)
    index = {name: k for k, name in enumerate(classes)}
    # A hit on an interval whose emotion is none of the classes (a macro-expression SAMM-LV
    # names no emotion for) counts for spotting, not for recognition.
    hits = [pair for v in videos for pair in v.hits if pair[0] in index]
    recognition = {k: v for k, v in scores([index[t] for t, _ in hits], [index[p] for _, p in hits]).items()
                   if k in ("acc", "uf1")}
    # MEGC 2023's analysis set: every emotion the annotations show
    emotions = sorted({t.label for v in videos for t in v.recording.truth if t.label in index})
    # No annotation names an emotion of the classes (SAMM-LV without its micro workbook): no analysis, no STRS.
    analysis = analysis_scores(hits, emotions) if emotions else AnalysisScores(*[float("nan")] * 5, 0)
    return SpotEvalResult(videos, typed, baseline, recognition, analysis, list(classes))


def spot_eval(cfg: DictConfig, models: Sequence[TrainedModel], overrides: Sequence[str],
              allow_seen_subjects: bool = False) -> SpotEvalResult:
    from mer.tracking.run_lifecycle import tracked_run

    assignment = assign(recordings_in(cfg.data, progress=cfg.progress), models, cfg, allow_seen_subjects)
    pairs = assignment.pairs
    fps = cfg.fps or OmegaConf.select(cfg, "data.fps", default=None)
    classes = list(models[0].classes)
    if any(list(m.classes) != classes for m in models):
        raise MerError("the given models have different classes; spot-eval scores one set of classes")
    cfg = cfg.copy()
    if not cfg.logger.run_name:
        cfg.logger.run_name = f"spot-eval {cfg.data.name} {cfg.backend} " + (
            f"{len(models)} runs" if len(models) > 1 else (models[0].run_id or models[0].checkpoint_sha256[:12]))
    tags = {"mer.kind": "spot-eval", **({"mer.allow_seen_subjects": "true"} if allow_seen_subjects else {})}
    subjects = {key: " ".join(subjects_of(part))
                for key, part in (("left_out_subjects", assignment.left_out), ("seen_subjects", assignment.seen)) if part}
    with tracked_run(cfg, overrides, extra_tags=tags) as run:
        run.log_params({"model.run_ids": " ".join(str(m.run_id) for m in models),
                        "model.checkpoint_sha256": " ".join(m.checkpoint_sha256 for m in models),
                        "model.preprocess_sha256": models[0].preprocess_sha256, "backend": cfg.backend,
                        "data.root": str(cfg.data.root), "fps": fps, "recordings": len(pairs), **subjects,
                        "baseline_draws": cfg.baseline_draws,
                        **{f"window.{k}": v for k, v in OmegaConf.to_container(cfg.window).items()},
                        **{f"faces.{k}": v for k, v in OmegaConf.to_container(cfg.faces).items()},
                        **{f"spotting.{k}": v for k, v in OmegaConf.to_container(cfg.spotting).items()}})
        videos = evaluate_recordings(pairs, cfg, fps)
        result = spot_eval_result(videos, classes, cfg.baseline_draws, cfg.seed)
        result.notes = assignment.notes()
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
