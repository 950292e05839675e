"""What a run computes, as a digest of its resolved settings: the same config run again,
its cell over seeds, its pool over folds."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from mer.common.files import json_digest

# Where a run reads and writes, how it displays, how many workers it uses, how its cache is
# stored, and what a sweeper reads from it: not what it computes; and `module` /
# `datamodule`, which only repeat other groups' values by interpolation. Dotted keys; `*` is a wildcard.
NOT_SETTINGS = ("paths", "logger", "metric_loggers", "sweep", "hydra", "optimized_metric", "allow_heldout_objective",
                "module", "datamodule", "ckpt_path", "resume",
                "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "data.preprocess_workers", "data.num_workers", "data.cache_compression", "callbacks.*.dirpath")


def is_setting(key: str, leave_out: Sequence[str] = ()) -> bool:
    """Whether the dotted config key (a logged param's name) says what a run computes."""
    return not any(fnmatch(key, pattern) or fnmatch(key, f"{pattern}.*") for pattern in (*NOT_SETTINGS, *leave_out))


def config_hash(cfg: DictConfig, leave_out: Sequence[str] = ()) -> str:
    """Identifies what a run computes: its resolved settings (`is_setting`) less the dotted
    keys in `leave_out`. Paths inside the launch folder count relative to it, so one config
    launched from two folders (each with its own copy of the built-in data) is one cell; a
    dataset elsewhere counts by its path."""
    root = f"{Path(cfg.paths.root_dir).resolve()}/"

    def settings(value, prefix: str = ""):
        if isinstance(value, dict):
            return {k: settings(v, f"{prefix}{k}.") for k, v in value.items() if is_setting(f"{prefix}{k}", leave_out)}
        if isinstance(value, list):
            return [settings(v, prefix) for v in value]
        if isinstance(value, str) and value.startswith("/") and f"{Path(value).resolve()}/".startswith(root):
            return str(Path(value).resolve().relative_to(root[:-1]))
        return value

    return json_digest(settings(OmegaConf.to_container(cfg, resolve=True)), 16)
