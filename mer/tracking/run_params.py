"""The settings a researcher compares across runs, as MLflow params with short stable
names (the UI's columns, "show diff only", parallel coordinates)."""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from mer.tracking.config_hash import is_setting

# The settings a researcher compares across runs, as short stable param names (the MLflow
# UI's columns, "show diff only", parallel coordinates). The whole resolved config is the
# run's `config/config.yaml` artifact; other settings the command line changed are params
# under their dotted keys.
COMPARED_PARAMS = {"lr": "optim.lr", "dropout": "model.dropout", "epochs": "trainer.max_epochs",
                   "batch": "data.batch_size", "seed": "seed", "dataset": "data.name", "protocol": "protocol.name",
                   "preprocess": "preprocess.layout", "depth": "preprocess.depth", "impl": "model.impl",
                   "init": "model.init", "model": "model._target_", "optimizer": "optim._target_",
                   # a spotter's windows (experiment=spotter); absent from other runs
                   "windows.stride": "data.windows.stride", "windows.none_ratio": "data.windows.none_ratio",
                   "windows.seed": "data.windows.seed"}
SHORT_NAMES = {key: name for name, key in COMPARED_PARAMS.items()}

# Left out of run names: where a run reads and writes, and how it looks, not what it
# computes (all overrides are still in the `mer.overrides` tag). Seed is appended last.
UNNAMED_KEYS = ("seed", "test", "sweeps", "ckpt_path", "resume", "hydra.", "paths.", "logger", "trainer.enable_", "data.root", "data.generator",
                "data.preprocess_workers", "data.num_workers", "data.cache_compression")


def short_name(key: str) -> str:
    """`lr` for `optim.lr`; a key without a short name keeps its dotted one."""
    return SHORT_NAMES.get(key, key)


def overridden(cfg: DictConfig, overrides: Sequence[str]) -> list[tuple[str, object, bool]]:
    """(key, value, is a value setting) for each command-line override, in order: the
    resolved value of a setting, the typed choice of a config group (`model=microexpstcnn`)."""
    out = []
    for override in overrides:
        key, _, typed = override.lstrip("+~").partition("=")
        value = OmegaConf.select(cfg, key, default=None)
        setting = value is not None and not OmegaConf.is_config(value)
        out.append((key, value if setting else typed, setting))
    return out


def compared_params(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, object]:
    params = {}
    for name, key in COMPARED_PARAMS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            params[name] = str(value).rsplit(".", 1)[-1] if key.endswith("_target_") else value
    for key, value, setting in overridden(cfg, overrides):
        if setting and is_setting(key) and not key.startswith(UNNAMED_KEYS):
            params.setdefault(short_name(key), value)
    return params
