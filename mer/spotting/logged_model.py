"""A training run's model as an MLflow model: MLflow 3's logged model (the experiment's
Models tab), linked to its run and to the figures logged at its epoch, as a pyfunc over
preprocessed clip batches, with the checked ONNX export beside it where asked; the Model
Registry (`mer register`) and `models:/` addresses (`mer predict --model`)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

from mer.common.errors import MerError
from mer.spotting.model import TorchClassifier, TrainedModel, export_checked, load_trained

PYFUNC_NAME = "model"  # the logged model's name (models:/<id> keeps each apart)
ONNX_NAME = "onnx"
CHECKPOINT_ARTIFACT = "checkpoint"


class ClipClassifier(PythonModel):
    """Class probabilities for a batch of preprocessed clips, as the run's cache holds them:
    (N, depth, size, size) uint8 greyscale -> (N, classes) float64, the input scaling the
    run trained with applied inside. Loading needs `mer` installed, as `mer predict` does."""

    def load_context(self, context) -> None:
        self.classifier = TorchClassifier(load_trained(Path(context.artifacts[CHECKPOINT_ARTIFACT])))

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        return self.classifier(np.asarray(model_input, dtype=np.uint8))


def signature_of(model: TrainedModel) -> ModelSignature:
    s = model.settings
    # Unnamed tensors: pyfunc then hands `predict` the array itself, not a {name: array} dict.
    return ModelSignature(Schema([TensorSpec(np.dtype(np.uint8), (-1, s.depth, s.size, s.size))]),
                          Schema([TensorSpec(np.dtype(np.float64), (-1, len(model.classes)))]))


@contextlib.contextmanager
def fluent_store(uri: str, experiment_id: str | None = None):
    """MLflow's model logging and loading read the process-wide store and experiment; a
    run's own are set around them, then put back."""
    previous_uri, previous_experiment = mlflow.get_tracking_uri(), os.environ.get(MLFLOW_EXPERIMENT_ID.name)
    mlflow.set_tracking_uri(uri)
    if experiment_id is not None:
        os.environ[MLFLOW_EXPERIMENT_ID.name] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_uri)
        if previous_experiment is None:
            os.environ.pop(MLFLOW_EXPERIMENT_ID.name, None)
        else:
            os.environ[MLFLOW_EXPERIMENT_ID.name] = previous_experiment


def requirements() -> list[str]:
    # Given, not inferred: inference loads the model again in a subprocess (seconds per run).
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]


def log_trained_model(run_id: str, uri: str, checkpoint: Path, step: int, onnx: bool = False) -> list[str]:
    """Log `checkpoint` (a run's reported weights) as the run's MLflow model(s); the figures
    the run logged at `step` (its reported epoch) are linked to them. Returns the model ids."""
    model = load_trained(checkpoint, tracking_uri=uri)
    s = model.settings
    # A seeded noise batch: a clip of a licensed corpus must not travel with the model.
    example = np.random.default_rng(0).integers(0, 256, (1, s.depth, s.size, s.size), dtype=np.uint8)
    metadata = {"mer.classes": json.dumps(model.classes), "mer.preprocess": json.dumps(s.as_dict(), sort_keys=True),
                "mer.input": model.network_input.input, "mer.checkpoint_sha256": model.checkpoint_sha256}
    ids = []
    with fluent_store(uri, MlflowClient(uri).get_run(run_id).info.experiment_id):
        info = Model.log(None, mlflow.pyfunc, run_id=run_id, name=PYFUNC_NAME, step=step, python_model=ClipClassifier(),
                         artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)}, signature=signature_of(model),
                         input_example=example, pip_requirements=requirements(), metadata=metadata,
                         tags={"mer.flavor": "pyfunc"})
        ids.append(info.model_id)
        if onnx:
            import onnx as onnx_lib

            with tempfile.TemporaryDirectory() as scratch:
                check = export_checked(model, Path(scratch) / "model.onnx")
                info = Model.log(None, mlflow.onnx, run_id=run_id, name=ONNX_NAME, step=step,
                                 onnx_model=onnx_lib.load(str(check.path)), pip_requirements=requirements(),
                                 metadata={**metadata, "mer.max_abs_probability_difference": repr(check.max_abs_difference)},
                                 tags={"mer.flavor": "onnx"})
            ids.append(info.model_id)
    return ids


def run_model_id(client: MlflowClient, run_id: str) -> str:
    """The pyfunc model a training run logged."""
    outputs = client.get_run(run_id).outputs
    for output in (outputs.model_outputs if outputs else []):
        if client.get_logged_model(output.model_id).name == PYFUNC_NAME:
            return output.model_id
    raise MerError(f"run {run_id} logged no MLflow model (a run of an older mer, a fold of a multi-fold run's parent, "
                   "or logger.log_model=false): register one of the runs that trained a model")


def register(uri: str, run_id: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register the run's model (store `uri`) under `name` and point `alias` at the new version; returns the version."""
    client = MlflowClient(uri)
    model_id = run_model_id(client, run_id)
    # The version's source (models:/<id>) is looked up in the process-wide store.
    with fluent_store(uri):
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name)
        version = client.create_model_version(name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id)
        client.set_registered_model_alias(name, alias, version.version)
    return version.version


def checkpoint_from_model_uri(uri: str, tracking: str, into: Path) -> tuple[Path, str | None]:
    """(checkpoint, its run) of a registered or logged model (`models:/NAME@ALIAS`,
    `models:/NAME/VERSION`, `models:/<model id>`), downloaded into `into`."""
    with fluent_store(tracking):
        try:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))
        except MlflowException as error:
            raise MerError(f"--model {uri}: {error.message}") from error
        checkpoints = sorted((folder / "artifacts").glob("*.ckpt"))
        if not checkpoints:
            raise MerError(f"--model {uri} is not a model logged by mer's train.py (no checkpoint in its artifacts)")
        run_id = Model.load(str(folder)).run_id
    return checkpoints[0], run_id
