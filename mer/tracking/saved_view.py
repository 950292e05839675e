"""The runs table as a comparison opens it: a saved view of the MLflow UI (3.15+) stored as
an experiment tag, `mlflow.sharedViewState.<id>`, holding an envelope {name, createdAt,
updatedAt, state} whose state is the table's UI state as JSON;
`#/experiments/<id>/runs?viewStateShareKey=<id>` opens it. Read from MLflow 3.17.2's UI
bundle (the saved-view reader of mlflow PR 24360, which replaced the URL-embedded state of
PR 24152 before any release): the state's `selectedColumns`, `columnOrder`,
`columnWidths`, `groupBy` and `groupsExpanded` are applied, `runsExpanded` is not, and the
address must carry no search-facet parameter beside the key, or the view is not read."""

from __future__ import annotations

import json
import time

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mer.tracking.run_params import short_name

VIEW_ID = "mer-comparison"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
SHARE_KEY = "viewStateShareKey"
RUN_NAME_COLUMN = "attributes.`Run Name`"
# What a comparison of cells needs beside the run name: the paper's knobs and the seed, the
# held-out figures of one fold or pooled over folds, the inner split's, what each run was
# trained and scored on, and its logged model.
PARAMS = ("optim.lr", "model.dropout", "trainer.max_epochs", "seed", "protocol.name")
METRICS = ("test/acc", "test/uf1", "test/uar", "pooled/test/acc", "pooled/test/uf1", "pooled/test/uar", "val/acc_best")
ATTRIBUTES = ("Dataset", "Models")
GROUP_TAG = "mer.sweep_id"  # every run of one multirun, its parent too
RUN_NAME_WIDTH = 460  # px: "lr=0.0001 dropout=0.3 epochs=100 seed=3" and a sweep parent's name, whole


def column(kind: str, name: str) -> str:
    """The UI's column id (its canonical sort key): kind.`name`."""
    return f"{kind}.`{name}`"


def view_state() -> dict:
    columns = ([column("params", short_name(k)) for k in PARAMS] + [column("metrics", m) for m in METRICS]
               + [column("attributes", a) for a in ATTRIBUTES])
    return {"selectedColumns": columns, "columnOrder": [RUN_NAME_COLUMN, *columns],
            "columnWidths": {RUN_NAME_COLUMN: RUN_NAME_WIDTH},
            # each multirun's runs together (its parent among them), with the group's means; runs of
            # no sweep in a group of their own, open like the others (the UI folds that one away)
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
            "groupsExpanded": {f"tag.{GROUP_TAG}": True}}


def save_comparison_view(client: MlflowClient, experiment_id: str) -> str | None:
    """Write (or rewrite) the view on the experiment; its id, or None where the store refuses
    the tag (a server without edit permission), and the plain table is all there is."""
    now = int(time.time() * 1000)
    envelope = {"name": "mer: compare cells", "createdAt": now, "updatedAt": now, "state": json.dumps(view_state())}
    try:
        client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))
    except MlflowException:
        return None
    return VIEW_ID
