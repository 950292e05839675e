"""What may choose a model: the sweep objective (`optimized_metric`) and the metrics that
callbacks monitor. Figures on the held-out clips report a model; they never choose one,
unless the user opts in by name (`allow_heldout_objective=true`, for a sweep objective)."""

from __future__ import annotations

from typing import Mapping

from omegaconf import DictConfig

from mer.common.errors import MerError

# Per-fold figures keep their names; a run over several folds adds `pooled/<name>`
# (predictions pooled over folds) and `fold_mean/<name>` (mean of the per-fold figures).
AGGREGATES = ("pooled/", "fold_mean/")
HELDOUT_PARTS = ("test/", "heldout/", "eval/")
# Hydra's grid sweeper ignores what a job returns: nothing is chosen by it.
GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
INNER_VAL_HINT = "protocol.selection=val protocol.inner_val_fraction=0.15"


def part_metric(name: str) -> str:
    """`test/acc` for `pooled/test/acc` or `fold_mean/test/acc`."""
    for prefix in AGGREGATES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def is_heldout(name: str) -> bool:
    return part_metric(name).startswith(HELDOUT_PARTS)


def has_inner_val(cfg: DictConfig) -> bool:
    return cfg.protocol.inner_val_fraction > 0


def check_monitors(cfg: DictConfig) -> None:
    """Callbacks are used as configured; one that watches held-out clips, or an inner
    validation split the protocol does not make, is refused before anything runs."""
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = (callback or {}).get("monitor")
        if not monitor:
            continue
        key = f"callbacks.{name}.monitor={monitor}"
        if is_heldout(monitor):
            raise MerError(f"{key} watches the held-out clips, which may only report a model: monitor an inner "
                           f"validation metric (val/acc, val/loss) with {INNER_VAL_HINT}")
        if part_metric(monitor).startswith("val/") and not has_inner_val(cfg):
            raise MerError(f"{key} needs an inner validation split carved from the training clips: add {INNER_VAL_HINT}")


def check_sweep_objective(cfg: DictConfig, sweeper_target: str) -> None:
    """Refuse, before any job starts, a sweeper that would maximise a held-out figure or a
    validation figure the protocol does not produce."""
    if sweeper_target == GRID_SWEEPER:
        return
    objective = cfg.optimized_metric
    if is_heldout(objective) and not cfg.allow_heldout_objective:
        raise MerError(f"optimized_metric={objective} is measured on the held-out clips, so this sweeper would tune "
                       f"on them: use optimized_metric=val/acc_best with {INNER_VAL_HINT}, or opt in by name with "
                       "allow_heldout_objective=true (the sweep's runs are then tagged mer.heldout_objective=true)")
    if part_metric(objective).startswith("val/") and not has_inner_val(cfg):
        raise MerError(f"optimized_metric={objective} needs an inner validation split carved from the training "
                       f"clips: add {INNER_VAL_HINT}")


def objective_value(metrics: Mapping[str, float], name: str) -> float | None:
    """The run's figure for `optimized_metric`: its own for one fold; over several folds the
    pooled one, or the mean over folds where pooling does not apply (a per-fold best epoch)."""
    for key in (name, *(prefix + name for prefix in AGGREGATES)):
        if key in metrics:
            return float(metrics[key])
    return None
