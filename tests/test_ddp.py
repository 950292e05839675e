"""Lightning DDP on CPU processes (gloo): one MLflow run, written by global rank zero, and
held-out figures reduced over the processes exactly as one process computes them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mer.common.config import CONFIG_DIR
from mer.common.distributed import ShardSampler, interleave_shards, is_global_rank_zero
from mer.commands.evaluate import evaluate
from mer.tracking.reproduce import localise
from mer.models.checkpoint_io import load_checkpoint
from mer.data.prepare import prepare_data
from mer.common.errors import MerError
from mer.commands.train import build_datamodule, train

from conftest import run_script
from helpers import runs_of

# 2 clips a batch and 30 % held out: 5 held-out clips, so each process scores several
# batches and the shards are uneven (Lightning's sampler would repeat a clip to even them).
DDP = ["trainer=ddp_cpu", "trainer.max_epochs=2", "data.batch_size=2", "protocol.holdout_fraction=0.3"]


def test_shards_cover_every_clip_once_and_interleave_back_in_order():
    for size, world in [(7, 2), (6, 3), (2, 4)]:
        shards = [list(ShardSampler(size, rank, world)) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(size))
        rows = [torch.tensor([[float(i)] for i in shard]).reshape(-1, 1) for shard in shards]
        assert interleave_shards(rows).flatten().tolist() == list(range(size))


def test_only_global_rank_zero_writes(monkeypatch):
    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_global_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert is_global_rank_zero()
    for name, value in [("LOCAL_RANK", "1"), ("NODE_RANK", "1"), ("RANK", "3")]:
        monkeypatch.setenv(name, value)
        assert not is_global_rank_zero()
        monkeypatch.delenv(name)


def single_process_probabilities(checkpoint: Path, paths_cfg) -> tuple[list[str], torch.Tensor]:
    """The held-out clips and their class probabilities, scored by one process."""
    module, trained, _ = load_checkpoint(checkpoint)
    trained = localise(trained, paths_cfg)
    data = prepare_data(trained)
    datamodule = build_datamodule(trained, data, data.selected_folds()[0])
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return [r.clip_id for r in datamodule.records("test")], torch.cat(module.test_probabilities)


def test_two_ddp_processes_report_what_one_process_computes_and_write_one_run(train_overrides, tmp_path):
    store = tmp_path / "mlflow.db"
    result = run_script("train.py", *train_overrides, *DDP)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("mer").experiment_id
    (run,) = client.search_runs([experiment], run_view_type=ViewType.ALL)  # rank 1 created none
    assert (run.info.status, run.data.tags["mer.complete"]) == ("FINISHED", "true")
    n_test = int(run.data.params["fold.n_test"])
    assert n_test % 2 == 1 and n_test >= 5

    # The run's held-out figures against one process scoring its checkpoint (evaluate.py).
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        evaluation = compose("evaluate", overrides=[f"run_id={run.info.run_id}", f"logger.tracking_uri=sqlite:///{store}",
                                                    *(o for o in train_overrides if o.startswith("paths."))])
    one_process = evaluate(evaluation)
    for name in ("acc", "uf1", "uar", "loss"):
        assert abs(one_process[f"eval/{name}"] - run.data.metrics[f"test/{name}"]) <= 1e-6, name
    assert client.get_run(run.info.run_id).data.tags["mer.eval_reproduced"] == "true"

    # Every held-out clip once, in order, with the probabilities one process gives it.
    rows = list(csv.DictReader(open(client.download_artifacts(run.info.run_id, "predictions.csv", str(tmp_path)))))
    checkpoint = Path(run.data.tags["mer.checkpoint_dir"]) / "last.ckpt"
    clips, probabilities = single_process_probabilities(checkpoint, evaluation)
    assert [r["clip_id"] for r in rows] == clips and len(clips) == n_test
    logged = torch.tensor([[float(r[k]) for k in r if k.startswith("p_")] for r in rows])
    assert torch.allclose(logged, probabilities.float(), atol=1e-6)


def test_ddp_with_lightnings_padding_sampler_is_refused(make_cfg):
    # Refused as the trainer is built, before Lightning starts the other process.
    with pytest.raises(MerError, match="with several processes set trainer.use_distributed_sampler=false"):
        train(make_cfg(*DDP, "trainer.use_distributed_sampler=true"))


def test_a_local_multirun_cell_does_not_start_its_own_ddp_processes(train_overrides, tmp_path):
    result = run_script("train.py", "-m", *train_overrides, *DDP, "seed=1")
    assert "error: a multirun cell cannot start its own DDP processes" in result.stdout + result.stderr, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = runs_of(client)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]  # the cell, and its sweep's parent
