"""Resuming: a run killed by a real signal continues from its last checkpoint into the same
MLflow run and ends with the weights of an uninterrupted run; a sweep run again finishes
its interrupted cell from its checkpoint."""

from __future__ import annotations

import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch

from mer.common.errors import MerError
from mer.commands.train import train

from conftest import base_overrides, run_script
from helpers import runs_of, start_train

EPOCHS = ["trainer.max_epochs=6", "data.batch_size=4"]


def trained_epochs(store: Path) -> int:
    """Epochs whose training loss a running run has logged (read-only: no migrations race)."""
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            row = db.execute("select count(distinct m.step) from metrics m join runs r on m.run_uuid = r.run_uuid "
                             "where m.key = 'train/loss' and r.status = 'RUNNING'").fetchone()
            return row[0] if row else 0
    except sqlite3.Error:
        return 0


def kill_after_epochs(store: Path, epochs: int, *args: str) -> None:
    """Start train.py and SIGKILL it once its run has trained `epochs` epochs."""
    process = start_train(*args)
    deadline = time.monotonic() + 300
    while trained_epochs(store) < epochs:
        assert process.poll() is None, f"train.py ended before it was killed: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "train.py never trained that far"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def last_weights(run) -> dict[str, torch.Tensor]:
    folder = Path(run.data.tags["mer.checkpoint_dir"])
    return torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_tree, shared_dirs):
    """The same 6 epochs, never stopped: (its run, its store's URI)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    result = run_script("train.py", *base_overrides(tmp, tiny_tree, shared_dirs), f"logger.tracking_uri={uri}", *EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(tmp / "mlflow.db")
    return run, uri


def test_a_run_killed_after_epoch_3_of_6_resumes_into_the_same_run_with_the_uninterrupted_weights(
        train_overrides, tmp_path, uninterrupted):
    uninterrupted, _ = uninterrupted
    store = tmp_path / "mlflow.db"
    kill_after_epochs(store, 3, *train_overrides, *EPOCHS)
    (killed,) = runs_of(store)
    assert killed.info.status == "RUNNING"  # kill -9: nothing could close it

    result = run_script("train.py", *train_overrides, *EPOCHS, "resume=true")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = runs_of(store)  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id
    assert (run.info.status, run.data.tags["mer.complete"], run.data.tags["mer.resumed"]) == ("FINISHED", "true", "1")
    assert "mer.error" not in run.data.tags and "mer.stale" not in run.data.tags
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{store}").get_metric_history(run.info.run_id, "train/loss")
    assert {m.step for m in history} == set(range(6))
    expected, resumed = last_weights(uninterrupted), last_weights(run)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected), "resumed weights differ from an uninterrupted run"
    assert run.data.metrics["test/acc"] == uninterrupted.data.metrics["test/acc"]
    assert run.data.metrics["test/loss"] == uninterrupted.data.metrics["test/loss"]


def test_ckpt_path_of_a_finished_run_or_other_settings_is_refused_in_one_line(make_cfg, uninterrupted):
    run, uri = uninterrupted
    checkpoint = Path(run.data.tags["mer.checkpoint_dir"]) / "last.ckpt"
    with pytest.raises(MerError, match=f"ckpt_path={checkpoint} comes from run {run.info.run_id} .*already finished"):
        train(make_cfg(*EPOCHS, f"logger.tracking_uri={uri}", f"ckpt_path={checkpoint}"))
    with pytest.raises(MerError, match="which trained other settings; resume it with its own command line"):
        train(make_cfg(*EPOCHS, "optim.lr=0.01", f"logger.tracking_uri={uri}", f"ckpt_path={checkpoint}"))


# slow: about 30 s, and the default run is near its 20 min line; `make test-all` runs it.
@pytest.mark.slow
def test_a_sweep_run_again_after_a_crash_finishes_the_interrupted_cell_from_its_checkpoint(
        train_overrides, tmp_path):
    store = tmp_path / "mlflow.db"
    # Each job in its own sweep folder (no shared paths.output_dir), as in real sweeps.
    sweep = ["-m", "+sweeps=table3_lr", "optim.lr=0.01,0.001", *EPOCHS,
             *(o for o in train_overrides if not o.startswith("paths.output_dir="))]
    kill_after_epochs(store, 3, *sweep)
    first = {r.info.run_name: r for r in runs_of(store) if r.data.tags.get("mer.role") != "sweep_parent"}
    (interrupted,) = first.values()  # killed in the first cell

    result = run_script("train.py", *sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(store)
    cells = [r for r in runs if r.data.tags.get("mer.role") != "sweep_parent"]
    assert sorted(r.info.status for r in cells) == ["FINISHED", "FINISHED"]
    resumed = next(r for r in cells if r.info.run_id == interrupted.info.run_id)
    assert resumed.data.tags["mer.resumed"] == "1"
    # Both cells nest under the sweep that finished them.
    parent = next(r for r in runs if r.data.tags.get("mer.role") == "sweep_parent" and r.info.status == "FINISHED")
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parent.info.run_id}
