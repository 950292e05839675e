"""train.py / evaluate.py as a user runs them: the same Hydra command lines, run in this process."""

import csv
import json

from mlflow.tracking import MlflowClient

from conftest import base_overrides, run_mer, run_script
from helpers import runs_of


def test_three_value_multirun_makes_three_grouped_runs(tmp_path, tiny_tree, shared_dirs):
    store = tmp_path / "sweep.db"
    args = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri=sqlite:///{store}",
            "trainer.max_epochs=1", "test=false"]
    result = run_script("train.py", "-m", "optim.lr=0.01,0.001,0.0001", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    runs = [r for r in runs if r is not parent]
    assert len(runs) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"} and parent.info.status == "FINISHED"
    assert sorted(r.data.params["lr"] for r in runs) == ["0.0001", "0.001", "0.01"]
    assert len({r.data.tags["mer.sweep_id"] for r in runs}) == 1
    assert sorted(r.info.run_name for r in runs) == [f"lr={lr} epochs=1 dropout=0.3 seed=1" for lr in ("0.0001", "0.001", "0.01")]


def _fails_cleanly(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-2000:]


def test_missing_data_root_is_one_clear_message(tmp_path):
    missing = tmp_path / "no_such_folder"
    result = run_script("train.py", "data=smic_hs", f"data.root={missing}", f"paths.root_dir={tmp_path}")
    _fails_cleanly(result, "does not exist", str(missing))


def test_empty_data_root_is_one_clear_message(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("train.py", "data=smic_hs", f"data.root={empty}", f"paths.root_dir={tmp_path}")
    _fails_cleanly(result, "no SMIC-HS subject folders", "HS/s1/micro/negative")


def test_unset_data_root_names_the_key(tmp_path):
    result = run_script("train.py", "data=smic_hs", f"paths.root_dir={tmp_path}")
    _fails_cleanly(result, "data.root")


def test_unknown_model_lists_the_choices(tmp_path):
    result = run_script("train.py", "model=resnet", f"paths.root_dir={tmp_path}")
    _fails_cleanly(result, "model/resnet", "mer3dcnn", "microexpstcnn")


def test_a_refused_model_value_is_one_clear_message(tmp_path, tiny_tree, shared_dirs):
    result = run_script("train.py", *base_overrides(tmp_path, tiny_tree, shared_dirs), "model.impl=fast", "debug=fast")
    _fails_cleanly(result, "model.impl must be one of fused, stock, reference, got 'fast'")


def test_evaluate_without_a_target_says_what_to_give(tmp_path):
    result = run_script("evaluate.py", f"paths.root_dir={tmp_path}")
    _fails_cleanly(result, "ckpt_path", "run_id")


def test_a_fold_sweep_pools_each_cell_once_and_its_table_counts_the_pooled_cells(tmp_path, tiny_tree, shared_dirs):
    """folds x learning rates: one pooled run per learning rate, each over all 18 clips once
    (pooling every fold run of the sweep counted each clip twice); the table and the sweep
    parent count the pooled cells, and the parent's best cell is the table's bold one. A
    cell missing a fold is recorded FAILED, naming it, and not pooled."""
    store = f"sqlite:///{tmp_path / 'folds.db'}"
    args = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri={store}", "trainer.max_epochs=1",
            "protocol=kfold"]
    result = run_script("train.py", "-m", "+sweeps=table3_lr", "optim.lr=0.01,0.001", "protocol.fold=0,1", "protocol.k=2", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mer").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    pooled = sorted((r for r in runs if r.data.tags.get("mer.role") == "pooled_cell"), key=lambda r: r.data.params["lr"])
    assert [r.data.params["lr"] for r in pooled] == ["0.001", "0.01"]
    assert sorted(r.info.run_name for r in pooled) == ["pooled lr=0.001 k=2 epochs=1 protocol=kfold dropout=0.3 seed=1",
                                                       "pooled lr=0.01 k=2 epochs=1 protocol=kfold dropout=0.3 seed=1"]
    all_clips = {frame.parent.name for frame in tiny_tree.glob("HS/*/micro/*/*/*.bmp")}
    for run in pooled:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        with open(client.download_artifacts(run.info.run_id, "report/predictions.csv")) as handle:
            rows = list(csv.DictReader(handle))
        clips = sorted(row["clip_id"] for row in rows)
        assert clips == sorted(all_clips), "every clip of the tree once, in one cell's pooled predictions"
        correct = sum(row["label"] == row["predicted"] for row in rows)
        assert run.data.metrics["pooled/test/acc"] == correct / 18
    assert "pooled/test/acc" not in parent.data.metrics, "the parent pools no figure over cells"
    table = open(client.download_artifacts(parent.info.run_id, "tables/table3_lr.csv")).read().splitlines()
    assert [line.split(",")[3] for line in table[1:]] == ["1", "1"], "one pooled run per cell, not a run per fold"
    best_row = next(line.split(",") for line in table[1:] if line.split(",")[5] == "True")
    best = next(r for r in pooled if r.data.params["lr"] == best_row[0])
    assert parent.data.tags["mer.best_cell_by_test_acc"] == best.info.run_name.removeprefix("pooled ").rsplit(" seed=", 1)[0]
    assert parent.data.metrics["best_cell_by_test_acc/test/acc_mean"] == best.data.metrics["pooled/test/acc"]
    assert parent.data.metrics["cells"] == 2 and parent.data.metrics["runs"] == 2

    # Two folds of three: the cell is incomplete, and so is the sweep.
    result = run_script("train.py", "-m", "protocol.fold=0,1", "protocol.k=3", *args)
    client = MlflowClient(store)
    (partial,) = [r for r in client.search_runs([experiment], "tags.`mer.role` = 'pooled_cell' and params.`protocol.k` = '3'")]
    assert partial.info.status == "FAILED" and "1 of 3 folds" in partial.data.tags["mer.error"]
    assert "fold=2" in partial.data.tags["mer.error"]
    (parent,) = client.search_runs([experiment], f"tags.`mer.role` = 'sweep_parent' and "
                                                 f"attributes.run_id != '{parent.info.run_id}'")
    assert parent.info.status == "FAILED" and partial.info.run_name in parent.data.tags["mer.error"]
    assert parent.data.metrics["cells"] == 0
    assert "pooled/test/acc" not in partial.data.metrics and partial.data.tags.get("mer.complete") != "true"


def test_data_summary_counts_per_class_and_subject(tmp_path, tiny_tree):
    result = run_mer("data", "summary", f"data.root={tiny_tree}", f"paths.root_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "18 clips, 6 subjects, 3 classes." in result.stdout
    assert "| subject | negative | positive | surprise | total |" in result.stdout
    assert "| **all** |" in result.stdout


def test_evaluate_uses_its_own_folders_not_the_training_machines(tmp_path, tiny_tree, shared_dirs):
    """Train in one folder, move everything (as to another machine), evaluate there: the
    checkpoint's absolute paths are gone, the data is found under the new data folder, the
    run's own split comes from its artifacts, and its metrics are reproduced."""
    import shutil

    trained, moved = tmp_path / "trained", tmp_path / "moved"
    shutil.copytree(tiny_tree, trained / "data" / "smic")
    store = f"sqlite:///{tmp_path / 'moved.db'}"
    common = [f"logger.tracking_uri={store}", f"logger.artifact_location={tmp_path}/artifacts"]
    result = run_script("train.py", f"paths.root_dir={trained}", f"data.root={trained}/data/smic", "trainer.max_epochs=1",
                        "data.preprocess_workers=1", "trainer.enable_progress_bar=false", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.move(trained, moved)
    shutil.rmtree(moved / "data" / "splits")  # the split must come from the run itself
    client = MlflowClient(store)
    (run,) = runs_of(client)
    result = run_script("evaluate.py", f"run_id={run.info.run_id}", f"paths.root_dir={moved}", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = dict(line.split() for line in result.stdout.splitlines() if line.startswith("eval/"))
    assert float(printed["eval/acc"]) == run.data.metrics["test/acc"]
    assert not trained.exists(), "nothing written under the training machine's folders"
    assert [p.name for p in (moved / "data" / "splits").iterdir()] == [run.data.params["data.split_file"]]
    # On the run's own clips the figures are not logged again under eval/*; the run says they reproduced.
    again = client.get_run(run.info.run_id).data
    assert "eval/acc" not in again.metrics and again.tags["mer.eval_reproduced"] == "true"


def test_the_experiment_opens_as_model_training_with_its_description_and_mer_ui_prints_its_address(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    done = run_mer("ui", "--tracking-uri", store, "--port", "5123", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    experiment = MlflowClient(store).get_experiment_by_name("mer")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "test/* = held-out clips" in experiment.tags["mlflow.note.content"]
    lines = done.stdout.splitlines()
    base = f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}"
    assert lines[0] == f"runs table: {base}/runs?workflowType=machine_learning&viewStateShareKey=mer-comparison"
    assert lines[1] == f"models:     {base}/models?workflowType=machine_learning"
    assert lines[2] == f"mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5123"
    # the saved view the address opens, in the envelope MLflow's UI reads
    envelope = json.loads(experiment.tags["mlflow.sharedViewState.mer-comparison"])
    assert isinstance(envelope["createdAt"], int) and envelope["name"]
    state = json.loads(envelope["state"])
    assert {"params.`lr`", "params.`dropout`", "metrics.`test/acc`", "attributes.`Models`"} <= set(state["selectedColumns"])
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "mer.sweep_id"}]
