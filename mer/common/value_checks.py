"""The numbers a researcher types, checked before any work starts: each bad value is named
by its key with the range it must lie in, all in one line, instead of a TypeError after the
data is prepared, or a run that never ends (`trainer.max_epochs=-1` is Lightning's
"forever"). Choices (layouts, protocols, fractions) are checked by the settings objects
that use them; training builds those first too."""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig, OmegaConf

from mer.common.errors import MerError


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key -> (test, what it must be). A key a config does not have is not checked (sgd has no
# eps, a model may have no dropout).
RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "seed": (_integer, "an integer"),
    "optim.lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optim.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optim.momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "model.dropout": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.channels": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "model.hidden": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "data.batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "data.num_workers": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "data.preprocess_workers": (lambda v: v is None or (_integer(v) and v >= 1), "null (all cores) or an integer >= 1"),
    "trainer.max_epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "trainer.devices": (lambda v: v == "auto" or (_integer(v) and v >= 1) or OmegaConf.is_list(v),
                        "auto, an integer >= 1 or a list of device ids"),
    "preprocess.depth": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "preprocess.size": (lambda v: _integer(v) and v >= 8, "an integer >= 8"),
    "preprocess.margin": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "preprocess.mask_scale": (lambda v: _number(v) and v > 0, "a number > 0"),
}


def check_values(cfg: DictConfig) -> None:
    """Refuse the config, in one line naming every bad key, before any work starts."""
    problems = []
    for key, (valid, meaning) in RULES.items():
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is not KeyError and not valid(value):
            problems.append(f"{key}={value!r} must be {meaning}")
    if problems:
        raise MerError("; ".join(problems))
