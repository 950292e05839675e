"""Hydra callbacks, run in the launching process: prepare the MLflow store before any
job starts, and give every multirun a parent run that its jobs nest under."""

from __future__ import annotations

import os
import sys
from pathlib import Path
import time
from datetime import datetime
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from mer.common.errors import MerError
from mer.common.selection import check_sweep_objective
from mer.tracking.run_lifecycle import close_run, describe, hold_open
from mer.tracking.run_params import short_name
from mer.tracking.run_tags import COMPLETE_TAG
from mer.tracking.stale_runs import close_stale_runs, owner_tags
from mer.tracking.store import ensure_logger_store
from mer.tracking.sweep_parent import PARENT_RUN_ENV, SWEEP_DIR_TAG
from mer.common.value_checks import check_values


def varied_values(config: DictConfig) -> dict[str, str]:
    """What a multirun varies, as typed: the sweeper's params (a sweep file, Optuna's
    search space) and the command line's comma lists."""
    varied = {k: str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
    for override in config.hydra.overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if "," in value or value.startswith(("choice(", "range(", "interval(")):
            varied[key] = value  # the command line overrides a sweep file's value
    return varied


def protocol_fold_range(*, _root_: DictConfig) -> str:
    """`${protocol_fold_range:}` as a sweep's `protocol.fold`: every fold of the configured
    protocol on the configured data, one job each (68 subjects of the MEGC composite's
    LOSO), counted from the split the jobs will read, which is made here if new."""
    from mer.data.index import index_dataset
    from mer.data.splits import ProtocolSettings, load_or_make_folds

    records, _ = index_dataset(_root_.data)
    settings = ProtocolSettings(**{**OmegaConf.to_container(_root_.protocol, resolve=True), "fold": None})
    document, _ = load_or_make_folds(Path(_root_.paths.split_dir), records, settings)
    return f"range(0,{len(document['folds'])})"


# Registered where Hydra loads its callbacks: before the sweeper reads its params.
OmegaConf.register_new_resolver("protocol_fold_range", protocol_fold_range, replace=True)


def sweep_name(config: DictConfig) -> str:
    sweep = config.get("sweep")
    return sweep.name if sweep else "multirun"


class PrepareTrackingStore(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.prepare(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.prepare(config)

    @staticmethod
    def prepare(config: DictConfig) -> None:
        try:
            ensure_logger_store(config.logger)
        except MerError as error:
            # A tracking server that does not answer, before any work, in one line:
            # Hydra would print a traceback.
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)


class SweepParentRun(Callback):
    """A parent MLflow run per multirun (tagged with the sweep name); at the end, the
    sweep's tables and plots are rebuilt from the store and logged to it."""

    def __init__(self):
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            # The values every job shares; a swept value is checked when its job starts.
            check_values(config)
            check_sweep_objective(config, config.hydra.sweeper._target_)
            varied = varied_values(config)
        except (MerError, InterpolationResolutionError) as error:
            # Before any job starts, and one line: Hydra would print a traceback.
            cause = error.__cause__ if isinstance(error.__cause__, MerError) else error
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(1)
        experiment_id = ensure_logger_store(config.logger)
        client = MlflowClient(config.logger.tracking_uri)
        name = sweep_name(config)
        title = " ".join(["sweep", name, *(f"{short_name(k).rsplit('.', 1)[-1]}={v}" for k, v in varied.items()),
                          datetime.now().strftime("%Y-%m-%d %H:%M")])
        tags = {MLFLOW_RUN_NAME: title, "mer.role": "sweep_parent", "mer.sweep_name": name,
                "mer.sweep_overrides": " ".join(config.hydra.overrides.task),
                "mer.optimized_metric": config.optimized_metric,
                # how a job whose environment lacks PARENT_RUN_ENV (SLURM) finds this run
                SWEEP_DIR_TAG: str(config.hydra.sweep.dir),
                # as each job's run has it: the UI groups a sweep's runs by it
                "mer.sweep_id": Path(str(config.hydra.sweep.dir)).name}
        if config.allow_heldout_objective:
            tags["mer.heldout_objective"] = "true"
        close_stale_runs(client, [experiment_id])
        self.run_id = client.create_run(experiment_id, run_name=tags[MLFLOW_RUN_NAME], tags={**tags, **owner_tags()}).info.run_id
        # Closed at the sweep's end, or by the entry point if a signal or an error stops it first.
        hold_open(client, self.run_id)
        client.log_batch(self.run_id, params=[Param(short_name(key), value) for key, value in varied.items()])
        os.environ[PARENT_RUN_ENV] = self.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        # Loaded at the sweep's end, the only time they are needed (they bring scikit-learn
        # and matplotlib, seconds before the first job or a refusal otherwise).
        from mer.reporting.folds import pool_fold_cells
        from mer.reporting.tables import best_cell_summary, build_sweep_report

        client = MlflowClient(config.logger.tracking_uri)
        varied = list(varied_values(config))
        try:
            # A multirun over protocol.fold: each cell's folds pooled in a run of its own,
            # before the tables, which count those runs (not the folds one by one).
            if "protocol.fold" in varied:
                pool_fold_cells(client, self.run_id, list(config.data.classes), config.logger.tracking_uri)
            if config.get("sweep"):
                build_sweep_report(client, config.logger.experiment_name, sweep_name(config), parent_run_id=self.run_id)
            # Inside the try: a failing summary must close the parent too, never leave it RUNNING.
            children = client.search_runs([client.get_run(self.run_id).info.experiment_id],
                                          f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.run_id}'", max_results=10_000)
            metrics, tags = best_cell_summary([r for r in children if r.data.tags.get(COMPLETE_TAG) == "true"],
                                              [k for k in varied if k not in ("seed", "protocol.fold")])
            client.log_batch(self.run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
                             tags=[RunTag(k, v) for k, v in tags.items()])
        except BaseException as error:
            close_run(client, self.run_id, "FAILED", f"the sweep's report failed: {describe(error)}")
            raise
        else:
            unfinished = [r for r in children if r.info.status != "FINISHED"]
            if unfinished:
                close_run(client, self.run_id, "FAILED", f"{len(unfinished)} run(s) of the sweep did not finish: "
                          + ", ".join(sorted(r.info.run_name for r in unfinished))[:4000])
            else:
                close_run(client, self.run_id, "FINISHED")
        finally:
            os.environ.pop(PARENT_RUN_ENV, None)
