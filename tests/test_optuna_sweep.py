"""The Optuna alternative to the full grid: same space, a parent run, children it can maximise."""

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mer.common.config import CONFIG_DIR

from conftest import base_overrides, run_script
from test_sweeps import SWEEPS
from helpers import runs_of

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")

NAME = "optuna_full_grid"


def test_optuna_sweep_searches_the_full_grid_space():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweeps={NAME}", "seed=7"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    # the objective is measured on an inner validation split, never on the held-out clips
    assert cfg.optimized_metric == "val/acc_best" and cfg.protocol.selection == "val" and cfg.protocol.inner_val_fraction > 0
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 7
    assert dict(sweeper.params) == {k: f"choice({v})" for k, v in SWEEPS["full_grid"].items()}
    assert cfg.sweep.name == NAME and cfg.sweep.varied == ",".join(SWEEPS["full_grid"]) and not cfg.sweep.force
    assert (cfg.optim.lr, cfg.model.dropout, cfg.trainer.max_epochs, cfg.data.batch_size) == (0.001, 0.3, 100, 20)


def test_tiny_optuna_sweep_parent_and_two_trials(tmp_path, tiny_tree, shared_dirs):
    store = tmp_path / "optuna.db"
    # A command-line choice replaces the file's 80/100/120 epochs, to keep the trials short.
    result = run_script("train.py", "-m", f"+sweeps={NAME}", "hydra.sweeper.n_trials=2", "trainer.max_epochs=choice(1,2)",
                        *base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri=sqlite:///{store}")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    runs = runs_of(client)
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    assert parent.info.status == "FINISHED" and parent.data.params["lr"] == "choice(0.01,0.001,0.0001)"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    for child in children:
        params = child.data.params
        assert params["lr"] in {"0.01", "0.001", "0.0001"} and params["dropout"] in {"0.3", "0.5", "0.7"}
        assert params["epochs"] in {"1", "2"} and child.data.tags["mer.sweep_name"] == NAME
    assert f"tables/{NAME}.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}

    # Optuna was told each trial's best inner-validation accuracy, so its best is the best child by it.
    (results,) = (tmp_path / "outputs").glob("hydra/multiruns/*/optimization_results.yaml")
    assert OmegaConf.load(results).best_value == pytest.approx(max(r.data.metrics["val/acc_best"] for r in children))
    assert all(r.data.tags["mer.selection"] == "best val/acc" for r in children)
    assert parent.data.tags["mer.optimized_metric"] == "val/acc_best" and "mer.heldout_objective" not in parent.data.tags
