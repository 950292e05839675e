"""A run's lifecycle: created (or reopened to continue) with its name, params and provenance,
and closed with a status that says how it ended: FINISHED only when complete, KILLED when a
signal stopped it, FAILED otherwise, also for a sweep job refused before it began."""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE
from omegaconf import DictConfig

from mer.common.distributed import is_global_rank_zero
from mer.common.errors import MerError
from mer.common.interrupts import Interrupted
from mer.tracking.offline import tracking_client
from mer.tracking.provenance import environment_tags, git_state
from mer.tracking.run_handle import TrackedRun, discarding_run
from mer.tracking.run_names import run_name
from mer.tracking.run_params import compared_params
from mer.tracking.run_tags import COMPLETE_TAG, RESUMED_TAG
from mer.tracking.stale_runs import ERROR_TAG, STALE_TAG, close_stale_runs, owner_tags
from mer.tracking.store import ensure_logger_store
from mer.tracking.sweep_parent import sweep_parent_id

log = logging.getLogger(__name__)

# Runs this process created and has not closed yet, with their store's client.
_OPEN_RUNS: dict[str, MlflowClient] = {}
MAX_TAG_LENGTH = 8000  # MLflow's limit on a tag value


def close_run(client: MlflowClient, run_id: str, status: str, error: str | None = None, details: str = "") -> bool:
    """Status first, details second: when the store cannot take the details (a full disk),
    the run is still not left RUNNING. The error goes in `mer.error` and, whole with
    `details` (a traceback), in the run's description, the first thing its page shows.
    A failure here is logged and returned, never raised over the error that ended the run."""
    _OPEN_RUNS.pop(run_id, None)
    try:
        client.set_terminated(run_id, status)
        if error:
            client.log_batch(run_id, tags=[RunTag(ERROR_TAG, error[:5000]),
                                           RunTag(MLFLOW_RUN_NOTE, description(status, error, details))])
        return True
    except Exception as failure:  # the store itself is failing: say so, keep the first error
        log.error("could not record run %s as %s (%s); `mer runs cleanup` closes it later", run_id, status, failure)
        return False


def hold_open(client: MlflowClient, run_id: str) -> None:
    """Register a run this process must close if it is stopped (`close_open_runs`)."""
    _OPEN_RUNS[run_id] = client


def close_open_runs(status: str, error: str) -> None:
    """Close every run this process still holds open, innermost first: what a stopped
    process does on its way out, for runs whose own code could not (a sweep's parent)."""
    for run_id, client in reversed(list(_OPEN_RUNS.items())):
        close_run(client, run_id, status, error)


def description(status: str, error: str, details: str) -> str:
    text = f"**{status}**: {error}"
    if details:
        text += f"\n\n```\n{details}\n```"
    return text[-MAX_TAG_LENGTH:]


def traceback_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).strip()


def describe(error: BaseException) -> str:
    return str(error) if isinstance(error, Interrupted) else f"{type(error).__name__}: {error}"


@contextmanager
def tracked_run(cfg: DictConfig, overrides: Sequence[str], extra_tags: dict[str, str] | None = None,
                parent: TrackedRun | str | None = None, name_suffix: str = "",
                continue_run: str | None = None) -> Iterator[TrackedRun]:
    """A run that ends FINISHED (tagged complete) when the block ends, KILLED when a signal
    stopped it, or FAILED with the error in `mer.error`; nothing else sets its status.
    With `parent`, it is nested under that run in the MLflow UI (one fold of a protocol);
    with `continue_run`, that stopped run is reopened instead of a new one created. Under
    DDP only global rank zero writes: the other processes get a handle that keeps nothing."""
    if not is_global_rank_zero():
        yield discarding_run()
        return
    logger = cfg.logger
    experiment_id = ensure_logger_store(logger)
    # On a tracking server, the run (and its close_run calls) follows it into a local store
    # if the server stops answering.
    client = tracking_client(logger)
    close_stale_runs(client, [experiment_id])
    name = logger.get("run_name") or run_name(cfg, overrides)
    name = f"{name} {name_suffix}".strip()
    tags = {MLFLOW_RUN_NAME: name, "mer.overrides": " ".join(overrides), "seed": str(cfg.seed), **owner_tags(),
            **git_state(Path(__file__).resolve().parent), **environment_tags(), **(extra_tags or {})}
    if parent is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent.run_id if isinstance(parent, TrackedRun) else parent
    if continue_run:
        run = reopen_run(client, continue_run, tags, overrides)
    else:
        run = client.create_run(experiment_id, run_name=name, tags=tags)
    handle = TrackedRun(client, run.info.run_id, logger.tracking_uri)
    hold_open(client, handle.run_id)
    try:
        handle.log_params(compared_params(cfg, overrides))
        yield handle
    except (Interrupted, KeyboardInterrupt) as error:
        close_run(client, handle.run_id, "KILLED", describe(error) if isinstance(error, Interrupted) else "interrupted")
        raise
    except BaseException as error:
        close_run(client, handle.run_id, "FAILED", describe(error), traceback_text(error))
        error.mer_run_id = handle.run_id  # recorded: whoever catches it need not record it again
        raise
    else:
        try:
            client.set_tag(handle.run_id, COMPLETE_TAG, "true")
        except BaseException as error:
            close_run(client, handle.run_id, "FAILED", f"the run could not be marked complete: {describe(error)}")
            raise
        if not close_run(client, handle.run_id, "FINISHED"):
            raise MerError(f"run {handle.run_id} computed to the end but the store could not record it FINISHED "
                           f"({logger.tracking_uri}); see the error above")


def reopen_run(client: MlflowClient, run_id: str, tags: dict[str, str], overrides: Sequence[str]):
    """Run `run_id`, RUNNING again and owned by this process, for training to continue in:
    what its earlier end recorded (the error, a stale owner) no longer describes it. Its
    name and first command line stay; this one is added."""
    run = client.get_run(run_id)
    for stale in (ERROR_TAG, STALE_TAG, MLFLOW_RUN_NOTE, COMPLETE_TAG):
        if stale in run.data.tags:
            client.delete_tag(run_id, stale)
    resumed = int(run.data.tags.get(RESUMED_TAG, "0")) + 1
    kept = {k: v for k, v in tags.items() if k not in (MLFLOW_RUN_NAME, "mer.overrides")}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**kept, RESUMED_TAG: str(resumed),
                                                              f"mer.overrides_resume{resumed}": " ".join(overrides)}.items()])
    client.update_run(run_id, "RUNNING")
    log.info("continuing run %s (%s) from its last checkpoint", run_id, run.info.run_name)
    return client.get_run(run_id)


def record_refused(cfg: DictConfig, overrides: Sequence[str], error: str) -> str:
    """A FAILED run, nested under the sweep's parent, for a sweep job refused before its run
    began (a bad value): the sweep's record then shows the cell that never ran, and why.
    Under DDP, rank zero records it once."""
    if not is_global_rank_zero():
        return ""
    logger = cfg.logger
    client = MlflowClient(logger.tracking_uri)
    try:
        name = run_name(cfg, overrides)
    except Exception:  # the refused value may not even resolve
        name = " ".join(overrides)
    tags = {MLFLOW_RUN_NAME: f"{name} (refused)", "mer.overrides": " ".join(overrides), **owner_tags()}
    parent = sweep_parent_id(logger)
    if parent:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    run = client.create_run(ensure_logger_store(logger), run_name=tags[MLFLOW_RUN_NAME], tags=tags)
    close_run(client, run.info.run_id, "FAILED", error)
    return run.info.run_id
