"""Training through the real configs: every combination, tracking, failures."""

import itertools

import pytest
from mlflow.tracking import MlflowClient

from mer.config import CONFIG_DIR
from mer.training import train


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def client_for(cfg):
    return MlflowClient(cfg.logger.tracking_uri)


def runs(cfg, query=""):
    client = client_for(cfg)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    return client.search_runs([experiment.experiment_id], query)


@pytest.mark.parametrize(
    "model,preprocess,optim,scheduler",
    list(itertools.product(options("model"), options("preprocess"), options("optim"), options("scheduler"))),
)
def test_fast_dev_run_of_every_combination(make_cfg, model, preprocess, optim, scheduler):
    cfg = make_cfg(f"model={model}", f"preprocess={preprocess}", f"optim={optim}", f"scheduler={scheduler}", "debug=fast")
    metrics = train(cfg, [f"model={model}", f"preprocess={preprocess}"])
    assert "test/acc" in metrics and 0.0 <= metrics["test/acc"] <= 1.0


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
    assert run.data.params["optim.lr"] == "0.001" and run.data.params["seed"] == "1"
    assert run.data.params["data.n_val"] == "4" and run.data.params["data.clips_failed"] == "0"
    for tag in ("versions.torch", "versions.pytorch-lightning", "versions.mlflow", "mlflow.source.git.commit"):
        assert tag in run.data.tags
    client = client_for(cfg)
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2
    assert {"test/acc", "test/uf1", "test/uar", "train/loss"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "config", "confusion_matrix.png", "data", "preview"} <= artifacts
    data_files = [a.path for a in client.list_artifacts(run.info.run_id, "data")]
    assert any(p.startswith("data/holdout-") for p in data_files)


def test_a_crashing_run_ends_failed(make_cfg):
    cfg = make_cfg("optim.lr=-1", "logger.run_name=crash-check", "debug=fast")
    with pytest.raises(ValueError, match="learning rate"):
        train(cfg, ["optim.lr=-1"])
    (run,) = runs(cfg, "attributes.run_name = 'crash-check'")
    assert run.info.status == "FAILED"
    assert "learning rate" in run.data.tags["mer.error"]


def test_same_seed_same_result(make_cfg):
    a = train(make_cfg("trainer.max_epochs=1", "seed=7"), [])
    b = train(make_cfg("trainer.max_epochs=1", "seed=7"), [])
    assert a["train/loss"] == pytest.approx(b["train/loss"], abs=1e-6)


def test_one_bad_clip_does_not_stop_the_run(make_cfg, tiny_tree, tmp_path):
    import shutil

    from mer.data.smic import index_smic_hs

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
