"""Which run a sweep's job nests under. The launching process creates the sweep's parent
run and hands its id to the jobs in the environment; a job whose environment does not come
from that process (a SLURM task prolog that resets it, a submitit job started again by
hand from its pickle) finds the parent in the store by the sweep folder, which the parent
is tagged with and which is unique to one launch (it holds `${launch_stamp:}`)."""

from __future__ import annotations

import logging
import os

from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

# Jobs read their sweep's parent run id from here: it reaches in-process jobs and the worker
# processes of other launchers, which inherit the environment.
PARENT_RUN_ENV = "MER_PARENT_RUN_ID"
SWEEP_DIR_TAG = "mer.sweep_dir"
ROLE_TAG = "mer.role"
PARENT_ROLE = "sweep_parent"


def multirun_sweep_dir() -> str | None:
    """The sweep folder of the multirun job this process runs, else None."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if str(getattr(hydra.mode, "name", hydra.mode)) != "MULTIRUN":
        return None
    return str(hydra.sweep.dir)


def quoted(value: str) -> str:
    """`value` as a string literal of MLflow's search filter (which has no escapes)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def sweep_parent_id(logger) -> str | None:
    """The parent run of the sweep this job belongs to (None outside a sweep), given the run
    config's `logger` group (the store to look in)."""
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        return parent
    sweep_dir = multirun_sweep_dir()
    if sweep_dir is None:
        return None
    client = MlflowClient(logger.tracking_uri)
    experiment = client.get_experiment_by_name(logger.experiment_name)
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}' and tags.`{SWEEP_DIR_TAG}` = {quoted(sweep_dir)}",
        # a sweep folder set by hand (hydra.sweep.dir=...) may have had parents before: the newest is this one
        order_by=["attributes.start_time DESC"], max_results=1) if experiment is not None else []
    if not found:
        log.warning("no parent run of sweep %s in %s: this run is not nested under it", sweep_dir, logger.tracking_uri)
        return None
    return found[0].info.run_id
