"""A run's readable name: what the command line set, then the paper's three knobs, then the seed."""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from mer.tracking.run_params import UNNAMED_KEYS, overridden, short_name

# Every run's name shows the paper's three knobs, after the settings the command line set.
NAMED_SETTINGS = ("optim.lr", "model.dropout", "trainer.max_epochs")


def run_name(cfg: DictConfig, overrides: Sequence[str]) -> str:
    """`dropout=0.5 lr=0.001 epochs=100 seed=1`: what the command line set first (in a sweep,
    the varied keys), then the paper's knobs, one spelling for each key, so the name column
    tells runs apart even where the UI cuts it."""
    parts = {}
    for key, value, _ in overridden(cfg, overrides):
        if not key.startswith(UNNAMED_KEYS):
            parts.setdefault(short_name(key).rsplit(".", 1)[-1], value)
    for key in NAMED_SETTINGS:
        parts.setdefault(short_name(key), OmegaConf.select(cfg, key))
    return " ".join(f"{name}={value}" for name, value in parts.items()) + f" seed={cfg.seed}"
