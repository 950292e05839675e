"""Sweep cells run side by side on one machine: `hydra/launcher=parallel` (hydra-joblib-launcher)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from conftest import run_script
from helpers import runs_of


def test_a_parallel_sweep_runs_its_cells_in_worker_processes_under_one_parent(train_overrides, tmp_path):
    result = run_script("train.py", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *train_overrides,
                        "trainer.max_epochs=1", "test=false", "model.impl=stock", "optim.lr=0.01,0.001")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    children = [r for r in runs if r is not parent]
    assert sorted(r.data.params["lr"] for r in children) == ["0.001", "0.01"]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parent.info.run_id}
    assert {(r.info.status, r.data.tags.get("mer.complete")) for r in runs} == {("FINISHED", "true"), ("FINISHED", None)}
    # Two workers, neither of them the launching process (which runs the parent).
    pids = {r.data.tags["mer.pid"] for r in children}
    assert len(pids) == 2 and parent.data.tags["mer.pid"] not in pids
