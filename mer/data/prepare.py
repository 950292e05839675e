"""Everything before training: index the dataset, fill the clip cache, make the folds."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from mer.data.cache import CacheReport, ClipCache
from mer.datasets.records import ClipRecord
from mer.data.index import index_dataset
from mer.data.splits import ProtocolSettings, load_or_make_folds
from mer.common.errors import MerError
from mer.preprocess.pipeline import PreprocessSettings

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    records: list[ClipRecord]  # the clips that preprocessed cleanly (the split holds every indexed clip)
    classes: list[str]
    skipped: list[tuple[str, str]]  # folders/rows the indexer skipped, clips it kept with a note
    report: CacheReport
    cache: ClipCache
    protocol: ProtocolSettings
    folds: dict  # the saved fold document
    folds_path: Path

    def selected_folds(self) -> list[dict]:
        """The folds to run, each less the clips that failed preprocessing; a held-out clip
        so lost is named in the fold's `test_lost`, never silently out of the test part."""
        folds = self.folds["folds"]
        if self.protocol.fold is not None:
            if not 0 <= self.protocol.fold < len(folds):
                raise MerError(f"protocol.fold={self.protocol.fold} is out of range: this protocol has {len(folds)} folds (0..{len(folds) - 1})")
            folds = [folds[self.protocol.fold]]
        return [usable_fold(fold, {r.clip_id for r in self.records}) for fold in folds]


def usable_fold(fold: dict, usable: set[str]) -> dict:
    parts = {part: [i for i in fold[part] if i in usable] for part in ("train", "val", "test")}
    lost = sorted(set(fold["test"]) - usable)
    if not parts["test"]:
        raise MerError(f"fold {fold['name']}: every held-out clip failed preprocessing ({', '.join(lost)}); "
                       "the reasons are in the cache's failures.csv")
    if lost:
        log.warning("fold %s: %d of %d held-out clips failed preprocessing and are not scored: %s",
                    fold["name"], len(lost), len(fold["test"]), ", ".join(lost))
    return {**fold, **parts, "test_lost": lost}


def report_stretched(records: list[ClipRecord], depth: int) -> None:
    """Clips shorter than the window have their frames repeated evenly (temporal.py), up
    to preprocess.max_stretch; said once, not silently. Video clips count their frames
    only when decoded, and are not counted here."""
    lengths = [len(r.frames) for r in records if r.frames]
    short = sum(n < depth for n in lengths)
    if short:
        log.warning("%d of %d clips have fewer than preprocess.depth=%d frames (shortest %d): their frames are repeated "
                    "evenly to fill the window", short, len(lengths), depth, min(lengths))


def prepare_data(cfg: DictConfig, progress: bool = True) -> PreparedData:
    records, skipped = index_dataset(cfg.data, progress)
    for where, reason in skipped:
        log.warning("%s: %s", where, reason)  # the reason says "skipped" or "kept"
    report_stretched(records, cfg.preprocess.depth)
    protocol = ProtocolSettings(**cfg.protocol)
    # Made from the indexed clips, before preprocessing: every preprocessing of one dataset
    # (an ablation, another alignment) is scored on the same held-out clips.
    folds, folds_path = load_or_make_folds(Path(cfg.paths.split_dir), records, protocol)
    cache = ClipCache(Path(cfg.paths.cache_dir), PreprocessSettings.from_config(cfg.preprocess), Path(cfg.data.root),
                      compress=bool(cfg.data.get("cache_compression", False)))
    report = cache.build(records, cfg.data.preprocess_workers, progress)
    for record, reason in report.failed:
        log.warning("skipped clip %s (%s): %s", record.clip_id, record.path, reason)
    if not report.ok:
        raise MerError(f"no clip could be preprocessed; reasons are listed in {cache.failures_path}")
    good = sorted(report.ok, key=lambda r: r.clip_id)
    return PreparedData(good, list(cfg.data.classes), skipped, report, cache, protocol, folds, folds_path)
