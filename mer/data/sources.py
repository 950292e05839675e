"""From `data.*` config to clip records: the built-in generator and the layout indexers."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mer.data.generator import GeneratorSettings, generate_smic_hs
from mer.data.records import ClipRecord
from mer.data.smic import index_smic_hs
from mer.errors import MerError

INDEXERS = {"smic_hs": index_smic_hs}


def index_dataset(data: DictConfig, progress: bool = True) -> tuple[list[ClipRecord], list[tuple[str, str]]]:
    """Records and skipped folders for `data`; writes the built-in data first when the
    config asks for it and its folder is missing or empty."""
    root = Path(data.root).expanduser()
    generator = data.get("generator")
    if generator is not None and (not root.exists() or not any(root.iterdir())):
        generate_smic_hs(root, GeneratorSettings(**generator), progress=progress)
    if data.layout not in INDEXERS:
        raise MerError(f"data.layout={data.layout!r} is unknown; available: {sorted(INDEXERS)}")
    return INDEXERS[data.layout](root, tuple(data.classes))
