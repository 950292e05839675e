"""Runs of the same config already in the store: a complete one a sweep skips, a stopped one
training continues from its last checkpoint, a run looked up by id."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from mer.common.distributed import is_global_rank_zero
from mer.tracking.run_tags import CHECKPOINT_DIR_TAG, COMPLETE_FILTER, CONFIG_HASH_TAG, LAST_CHECKPOINT
from mer.tracking.stale_runs import owner_is_gone


def same_config_runs(cfg: DictConfig, key: str, sweep: str | None, condition: str) -> list:
    """Runs of this config (and sweep, if given) meeting `condition`, newest first."""
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    if experiment is None:
        return []
    query = f"tags.`{CONFIG_HASH_TAG}` = '{key}'" + (f" and tags.`mer.sweep_name` = '{sweep}'" if sweep else "")
    return client.search_runs([experiment.experiment_id], f"{query} and {condition}", run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=1000, order_by=["attributes.start_time DESC"])


def finished_run(cfg: DictConfig, key: str, sweep: str):
    """A complete run of the same sweep and config, if the store has one."""
    found = same_config_runs(cfg, key, sweep, COMPLETE_FILTER)
    return found[0] if found else None


def resumable_run(cfg: DictConfig, key: str, sweep: str | None) -> tuple[str, Path] | None:
    """The newest run of this config (and sweep) that stopped before it finished and left
    a last checkpoint behind: (its run id, that checkpoint). A run still RUNNING counts
    when its process is gone (kill -9); under DDP, the other ranks also take the one
    their rank zero has just reopened, so that every process continues from it."""
    follower = not is_global_rank_zero()
    for run in same_config_runs(cfg, key, sweep, "attributes.status != 'FINISHED'"):
        if run.info.status == "RUNNING" and not (follower or owner_is_gone(run.data.tags)):
            continue
        folder = run.data.tags.get(CHECKPOINT_DIR_TAG)
        if folder and (Path(folder) / LAST_CHECKPOINT).is_file():
            return run.info.run_id, Path(folder) / LAST_CHECKPOINT
    return None


def stored_run(tracking_uri: str, run_id: str):
    """Run `run_id` of that store, or None when the store has no such run."""
    try:
        return MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        return None
