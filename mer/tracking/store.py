"""Creating the tracking store once, before any fan-out."""

from __future__ import annotations

import fcntl
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def ensure_store(tracking_uri: str, experiment_name: str, artifact_location: str | None = None) -> str:
    """Create the store (sqlite migrations run on first use, ~1 s) and the experiment;
    return the experiment id. Parallel jobs racing on a fresh sqlite store can fail, so
    the Hydra callback calls this in the parent before a sweep starts."""
    if not tracking_uri.startswith("sqlite:///"):
        return _ensure_experiment(MlflowClient(tracking_uri), experiment_name, artifact_location)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    # Two sweeps started together on a fresh file both run the migrations and one fails:
    # whoever holds the lock creates the store, the other then finds it ready.
    with open(database.with_name(database.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _ensure_experiment(MlflowClient(tracking_uri), experiment_name, artifact_location)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_logger_store(logger) -> str:
    """`ensure_store` for a run config's `logger` group."""
    return ensure_store(logger.tracking_uri, logger.experiment_name, logger.get("artifact_location"))


def _ensure_experiment(client: MlflowClient, experiment_name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location else artifact_location
    try:
        return client.create_experiment(experiment_name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        return client.get_experiment_by_name(experiment_name).experiment_id
