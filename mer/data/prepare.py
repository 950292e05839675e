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
from mer.errors import MerError
from mer.preprocess.pipeline import PreprocessSettings

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    records: list[ClipRecord]  # the clips that preprocessed cleanly
    classes: list[str]
    skipped: list[tuple[str, str]]  # folders/rows the indexer skipped, clips it kept with a note
    report: CacheReport
    cache: ClipCache
    protocol: ProtocolSettings
    folds: dict  # the saved fold document
    folds_path: Path

    def selected_folds(self) -> list[dict]:
        folds = self.folds["folds"]
        if self.protocol.fold is None:
            return folds
        if not 0 <= self.protocol.fold < len(folds):
            raise MerError(f"protocol.fold={self.protocol.fold} is out of range: this protocol has {len(folds)} folds (0..{len(folds) - 1})")
        return [folds[self.protocol.fold]]


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
    cache = ClipCache(Path(cfg.paths.cache_dir), PreprocessSettings(**cfg.preprocess), Path(cfg.data.root))
    report = cache.build(records, cfg.data.preprocess_workers, progress)
    for record, reason in report.failed:
        log.warning("skipped clip %s (%s): %s", record.clip_id, record.path, reason)
    if not report.ok:
        raise MerError(f"no clip could be preprocessed; reasons are listed in {cache.failures_path}")
    good = sorted(report.ok, key=lambda r: r.clip_id)
    folds, folds_path = load_or_make_folds(Path(cfg.paths.split_dir), good, protocol)
    return PreparedData(good, list(cfg.data.classes), skipped, report, cache, protocol, folds, folds_path)
