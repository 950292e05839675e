"""The handle training code writes a run through, so it never imports mlflow itself."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from mer.tracking.offline import MAX_PARAMS_PER_BATCH

DATASET_ATTEMPTS = 3


class TrackedRun:
    """A thin handle on the active run, so training code never imports mlflow itself."""

    def __init__(self, client: MlflowClient, run_id: str, tracking_uri: str):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def store(self) -> tuple[str, str]:
        """(tracking uri, run id) where the run is written now: a run carried on offline after
        its server was lost lives in the local store (`mer.tracking.offline`)."""
        locate = getattr(self.client, "store_of", None)
        return (locate(self.run_id) if locate else None) or (self.tracking_uri, self.run_id)

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0, dataset: tuple[str, str] | None = None,
                    model_id: str | None = None) -> None:
        """`dataset`: the (name, digest) of the logged dataset the figures were computed on;
        `model_id`: the logged model they score (its page lists them, and that dataset)."""
        now = int(time.time() * 1000)
        name, digest = dataset or (None, None)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step, model_id=model_id, dataset_name=name,
                                                           dataset_digest=digest) for k, v in metrics.items()])

    def log_datasets(self, name: str, source: str, parts: Sequence[tuple[str, str, int]]) -> None:
        """The run's data as MLflow dataset inputs (the runs table's Dataset column): one per
        (context, digest of its clip ids, clip count), all named `name`, read from `source`."""
        inputs = [DatasetInput(Dataset(name, digest, "local", json.dumps({"uri": source}),
                                       profile=json.dumps({"clips": count})),
                               [InputTag(MLFLOW_DATASET_CONTEXT, context)]) for context, digest, count in parts]
        for attempt in range(DATASET_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                # Runs started together insert the same dataset at once: the store looks it up,
                # finds none, and all but one insert fail. Asked again, it finds that one.
                if "UNIQUE" not in str(error).upper() or attempt == DATASET_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)


class _DiscardingClient:
    """A client that keeps nothing: every call it is asked for returns None."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def discarding_run() -> TrackedRun:
    """The run handle of a DDP process other than rank zero: the same methods, writing
    nothing (rank zero writes the one record), and no run id of its own."""
    return TrackedRun(_DiscardingClient(), "", "")
