"""Training through the real configs: every pair of options, tracking, failures."""

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from mer.common.config import CONFIG_DIR
from mer.commands.train import train


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def client_for(cfg):
    return MlflowClient(cfg.logger.tracking_uri)


def runs(cfg, query=""):
    client = client_for(cfg)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    return client.search_runs([experiment.experiment_id], query)


GROUPS = ("model", "preprocess", "optim", "scheduler")


def covering_runs() -> list[tuple[str, ...]]:
    """Every model with every preprocess, the optimizer and scheduler chosen so that every
    pair of options of any two groups runs together at least once (pairwise coverage): a
    config mix-up shows between two groups, and this takes 6 runs where the full product
    takes 24."""
    values = {group: options(group) for group in GROUPS}

    def pairs(run: dict) -> set:
        return {((a, run[a]), (b, run[b])) for a, b in itertools.combinations(GROUPS, 2)}

    uncovered = set().union(*(pairs(dict(zip(GROUPS, combo))) for combo in itertools.product(*values.values())))
    runs = []
    for model, preprocess in itertools.product(values["model"], values["preprocess"]):
        candidates = [{"model": model, "preprocess": preprocess, "optim": o, "scheduler": s}
                      for o, s in itertools.product(values["optim"], values["scheduler"])]
        runs.append(max(candidates, key=lambda run: len(pairs(run) & uncovered)))
        uncovered -= pairs(runs[-1])
    while uncovered:  # a pair the greedy choice left out runs on its own
        (a, value_a), (b, value_b) = sorted(uncovered)[0]
        runs.append({**{group: values[group][0] for group in GROUPS}, a: value_a, b: value_b})
        uncovered -= pairs(runs[-1])
    return [tuple(run[group] for group in GROUPS) for run in runs]


# The built-in clips are named after their class (s1_sur_01): the truth, apart from mer's labels.
CLASS_IN_NAME = {"ne": "negative", "po": "positive", "sur": "surprise"}


@pytest.mark.parametrize("model,preprocess,optim,scheduler", covering_runs())
def test_fast_dev_run_of_every_pair_of_options(make_cfg, model, preprocess, optim, scheduler):
    name = f"pair-{model}-{preprocess}-{optim}-{scheduler}"
    cfg = make_cfg(f"model={model}", f"preprocess={preprocess}", f"optim={optim}", f"scheduler={scheduler}", "debug=fast",
                   f"logger.run_name={name}")
    metrics = train(cfg, [f"model={model}", f"preprocess={preprocess}"])
    (run,) = runs(cfg, f"attributes.run_name = '{name}'")
    assert run.info.status == "FINISHED"
    client = client_for(cfg)
    (split,) = Path(client.download_artifacts(run.info.run_id, "data")).glob("holdout-*.json")
    (fold,) = json.loads(split.read_text())["folds"]
    with open(client.download_artifacts(run.info.run_id, "predictions.csv")) as handle:
        rows = list(csv.DictReader(handle))
    # One batch holds all 4 held-out clips: every one of them is scored, once.
    assert sorted(row["clip_id"] for row in rows) == sorted(fold["test"]) and len(fold["test"]) == 4
    assert int(run.data.params["fold.n_test"]) == len(fold["test"])
    assert all(row["label"] == CLASS_IN_NAME[row["clip_id"].split("_")[1]] for row in rows), rows
    right = sum(row["label"] == row["predicted"] for row in rows)
    assert metrics["test/acc"] == pytest.approx(right / len(rows))
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])


@pytest.mark.parametrize("impl", ["stock", "reference"])
def test_every_model_impl_trains_and_says_which_ran(make_cfg, impl):
    # fused is the default, trained by every other test here
    cfg = make_cfg(f"model.impl={impl}", "debug=fast", f"logger.run_name=impl-{impl}")
    metrics = train(cfg, [f"model.impl={impl}"])
    assert 0.0 <= metrics["test/acc"] <= 1.0
    (run,) = runs(cfg, f"attributes.run_name = 'impl-{impl}'")
    assert run.data.tags["mer.impl_ran"] == impl and run.data.tags["mer.kernel_isa"] == "none"
    # fast_dev_run swaps Lightning's logger out; the test figures are in the run all the same
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.info.status == "FINISHED" and run.data.tags["mer.complete"] == "true"


def test_paper_experiment_composes_the_papers_settings(make_cfg):
    cfg = make_cfg("experiment=paper")
    assert (cfg.optim.lr, cfg.model.dropout, cfg.trainer.max_epochs, cfg.data.batch_size) == (0.001, 0.3, 100, 20)
    assert (cfg.preprocess.depth, cfg.preprocess.size, cfg.preprocess.layout) == (10, 128, "regions")
    assert cfg.model._target_.endswith("MER3DCNN")


def test_a_run_is_tracked_with_config_metrics_and_artifacts(make_cfg):
    cfg = make_cfg("trainer.max_epochs=2", "logger.run_name=tracked-run-check")
    train(cfg, ["trainer.max_epochs=2"])
    (run,) = runs(cfg, "attributes.run_name = 'tracked-run-check'")
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001" and run.data.params["seed"] == "1"
    assert run.data.params["fold.n_test"] == "4" and run.data.params["data.clips_failed"] == "0"
    assert run.data.params["fold.selected_epoch"] == "1" and run.data.tags["mer.selection"] == "last_epoch"
    for tag in ("mer.versions", "mlflow.source.git.commit", "mer.cpu"):
        assert tag in run.data.tags
    versions = run.data.tags["mer.versions"]
    assert f"torch {torch.__version__}" in versions and "pytorch-lightning " in versions and versions.endswith("cuda none")
    # The params are the few a researcher compares; the whole config is an artifact.
    assert {"lr", "dropout", "epochs", "batch", "seed", "dataset", "protocol", "impl"} <= set(run.data.params)
    assert not [key for key in run.data.params if key.startswith(("paths.", "callbacks.", "trainer.default_root_dir"))]
    assert "config/config.yaml" in {a.path for a in client_for(cfg).list_artifacts(run.info.run_id, "config")}
    # Per-epoch curves are indexed by epoch, without Lightning's `epoch` metric.
    assert [m.step for m in client_for(cfg).get_metric_history(run.info.run_id, "train/loss")] == [0, 1]
    assert "epoch" not in run.data.metrics
    assert run.data.tags["mer.complete"] == "true"
    assert run.data.tags["mer.impl_ran"] == "fused" and run.data.tags["mer.device"] == "cpu"
    assert run.data.tags["mer.kernel_isa"].startswith(torch.backends.cpu.get_cpu_capability())
    client = client_for(cfg)
    # No inner validation split: the per-epoch curves on the held-out clips say so by name.
    assert len(client.get_metric_history(run.info.run_id, "heldout/acc")) == 2
    assert not any(name.startswith("val/") for name in run.data.metrics)
    assert {"test/acc", "test/uf1", "test/uar", "train/loss"} <= set(run.data.metrics)
    # the last epoch is the reported model, so its monitoring figure is the test figure
    assert run.data.metrics["heldout/acc"] == run.data.metrics["test/acc"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "config", "confusion_matrix.png", "data", "preview"} <= artifacts
    data_files = [a.path for a in client.list_artifacts(run.info.run_id, "data")]
    assert any(p.startswith("data/holdout-") for p in data_files)


def test_a_crashing_run_ends_failed(make_cfg):
    # A keyword the optimizer does not take: it fails inside fit, where no value check looks.
    cfg = make_cfg("+optim.foo=1", "logger.run_name=crash-check", "debug=fast")
    with pytest.raises(TypeError, match="foo"):
        train(cfg, ["+optim.foo=1"])
    (run,) = runs(cfg, "attributes.run_name = 'crash-check'")
    assert run.info.status == "FAILED"
    assert run.data.tags["mer.error"].startswith("TypeError") and "foo" in run.data.tags["mer.error"]
    # The run's description, the top of its page in the UI, holds the error and its traceback.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**FAILED**: TypeError") and "Traceback (most recent call last)" in note


def test_same_seed_same_result(make_cfg):
    a = train(make_cfg("trainer.max_epochs=1", "seed=7"), [])
    b = train(make_cfg("trainer.max_epochs=1", "seed=7"), [])
    assert a["train/loss"] == pytest.approx(b["train/loss"], abs=1e-6)


def test_one_bad_clip_does_not_stop_the_run(make_cfg, tiny_tree, tmp_path):
    import shutil

    from mer.datasets.smic_hs import index_smic_hs

    tree = tmp_path / "tree"
    shutil.copytree(tiny_tree, tree)
    broken = index_smic_hs(tree)[0][0]
    broken.frames[len(broken.frames) // 2].write_bytes(b"")  # inside the apex window
    cfg = make_cfg(f"data.root={tree}", "logger.run_name=bad-clip-check", "debug=fast")
    train(cfg, [])
    (run,) = runs(cfg, "attributes.run_name = 'bad-clip-check'")
    assert run.info.status == "FINISHED"
    assert run.data.params["data.clips_failed"] == "1"
    files = [a.path for a in client_for(cfg).list_artifacts(run.info.run_id, "data")]
    assert "data/failures.csv" in files


def test_loso_runs_every_fold_under_a_parent_with_pooled_metrics(make_cfg):
    cfg = make_cfg("protocol=loso", "trainer.max_epochs=1", "logger.run_name=loso-check")
    metrics = train(cfg, ["protocol=loso"])
    assert {"pooled/test/acc", "pooled/test/uf1", "pooled/test/uar", "fold_mean/test/uf1"} <= set(metrics)
    (parent,) = runs(cfg, "attributes.run_name = 'loso-check'")
    children = runs(cfg, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["mer.fold"] for c in children) == [f"subject=s{i}" for i in range(1, 7)]
    assert parent.info.status == "FINISHED" and {c.info.status for c in children} == {"FINISHED"}
    assert parent.data.metrics["pooled/test/uf1"] == pytest.approx(metrics["pooled/test/uf1"])
    client = client_for(cfg)
    report = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert {"report/folds.md", "report/predictions.csv", "report/confusion_matrix_pooled.png"} <= set(report)
    table = client.download_artifacts(parent.info.run_id, "report/folds.md")
    assert "pooled" in open(table).read() and "reported epoch: last" in open(table).read()


def test_selection_never_looks_at_test_labels(make_cfg):
    """With selection on an inner validation split, the chosen epoch is the same when
    only the test clips' labels change."""
    import dataclasses

    from mer.data.prepare import prepare_data
    from mer.commands.train import fit_fold
    from mer.tracking.run_lifecycle import tracked_run

    cfg = make_cfg("protocol.inner_val_fraction=0.3", "protocol.selection=val", "trainer.max_epochs=4", "test=false")
    data = prepare_data(cfg, progress=False)
    fold = data.selected_folds()[0]
    classes = list(cfg.data.classes)
    flipped = [dataclasses.replace(r, label=classes[(classes.index(r.label) + 1) % 3]) if r.clip_id in fold["test"] else r
               for r in data.records]
    selected = []
    for records in (data.records, flipped):
        with tracked_run(cfg, []) as run:
            metrics = fit_fold(cfg, dataclasses.replace(data, records=records), fold, run).metrics
        selected.append((metrics["selected_epoch"], metrics["val/acc_best"]))
    assert selected[0] == selected[1]


def test_another_metric_logger_by_config_alone(make_cfg, tmp_path):
    cfg = make_cfg("metric_loggers=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                   "+trainer.limit_val_batches=1", "logger.run_name=csv-logger")
    metrics = train(cfg, [])
    (csv_file,) = (tmp_path / "out" / "metrics").glob("version_*/metrics.csv")
    header = csv_file.read_text().splitlines()[0].split(",")
    assert {"train/loss", "heldout/acc", "test/acc"} <= set(header)
    (run,) = runs(cfg, "attributes.run_name = 'csv-logger'")
    # The MLflow run keeps its record and final figures; the per-epoch curves went to the CSV.
    assert run.info.status == "FINISHED" and run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert "train/loss" not in run.data.metrics


def test_each_fold_checkpoints_into_its_own_folder(make_cfg):
    cfg = make_cfg("protocol=kfold", "protocol.k=2", "trainer.max_epochs=1", "callbacks.model_checkpoint.save_last=true")
    assert cfg.callbacks.model_checkpoint.dirpath.endswith("/out/checkpoints")
    train(cfg, [])
    assert sorted(p.name for p in Path(cfg.paths.output_dir, "checkpoints").iterdir()) == ["fold000", "fold001"]
