"""Numbers a reviewer can trust: nothing chooses a model on the held-out clips unless the
user opts in by name; a run is complete only when everything is logged; runs say what ran."""

import os
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from mer.common.config import PROJECT_ROOT
from mer.common.errors import MerError
from mer.models.module import MicroExpressionModule
from mer.common.selection import objective_value
from mer.commands.train import train

from conftest import base_overrides, run_script
from helpers import runs_of

TINY_SWEEP = ("+sweeps=table3_lr", "optim.lr=0.001", "trainer.max_epochs=1")


def refused(result, *needles):
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-3000:]


def test_optuna_sweep_on_a_heldout_objective_is_refused_before_any_job(tmp_path, tiny_tree, shared_dirs):
    store = f"sqlite:///{tmp_path / 'refused.db'}"
    base = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri={store}"]
    result = run_script("train.py", "-m", "+sweeps=optuna_full_grid", "optimized_metric=test/acc", *base, timeout=300)
    refused(result, "optimized_metric=test/acc is measured on the held-out clips", "allow_heldout_objective=true",
            "protocol.selection=val protocol.inner_val_fraction=0.15")
    # an inner-validation objective without an inner split is refused too, with the fix
    result = run_script("train.py", "-m", "+sweeps=optuna_full_grid", "protocol.inner_val_fraction=0",
                        "protocol.selection=last", *base, timeout=300)
    refused(result, "optimized_metric=val/acc_best needs an inner validation split", "protocol.inner_val_fraction=0.15")
    assert runs_of(store) == [], "nothing ran, not even a parent run"


def test_a_heldout_objective_runs_when_opted_in_by_name_and_is_tagged(tmp_path, tiny_tree, shared_dirs):
    store = f"sqlite:///{tmp_path / 'optin.db'}"
    result = run_script("train.py", "-m", "+sweeps=optuna_full_grid", "optimized_metric=test/acc",
                        "allow_heldout_objective=true", "hydra.sweeper.n_trials=1", "trainer.max_epochs=choice(1)",
                        *base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri={store}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(store)
    assert len(runs) == 2 and {r.data.tags.get("mer.heldout_objective") for r in runs} == {"true"}


@pytest.mark.parametrize("callback", [
    ("callbacks.model_checkpoint.monitor=heldout/acc",),
    ("callbacks.model_checkpoint.monitor=test/acc", "protocol.inner_val_fraction=0.3"),
    ("+callbacks.early_stop._target_=pytorch_lightning.callbacks.EarlyStopping", "+callbacks.early_stop.monitor=heldout/loss"),
])
def test_a_monitor_on_heldout_clips_is_refused(make_cfg, callback):
    cfg = make_cfg(*callback, "debug=fast", "logger.run_name=refused-monitor")
    with pytest.raises(MerError, match="watches the held-out clips"):
        train(cfg, [])


def test_a_val_monitor_without_an_inner_split_is_refused(make_cfg):
    with pytest.raises(MerError, match=r"callbacks.model_checkpoint.monitor=val/loss needs an inner validation split"):
        train(make_cfg("callbacks.model_checkpoint.monitor=val/loss", "debug=fast"), [])


def test_the_configured_checkpoint_monitor_is_used(make_cfg):
    cfg = make_cfg("protocol.inner_val_fraction=0.3", "callbacks.model_checkpoint.monitor=val/loss",
                   "callbacks.model_checkpoint.mode=min", "trainer.max_epochs=3", "logger.run_name=val-loss-monitor")
    metrics = train(cfg, [])
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = runs_of(client, "attributes.run_name = 'val-loss-monitor'")
    assert run.data.tags["mer.selection"] == "best val/loss"
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)]
    assert len(losses) == 3 and int(run.data.params["fold.selected_epoch"]) == losses.index(min(losses))
    assert {"val/acc", "val/acc_best", "heldout/acc", "test/acc"} <= set(metrics)


def test_train_returns_the_pooled_objective_over_loso_folds(make_cfg):
    cfg = make_cfg("protocol=loso", "trainer.max_epochs=1", "optimized_metric=test/uf1", "protocol.inner_val_fraction=0.25")
    metrics = train(cfg, [])
    assert objective_value(metrics, "test/uf1") == metrics["pooled/test/uf1"]
    # a per-fold best has no pooled form: the mean over folds
    assert objective_value(metrics, "val/acc_best") == metrics["fold_mean/val/acc_best"]
    assert objective_value(metrics, "val/nothing") is None


def test_a_failure_during_test_leaves_the_run_failed_and_resume_runs_it_again(make_cfg, monkeypatch):
    cfg = make_cfg(*TINY_SWEEP, "seed=11")

    def dies(*args, **kwargs):
        raise RuntimeError("simulated failure during test")

    with monkeypatch.context() as patch:
        patch.setattr(MicroExpressionModule, "test_step", dies)
        with pytest.raises(RuntimeError, match="simulated failure"):
            train(cfg, [])
    store = cfg.logger.tracking_uri
    query = "tags.`mer.sweep_name` = 'table3_lr' and params.seed = '11'"
    (failed,) = runs_of(store, query)
    assert failed.info.status == "FAILED" and "mer.complete" not in failed.data.tags
    assert "simulated failure during test" in failed.data.tags["mer.error"]
    # Resume: the failed run is not a result, so the cell runs again, continuing that run
    # from its last checkpoint (its training was done: only the test runs again).
    train(cfg, [])
    (resumed,) = runs_of(store, query)
    assert (resumed.info.run_id, resumed.info.status, resumed.data.tags.get("mer.complete")) == (
        failed.info.run_id, "FINISHED", "true")
    assert resumed.data.tags["mer.resumed"] == "1" and "mer.error" not in resumed.data.tags
    train(cfg, [])  # and now it is skipped
    assert len(runs_of(store, query)) == 1


def test_a_process_killed_during_test_is_not_finished_and_resume_runs_it_again(tmp_path, tiny_tree, shared_dirs):
    store = f"sqlite:///{tmp_path / 'killed.db'}"
    args = [*TINY_SWEEP, *base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri={store}"]
    # kill -9 in the middle of the test loop: no handler of ours runs
    killer = ("import os, runpy, sys; import mer.models.module as m; "
              "m.MicroExpressionModule.test_step = lambda *a, **k: os._exit(9); "
              f"sys.argv = ['train.py', *sys.argv[1:]]; runpy.run_path({str(PROJECT_ROOT / 'train.py')!r}, run_name='__main__')")
    killed = subprocess.run([sys.executable, "-c", killer, *args], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert killed.returncode == 9, killed.stderr[-3000:]
    (run,) = runs_of(store)
    assert run.info.status == "RUNNING" and "mer.complete" not in run.data.tags and "test/acc" not in run.data.metrics
    resumed = run_script("train.py", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished = runs_of(store, "attributes.status = 'FINISHED'")
    assert len(finished) == 1 and "test/acc" in finished[0].data.metrics
    assert finished[0].data.tags["mer.complete"] == "true"


def test_a_failed_kernel_build_is_recorded_as_the_stock_path(make_cfg, kernel_build_fails):
    cfg = make_cfg("model.impl=fused", "debug=fast", "logger.run_name=kernel-build-failed")
    train(cfg, [])
    (run,) = runs_of(cfg.logger.tracking_uri, "attributes.run_name = 'kernel-build-failed'")
    assert run.data.params["impl"] == "fused"
    assert run.data.tags["mer.impl_ran"] == "stock" and run.data.tags["mer.kernel_isa"] == "none"
    assert f"torch {torch.__version__}" in run.data.tags["mer.versions"]
