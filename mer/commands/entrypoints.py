"""The Hydra entry points, importable so that an installed `mer` runs them from any folder
(`mer-train`, `mer-evaluate`, `python -m mer.commands.entrypoints`); the checkout's train.py and
evaluate.py call them."""

import functools
import logging
import sys
from contextlib import contextmanager
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from mer.common.config import CONFIG_DIR
from mer.common.errors import MerError
from mer.common.interrupts import Interrupted, signals_interrupt

log = logging.getLogger("mer")


@contextmanager
def exit_on_user_error(cfg: DictConfig | None = None):
    """In a single run, stop with the message and exit status 1. In a sweep, report it and
    let the other runs go on: the failed run is already marked FAILED in MLflow, and a job
    refused before its run began gets a FAILED run of its own under the sweep's parent."""
    try:
        yield
    except (MerError, MissingMandatoryValue, InstantiationException) as error:
        # A config value a constructor refused (model.dropout=1.5) is a user error; anything
        # else Hydra failed to build is a bug and keeps its traceback.
        if isinstance(error, InstantiationException) and not isinstance(error.__cause__, (ValueError, MerError)):
            raise
        message = f"error: {error}"
        in_sweep = HydraConfig.initialized() and str(HydraConfig.get().mode).endswith("MULTIRUN")
        log.error(message)
        if not in_sweep:
            print(message, file=sys.stderr)
            sys.exit(1)
        if cfg is not None and not getattr(error, "mer_run_id", None):
            from mer.tracking.run_lifecycle import record_refused

            try:
                record_refused(cfg, HydraConfig.get().overrides.task, str(error))
            except Exception as failure:  # the store itself may be what is wrong
                log.error("could not record the refused job in the store: %s", failure)


def stoppable(main: Callable[[], None]) -> Callable[[], None]:
    """`main` with Ctrl-C and SIGTERM recorded truthfully: the runs this process holds open
    end KILLED and it exits 128 + the signal (130, 143); any other way out leaves none of
    them RUNNING (a sweep's parent run when a job's error stops the sweep)."""

    @functools.wraps(main)
    def run() -> None:
        from mer.tracking.run_lifecycle import close_open_runs, describe

        with signals_interrupt():
            try:
                main()
            except Interrupted as error:
                close_open_runs("KILLED", describe(error))
                log.error("stopped: %s", error)
                print(f"stopped: {error}", file=sys.stderr)
                sys.exit(error.exit_code)
            except BaseException as error:
                # Hydra has reported the error already and exits through SystemExit.
                close_open_runs("FAILED", "the process stopped on an error: see its log" if isinstance(error, SystemExit)
                                else describe(error))
                raise

    return run


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _train(cfg: DictConfig) -> float | None:
    """Train, test and log one configuration; returns `optimized_metric` to a sweeper."""
    from mer.common.selection import objective_value
    from mer.commands.train import train

    with exit_on_user_error(cfg):
        return objective_value(train(cfg, HydraConfig.get().overrides.task), cfg.optimized_metric)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def _evaluate(cfg: DictConfig) -> None:
    """Evaluate a checkpoint or an MLflow run's checkpoint on its held-out clips."""
    from mer.commands.evaluate import evaluate, format_metrics

    with exit_on_user_error():
        print(format_metrics(evaluate(cfg)))


train_main = stoppable(_train)
evaluate_main = stoppable(_evaluate)

if __name__ == "__main__":
    train_main()
