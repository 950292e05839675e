"""Runs left RUNNING by a process that is gone (kill -9, the out-of-memory killer, a
power cut, scancel): every run records which process owns it (and its SLURM job), and a
run whose process no longer exists on this host, or whose SLURM job has ended, is closed
FAILED, saying so. Nothing else could ever close it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from mlflow.entities import RunTag, ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from mer.common.files import process_exists

HOST_TAG = "mer.host"
PID_TAG = "mer.pid"
# The process's start time as the kernel counts it: a pid reused by a later process on
# the same host does not pass for the run's owner.
STARTED_TAG = "mer.pid_started"
STALE_TAG = "mer.stale"
ERROR_TAG = "mer.error"
SLURM_JOB_TAG = "mer.slurm_job"  # SLURM_JOB_ID of the job that owns a run, on whichever node


def process_started(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), or None when it does not
    exist. Without /proc (macOS), a live pid reads as started at an unknown time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown" if process_exists(pid) else None
    # The command name (field 2) may hold spaces; the fields after its ')' are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run (this one), and its SLURM job if it is one."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: str(process_started(os.getpid()))}
    if os.environ.get("SLURM_JOB_ID"):
        tags[SLURM_JOB_TAG] = os.environ["SLURM_JOB_ID"]
    return tags


def slurm_job_ended(job: str) -> bool | None:
    """Whether SLURM no longer runs job `job`; None where SLURM cannot be asked."""
    if not shutil.which("squeue"):
        return None
    try:
        found = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode == 0:
        return not found.stdout.strip()
    # A job that ended long enough ago is no longer known at all.
    return True if "Invalid job id" in found.stderr else None


def owner_is_gone(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's owner tags has ended: by its pid on this host;
    on another host only when it ran as a SLURM job that SLURM says has ended (another
    host's process cannot be seen from here)."""
    if tags.get(HOST_TAG) != socket.gethostname():
        return bool(tags.get(SLURM_JOB_TAG)) and slurm_job_ended(tags[SLURM_JOB_TAG]) is True
    if not tags.get(PID_TAG, "").isdigit():
        return False
    started = process_started(int(tags[PID_TAG]))
    return started is None or started not in (tags.get(STARTED_TAG), "unknown")


def undecidable_runs(client: MlflowClient, experiment_ids: list[str]) -> list:
    """RUNNING runs owned on other hosts, outside SLURM's view: only their own host (or
    its operator) can tell whether they still run."""
    return [run for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=10_000)
            if run.data.tags.get(HOST_TAG) not in (None, socket.gethostname()) and not owner_is_gone(run.data.tags)]


def close_stale_runs(client: MlflowClient, experiment_ids: list[str]) -> list[str]:
    """Close FAILED every RUNNING run of these experiments whose owner process on this host
    is gone, or whose SLURM job has ended; returns their ids."""
    closed = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", run_view_type=ViewType.ALL,
                                  max_results=10_000):
        tags = run.data.tags
        if not owner_is_gone(tags):
            continue
        owner = f"SLURM job {tags[SLURM_JOB_TAG]}, " if tags.get(SLURM_JOB_TAG) else ""
        error = (f"its process ({owner}pid {tags[PID_TAG]} on {tags[HOST_TAG]}) ended without closing the run: "
                 "killed (kill -9, out of memory, scancel) or the machine stopped")
        client.set_terminated(run.info.run_id, "FAILED")
        client.log_batch(run.info.run_id, tags=[RunTag(STALE_TAG, "true"), RunTag(ERROR_TAG, error),
                                                RunTag(MLFLOW_RUN_NOTE, f"**FAILED**: {error}")])
        closed.append(run.info.run_id)
    return closed
