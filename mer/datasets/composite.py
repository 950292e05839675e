"""MEGC2019 composite database: SMIC-HS + CASME II + SAMM relabelled to three classes.

Each dataset is read by its own indexer; subjects and clip ids get the dataset's name
as a prefix (`casme2_sub01`, `samm_006`, `smic_s1`) because the datasets number their
subjects independently and leave-one-subject-out must never merge two people.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from mer.datasets.casme2 import index_casme2
from mer.datasets.records import ClipRecord
from mer.datasets.samm import index_samm
from mer.datasets.smic_hs import index_smic_hs
from mer.common.errors import MerError

MEGC_CLASSES = ("negative", "positive", "surprise")
# Emotions absent here (CASME II 'others', SAMM 'other') are reported and skipped.
MEGC2019_LABELS = {
    **{emotion: "negative" for emotion in ("repression", "anger", "contempt", "disgust", "fear", "sadness")},
    "happiness": "positive",
    "surprise": "surprise",
}
# Folders under data.root, as `generate_layout("composite", ...)` writes them.
DEFAULT_ROOTS = {"smic": "SMIC", "casme2": "CASME2", "samm": "SAMM"}


def _smic(root: Path, classes: Sequence[str], annotation, label_map):
    # SMIC-HS labels clips by folder, already in the three composite classes.
    return index_smic_hs(root, classes)


def _casme2(root: Path, classes: Sequence[str], annotation, label_map):
    return index_casme2(root, classes, annotation=annotation, label_map=label_map)


def _samm(root: Path, classes: Sequence[str], annotation, label_map):
    return index_samm(root, classes, annotation=annotation, label_map=label_map)


PARTS = {"smic": _smic, "casme2": _casme2, "samm": _samm}


def index_composite(root: Path, classes: Sequence[str] = MEGC_CLASSES, *, roots: Mapping[str, str | None] | None = None,
                    annotations: Mapping[str, str | None] | None = None,
                    label_map: Mapping[str, str] | None = None) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Records of every dataset in `roots` (name -> folder, relative to `root`; null leaves
    a dataset out), labels mapped by `label_map` (default: MEGC2019's)."""
    root = Path(root).expanduser()
    roots = dict(DEFAULT_ROOTS if roots is None else roots)
    unknown = sorted(set(roots) - set(PARTS)) + sorted(set(annotations or {}) - set(PARTS))
    if unknown:
        raise MerError(f"data.roots / data.annotations name unknown datasets {unknown}; use {sorted(PARTS)}")
    chosen = {name: folder for name, folder in roots.items() if folder is not None}
    if not chosen:
        raise MerError(f"data.roots leaves out every dataset; set at least one of {sorted(PARTS)}")
    records: list[ClipRecord] = []
    skipped: list[tuple[str, str]] = []
    for name, folder in chosen.items():
        annotation = (annotations or {}).get(name)
        try:
            part, problems = PARTS[name](root / Path(folder).expanduser(), classes, annotation,
                                         MEGC2019_LABELS if label_map is None else label_map)
        except MerError as error:
            raise MerError(f"data.roots.{name}: {error}") from error
        records.extend(replace(r, clip_id=f"{name}_{r.clip_id}", subject=f"{name}_{r.subject}", source=name) for r in part)
        skipped.extend(problems)
    return records, skipped
