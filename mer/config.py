"""Hydra/OmegaConf glue shared by the entry points and tests."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    # `${len:${data.classes}}`: the classifier width follows the class list.
    OmegaConf.register_new_resolver("len", lambda items: len(items), replace=True)
    # `${cwd:}`: the launch folder. Unlike `${hydra:runtime.cwd}` it also resolves in a
    # sweep's parent process and in the compose API.
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


register_resolvers()


def compose_train(overrides):
    """`conf/train.yaml` with command-line style overrides, outside `@hydra.main`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))
