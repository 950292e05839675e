"""Creating the tracking store once, before any fan-out."""

from __future__ import annotations

import fcntl
from pathlib import Path

import mlflow
from mlflow.entities import LifecycleStage
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from omegaconf.errors import InterpolationResolutionError

from mer.common.errors import MerError
from mer.tracking.server import LOST_SERVERS, apply_http_settings, check_server, is_server


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
    the Hydra callback calls this in the parent before a sweep starts. A tracking server
    must answer first (in seconds, or one line says it does not), and decides itself
    where artifacts go: a path of this machine as location would send every client's
    artifacts to its own disk."""
    if is_server(tracking_uri):
        check_server(tracking_uri)
        if artifact_location and (artifact_location.startswith("file:") or "://" not in artifact_location):
            artifact_location = None
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
    """`ensure_store` for a run config's `logger` group; on a tracking server, with MLflow's
    HTTP retries bounded by its `http_*` keys. Once this process has lost that server, the
    experiment of the local store its runs continue in (`mer.tracking.offline`)."""
    uri = tracking_uri(logger)
    if uri in LOST_SERVERS:
        return ensure_store(LOST_SERVERS[uri].uri, logger.experiment_name, LOST_SERVERS[uri].artifact_location or None)
    if is_server(uri):
        apply_http_settings(logger)
    return ensure_store(uri, logger.experiment_name, logger.get("artifact_location"))


def tracking_uri(logger) -> str:
    try:
        return logger.tracking_uri
    except InterpolationResolutionError as error:
        if "MLFLOW_TRACKING_URI" not in str(error):
            raise
        raise MerError("logger=mlflow_server reads the tracking server's address from MLFLOW_TRACKING_URI, which is not "
                       "set: export MLFLOW_TRACKING_URI=http://127.0.0.1:5001 (where make mlflow-server starts one)") from None


def _ensure_experiment(client: MlflowClient, experiment_name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        location = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location else artifact_location
        try:
            # Tagged as it is created: jobs racing to tag it afterwards collide on the server.
            client.create_experiment(experiment_name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except mlflow.exceptions.MlflowException as error:
            # Only a race is passed over: another process created it between our lookup and create.
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise MerError(f"cannot create the MLflow experiment {experiment_name!r} in {client.tracking_uri}: "
                               f"{error.message}") from error
        experiment = client.get_experiment_by_name(experiment_name)
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        # Its name stays taken until the store forgets it (mlflow gc), and no run can start in it.
        raise MerError(f"the MLflow experiment {experiment_name!r} in {client.tracking_uri} is deleted: restore it "
                       f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or choose another name "
                       "(logger.experiment_name)")
    # Set once; a user who changes them in the UI keeps the change.
    for key, value in EXPERIMENT_TAGS.items():
        if key not in experiment.tags:
            try:
                client.set_experiment_tag(experiment.experiment_id, key, value)
            except mlflow.exceptions.MlflowException:
                # Two jobs adding the same tag at once: a SQL server refuses the second insert.
                if key not in client.get_experiment(experiment.experiment_id).tags:
                    raise
    return experiment.experiment_id
