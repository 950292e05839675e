"""Hydra/OmegaConf glue shared by the entry points and tests."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
# A checkout keeps conf/ and sweeps/ at its top; an installed wheel carries them inside the
# package (pyproject.toml maps them to mer.conf and mer.sweeps).
RESOURCE_ROOT = PACKAGE_DIR if (PACKAGE_DIR / "conf").is_dir() else PROJECT_ROOT
CONFIG_DIR = RESOURCE_ROOT / "conf"

# Adam's epsilon in each framework whose defaults `model.init` can copy.
ADAM_EPS = {"keras": 1e-7, "torch": 1e-8}


def adam_eps(init: str) -> float:
    if init not in ADAM_EPS:
        raise ValueError(f"model.init must be one of {', '.join(ADAM_EPS)}, got {init!r}")
    return ADAM_EPS[init]


def launch_stamp() -> str:
    now = datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}.{now.microsecond // 1000:03d}-{uuid.uuid4().hex[:6]}"


def slurm_tasks(devices, gpus_per_node=None) -> int:
    """SLURM tasks per node for Lightning's `trainer.devices`: one per device, as Lightning's
    DDP under SLURM expects. A list (or "0,1") of device ids counts its ids; "auto" or -1
    means every GPU the job gets (`gpus_per_node`), or one process on a CPU job."""
    if isinstance(devices, str):
        text = devices.strip()
        if text.lstrip("-").isdigit():
            devices = int(text)
        elif text != "auto":
            devices = [part for part in text.split(",") if part.strip()]
    if devices in ("auto", -1):
        return int(gpus_per_node or 1)
    if isinstance(devices, int):
        return devices
    return len(devices)


def slurm_gpus(accelerator: str, devices) -> int | None:
    """GPUs per node for a job that trains with `trainer.accelerator` on `trainer.devices`:
    none unless the accelerator says GPU. `auto` makes a CPU job: a GPU node shows a job
    only the GPUs it asked for, so Lightning's `auto` finds the same."""
    return slurm_tasks(devices) if accelerator in ("gpu", "cuda") else None


def register_resolvers() -> None:
    # `${len:${data.classes}}`: the classifier width follows the class list.
    OmegaConf.register_new_resolver("len", lambda items: len(items), replace=True)
    # `${cwd:}`: the launch folder. Unlike `${hydra:runtime.cwd}` it also resolves in a
    # sweep's parent process and in the compose API.
    OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
    # `${resource_root:}`: the folder holding sweeps/ (Hydra's search path for +sweeps=...).
    OmegaConf.register_new_resolver("resource_root", lambda: str(RESOURCE_ROOT), replace=True)
    # `protocol.selection` as the checkpoint callback's default monitor: the best epoch on
    # the inner validation split, or none (the last epoch is reported).
    OmegaConf.register_new_resolver("selection_monitor", lambda selection: "val/acc" if selection == "val" else None,
                                    replace=True)
    # `${last_checkpoint:${.monitor}}`: with no monitor the one kept checkpoint is the last
    # epoch's, so last.ckpt can be a link to it (a second 5 MB write every epoch cost 10-15 %
    # of a 100-epoch run); a monitored one keeps the best epoch, so last.ckpt is a copy.
    OmegaConf.register_new_resolver("last_checkpoint", lambda monitor: True if monitor else "link", replace=True)
    # `${fold_dir:${protocol.fold}}`: each fold of a multi-fold run checkpoints into its own folder.
    OmegaConf.register_new_resolver("fold_dir", lambda fold: "" if fold is None else f"/fold{int(fold):03d}",
                                    replace=True)
    # `${launch_stamp:}`: the launch time to the millisecond plus a short random id, the
    # same for every job of one sweep (cached per config, and Hydra copies the cache into
    # each job's). Two runs or sweeps started in the same second get folders of their own.
    OmegaConf.register_new_resolver("launch_stamp", launch_stamp, use_cache=True, replace=True)
    # `${adam_eps:${model.init}}`: Adam's epsilon follows the framework the init copies.
    OmegaConf.register_new_resolver("adam_eps", adam_eps, replace=True)
    # `${slurm_tasks:...}`, `${slurm_gpus:...}`: conf/hydra/launcher/slurm.yaml asks for
    # what the trainer will use.
    OmegaConf.register_new_resolver("slurm_tasks", slurm_tasks, replace=True)
    OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus, replace=True)


register_resolvers()


def instantiate_with(node, **runtime):
    """`node` built from its `_target_`, plus objects only known at run time, passed as they
    are: given to `instantiate` directly, Hydra would turn dataclasses and dicts into configs
    and build any `_target_` inside them."""
    from hydra.utils import instantiate

    return instantiate(node, _partial_=True)(**runtime)


def compose_config(name: str, overrides):
    """`conf/<name>.yaml` with command-line style overrides, outside `@hydra.main`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def compose_train(overrides):
    return compose_config("train", overrides)
