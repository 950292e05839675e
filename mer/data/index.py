"""From `data.*` config to clip records: the built-in generator and the layout indexers."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from mer.datasets.casme2 import index_casme2
from mer.datasets.casme3 import index_casme3
from mer.datasets.casme_sq import index_casme_sq
from mer.datasets.composite import index_composite
from mer.synthetic.generator import COMPLETE_MARKER, GeneratorSettings
from mer.synthetic.layout_writers import generate_layout
from mer.data.spot_windows import WindowSampling, spotting_windows
from mer.datasets.records import ClipRecord
from mer.datasets.samm import index_samm
from mer.datasets.samm_lv import index_samm_lv
from mer.datasets.smic_hs import index_smic_hs
from mer.datasets.smic_e import index_smic_e
from mer.common.errors import MerError

INDEXERS = {
    "smic_hs": index_smic_hs,
    "smic_e": index_smic_e,
    "casme2": index_casme2,
    "samm": index_samm,
    "composite": index_composite,
    "casme_sq": index_casme_sq,
    "samm_lv": index_samm_lv,
    "casme3": index_casme3,
}


def indexer_options(indexer: Callable, data: DictConfig) -> dict:
    """The optional `data.*` keys an indexer reads: its keyword-only parameters
    (`annotation`, `label_map`, `roots`, ...), passed when set and not null."""
    options = {}
    for parameter in inspect.signature(indexer).parameters.values():
        value = data.get(parameter.name) if parameter.kind is parameter.KEYWORD_ONLY else None
        if value is not None:
            options[parameter.name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return options


def index_dataset(data: DictConfig, progress: bool = True) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Records, and (where, "skipped: ..." or "kept: ...") notes, for `data`; writes the built-in data first (in
    `data.layout`) when the config asks for it and its folder is missing or empty.
    A non-empty folder without the generator's completion marker is refused, never
    deleted: it may be a cut-short tree or the user's own files."""
    if data.layout not in INDEXERS:
        raise MerError(f"data.layout={data.layout!r} is unknown; available: {sorted(INDEXERS)}")
    root = Path(data.root).expanduser()
    generator = data.get("generator")
    if generator is not None:
        if not root.exists() or not any(root.iterdir()):
            generate_layout(data.layout, root, GeneratorSettings(**generator), progress=progress)
        elif not (root / COMPLETE_MARKER).is_file():
            raise MerError(f"{root} holds an incomplete built-in data tree (no {COMPLETE_MARKER}: a run cut short, "
                           "or an older mer wrote it); delete it, or set data.root elsewhere, so it is written again")
    indexer = INDEXERS[data.layout]
    records, notes = indexer(root, tuple(data.classes), **indexer_options(indexer, data))
    windows = data.get("windows")
    if windows is not None:
        # A spotter trains on windows of the recordings, not on their annotated intervals.
        records = spotting_windows(records, tuple(data.classes), WindowSampling(**windows))
    return records, notes
