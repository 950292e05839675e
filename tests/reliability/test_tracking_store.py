"""Creating the experiment in a real sqlite store: a refusal or a deleted experiment is
named in one line; only the race of two processes creating it at once is passed over."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mer.common.errors import MerError
from mer.tracking.store import EXPERIMENT_TAGS, ensure_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One store for the module: its migrations run once."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_an_artifact_location_mlflow_refuses_is_named_with_the_experiment(store, tmp_path):
    # Over MLflow's 2048 characters for an artifact location: create_experiment refuses it.
    deep = tmp_path.joinpath(*[f"level{i}-" + "x" * 200 for i in range(11)])
    with pytest.raises(MerError) as raised:
        ensure_store(store, "deep-artifacts", str(deep))
    message = str(raised.value)
    assert "'deep-artifacts'" in message and store in message and "artifact path length" in message, message
    assert MlflowClient(store).get_experiment_by_name("deep-artifacts") is None


def test_a_deleted_experiment_of_that_name_is_named_with_how_to_restore_it(store):
    client = MlflowClient(store)
    experiment_id = client.create_experiment("deleted-one")
    client.delete_experiment(experiment_id)
    with pytest.raises(MerError, match=rf"'deleted-one' in {store} is deleted.*restore --experiment-id {experiment_id}"):
        ensure_store(store, "deleted-one")


def test_an_experiment_created_meanwhile_by_another_process_is_used(store, monkeypatch):
    other = MlflowClient(store).create_experiment("raced")
    real_lookup = MlflowClient.get_experiment_by_name
    lookups = []

    def looked_up_before_the_other_process_created_it(self, name):
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", looked_up_before_the_other_process_created_it)
    assert ensure_store(store, "raced") == other
    assert EXPERIMENT_TAGS.items() <= MlflowClient(store).get_experiment(other).tags.items()
