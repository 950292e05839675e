"""The paper's sweeps: configs, parent/child runs, resume, tables rebuilt from the store."""

import re
from pathlib import Path
import shutil
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from mer.common.config import CONFIG_DIR, PROJECT_ROOT
from mer.reporting.tables import build_sweep_report
from mer.tracking.run_tags import FIXED_SETTINGS_TAG

from conftest import base_overrides, known_table3_store, run_mer, run_script
from helpers import runs_of

FIXTURES = Path(__file__).parent / "fixtures"
SWEEPS = {
    "table3_lr": {"optim.lr": "0.01,0.001,0.0001"},
    "table4_dropout": {"model.dropout": "0.3,0.5,0.7"},
    "table5_epochs": {"trainer.max_epochs": "80,100,120"},
    "full_grid": {"optim.lr": "0.01,0.001,0.0001", "model.dropout": "0.3,0.5,0.7", "trainer.max_epochs": "80,100,120"},
    "cross_dataset": {"protocol.train": "casme2,samm,smic"},
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_configs_compose_on_the_paper_defaults(name):
    assert (PROJECT_ROOT / "sweeps" / f"{name}.yaml").is_file()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+sweeps={name}"], return_hydra_config=True)
    assert cfg.sweep.name == name and not cfg.sweep.force
    assert dict(cfg.hydra.sweeper.params) == SWEEPS[name]
    assert (cfg.optim.lr, cfg.model.dropout, cfg.trainer.max_epochs, cfg.data.batch_size) == (0.001, 0.3, 100, 20)


def sweep(tmp_path, tiny_tree, shared_dirs, store, *extra):
    args = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri=sqlite:///{store}",
            "trainer.max_epochs=2", *extra]
    return run_script("train.py", "-m", "+sweeps=table3_lr", "optim.lr=0.01,0.001", *args)


def test_tiny_sweep_parent_children_tables_and_resume(tmp_path, tiny_tree, shared_dirs):
    store = tmp_path / "sweep.db"
    result = sweep(tmp_path, tiny_tree, shared_dirs, store)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("mer").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["lr=0.001 epochs=2 dropout=0.3 seed=1", "lr=0.01 epochs=2 dropout=0.3 seed=1"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.001", "0.01"]
    assert {r.data.tags["mer.sweep_name"] for r in children} == {"table3_lr"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "tables")} >= {"tables/table3_lr.md", "tables/table3_lr_accuracy.png"}
    # The parent says which sweep, what it varied and when, and carries its best cell's figure.
    assert re.fullmatch(r"sweep table3_lr lr=0.01,0.001 \d{4}-\d\d-\d\d \d\d:\d\d", parent.info.run_name)
    assert parent.data.params == {"lr": "0.01,0.001"}
    best = max(children, key=lambda r: r.data.metrics["test/acc"])
    assert parent.data.metrics["cells"] == 2 and parent.data.metrics["runs"] == 2
    assert parent.data.metrics["best_cell_by_test_acc/test/acc_mean"] == best.data.metrics["test/acc"]
    assert parent.data.tags["mer.best_cell_by_test_acc"] == best.info.run_name.rsplit(" seed=", 1)[0]

    # Resume: the same sweep again skips both finished cells.
    assert sweep(tmp_path, tiny_tree, shared_dirs, store).returncode == 0
    assert len([r for r in client.search_runs([experiment]) if r.data.tags.get("mer.role") != "sweep_parent"]) == 2
    assert sweep(tmp_path, tiny_tree, shared_dirs, store, "sweep.force=true").returncode == 0
    assert len([r for r in client.search_runs([experiment]) if r.data.tags.get("mer.role") != "sweep_parent"]) == 4

    # Tables from the store alone: Hydra's output folders are gone.
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
    out = tmp_path / "tables"
    cli = run_mer("tables", "--sweep", "table3_lr", "--out", str(out), "--tracking-uri", f"sqlite:///{store}")
    assert cli.returncode == 0, cli.stderr[-2000:]
    for name in ("table3_lr.md", "table3_lr.csv", "table3_lr_table6.md", "table3_lr_accuracy.png", "table3_lr_curves.png"):
        assert (out / name).stat().st_size > 0
    text = (out / "table3_lr.md").read_text()
    # the forced re-run replaces each cell's first run instead of counting twice
    assert "| 0.01 |" in text and "76.81" in text and "| 1 | 1 |" in text and "| 2 |" not in text, text


def test_table_builder_mean_std_from_known_values(tmp_path):
    client = known_table3_store(tmp_path)
    files = build_sweep_report(client, "mer", "table3_lr", tmp_path / "out")
    rows = files["csv"].read_text().splitlines()
    assert rows[0] == "lr,mean_acc,std_acc,runs,seeds,best,paper_acc,mixed_test_clips"
    assert rows[1] == "0.0001,60.0000,0.0000,1,1,False,73.48,False"
    assert rows[2] == "0.001,90.0000,10.0000,3,1 2 3,True,81.7,False"
    assert rows[3] == "0.01,60.0000,14.1421,2,1 2,False,76.81,False"
    assert "**90.00 ± 10.00**" in files["table"].read_text()
    assert "steps of 10.00 points" in files["table"].read_text()
    table6 = files["table6"].read_text()
    assert "best cell (lr=0.001) on builtin** | 90.00 |" in table6
    assert "best held-out accuracy, picked on the held-out clips as the paper picks its cell" in table6
    assert "Chosen on the inner validation split instead (best mean val/acc_best, 90.00 %), the cell is lr=0.01: 60.00 ± 14.14 %" in table6


def test_latex_table_matches_one_written_by_hand(tmp_path):
    files = build_sweep_report(known_table3_store(tmp_path), "mer", "table3_lr", tmp_path / "out", formats=("latex",))
    assert files["latex"].read_text() == (FIXTURES / "table3_lr.tex").read_text()


def test_two_sweeps_at_once_on_a_fresh_sqlite_store_keep_their_folders_ids_and_runs_apart(tmp_path, tiny_tree,
                                                                                          shared_dirs):
    store = tmp_path / "shared.db"
    commands = []
    for lrs in ("0.01,0.001", "0.0001,0.003"):
        args = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri=sqlite:///{store}",
                "trainer.max_epochs=1", "test=false", f"optim.lr={lrs}"]
        commands.append(subprocess.Popen([sys.executable, str(PROJECT_ROOT / "train.py"), "-m", *args], cwd=tmp_path,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for process in commands:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    runs = runs_of(client)
    children = [r for r in runs if r.data.tags.get("mer.role") != "sweep_parent"]
    assert sorted(r.data.params["lr"] for r in children) == ["0.0001", "0.001", "0.003", "0.01"]
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 6
    # Started in the same second, each sweep still gets a folder and an id of its own.
    folders = sorted((tmp_path / "outputs/hydra/multiruns").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{3}-[0-9a-f]{6}", f.name)
                                     for f in folders)
    for folder in folders:
        assert (folder / "multirun.yaml").is_file() and (folder / "0/.hydra/config.yaml").is_file()
    assert sorted({run.data.tags["mer.sweep_dir"] for run in children}) == [str(f) for f in folders]
    assert len({run.data.tags["mer.sweep_id"] for run in children}) == 2


def test_tables_never_pool_runs_whose_settings_differ_and_title_what_the_runs_had(tmp_path, caplog):
    """Table IV run at 3 epochs, then re-run at 5: the cells hold only the newest settings'
    runs, the others are named as left out, and the title says 5 epochs."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mixed.db'}")
    experiment = client.create_experiment("mer", artifact_location=(tmp_path / "a").as_uri())
    accuracy = {(3, 0.3): 0.2, (3, 0.5): 0.3, (5, 0.3): 0.8, (5, 0.5): 0.6}
    for start, epochs in enumerate((3, 5)):
        for dropout in (0.3, 0.5):
            for seed in (1, 2):
                run = client.create_run(experiment, start_time=1000 * start + seed, tags={
                    "mer.sweep_name": "table4_dropout", "mer.complete": "true", "mer.config_hash": f"{epochs}-{dropout}-{seed}",
                    FIXED_SETTINGS_TAG: f"epochs{epochs}"})
                for key, value in {"model.dropout": dropout, "seed": seed, "sweep.varied": "model.dropout",
                                   "optim.lr": 0.001, "trainer.max_epochs": epochs, "data.name": "builtin"}.items():
                    client.log_param(run.info.run_id, key, value)
                for epoch in range(epochs):
                    client.log_metric(run.info.run_id, "heldout/acc", accuracy[epochs, dropout], step=epoch)
                client.log_metric(run.info.run_id, "test/acc", accuracy[epochs, dropout])
                client.set_terminated(run.info.run_id, "FINISHED")
    files = build_sweep_report(client, "mer", "table4_dropout", tmp_path / "out")
    assert files["csv"].read_text().splitlines()[1:] == ["0.3,80.0000,0.0000,2,1 2,True,81.7,False",
                                                         "0.5,60.0000,0.0000,2,1 2,False,76.17,False"]
    table = files["table"].read_text()
    assert table.startswith("### Table IV: dropout (lr 0.001, 5 epochs)")
    assert "Left out: 4 run(s) with other settings: trainer.max_epochs=3 (here 5)." in table
    assert "left out of the tables, 4 run(s) with other settings: trainer.max_epochs=3 (here 5)" in caplog.text
