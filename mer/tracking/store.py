"""Creating the tracking store once, before any fan-out."""

from __future__ import annotations

import fcntl
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


# MLflow 3's UI opens an experiment in its GenAI view (traces, prompts) unless it says it
# holds model training; the note is the description shown at the top of its page.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "Runs of mer (micro-expression recognition with a 3D CNN, Irawan et al.). "
        "Metrics: test/* = held-out clips, final model; heldout/* = held-out clips per epoch, monitoring only; "
        "val/* = inner validation split; train/*. "
        "A run counts only when FINISHED with tag mer.complete=true. "
        "A sweep's runs nest under its parent run `sweep <name>`, whose artifacts hold the tables (tables/). "
        "One sweep: filter tags.`mer.sweep_name` = 'table3_lr'; one cell over seeds: group by tag mer.cell_hash."),
}


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
    if experiment is None:
        location = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location else artifact_location
        try:
            client.create_experiment(experiment_name, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            pass  # another process created it between our lookup and create
        experiment = client.get_experiment_by_name(experiment_name)
    # Set once; a user who changes them in the UI keeps the change.
    for key, value in EXPERIMENT_TAGS.items():
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id
