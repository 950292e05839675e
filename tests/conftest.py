"""Shared fixtures: a small built-in dataset (real faces) and the real Hydra configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from mer.commands.cli import main as mer_main
from mer.common.config import CONFIG_DIR, compose_train
from mer.synthetic.generator import STILL, GeneratorSettings
from mer.synthetic.layout_writers import generate_smic_hs
from mer.commands.train import train

ROOT = CONFIG_DIR.parent
TINY = GeneratorSettings(subjects=6, clips_per_subject=3, min_frames=10, max_frames=12, seed=3)
# Three recordings of 90 frames, each holding one micro-expression of 12-16 frames, played
# by the faces of subjects 1-3 of the built-in training data (`tiny_tree`).
# Still material (`mer generate --still`): the expression is the only motion, so spotting's
# mechanics are what the long-video tests check.
RECORDINGS = GeneratorSettings(subjects=3, clips_per_subject=1, min_frames=12, max_frames=16, recording_frames=90,
                               seed=11, **STILL)


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """18 clips from 6 real faces, in the SMIC-HS layout."""
    return generate_smic_hs(tmp_path_factory.mktemp("data") / "smic", TINY, progress=False)


@pytest.fixture(scope="session")
def shared_dirs(tmp_path_factory) -> dict[str, Path]:
    """One cache and one MLflow store for the session: preprocessing and sqlite
    migrations then happen once, not in every test."""
    base = tmp_path_factory.mktemp("shared")
    return {"cache": base / "cache", "store": base / "mlflow.db"}


def base_overrides(tmp_path: Path, tree: Path, shared: dict[str, Path]) -> list[str]:
    return [
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path}/out",
        f"paths.cache_dir={shared['cache']}",
        f"logger.tracking_uri=sqlite:///{shared['store']}",
        f"logger.artifact_location={shared['store'].parent}/artifacts",
        f"data.root={tree}",
        "data.preprocess_workers=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


def known_table3_store(tmp_path) -> MlflowClient:
    """A Table III sweep's runs with figures chosen by hand: lr 0.01 at 50 and 70 %, lr 0.001 at
    80, 90 and 100 %, lr 0.0001 at 60 %; the inner split prefers lr 0.01."""
    store = f"sqlite:///{tmp_path / 'known.db'}"
    client = MlflowClient(store)
    experiment = client.create_experiment("mer", artifact_location=(tmp_path / "a").as_uri())
    known = {0.01: [0.5, 0.7], 0.001: [0.8, 0.9, 1.0], 0.0001: [0.6]}
    for lr, accs in known.items():
        for seed, acc in enumerate(accs, 1):
            run = client.create_run(experiment, tags={"mer.sweep_name": "table3_lr", "mer.selection": "last_epoch",
                                                      "mer.config_hash": f"c{seed}" if lr == 0.0001 else f"{lr}-{seed}",
                                                      "mer.complete": "true"})
            for key, value in {"optim.lr": lr, "seed": seed, "sweep.varied": "optim.lr", "data.name": "builtin",
                               "protocol.name": "holdout", "fold.n_test": 10}.items():
                client.log_param(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, "test/acc", acc)
            client.log_metric(run.info.run_id, "val/acc", acc, step=0)
            # the inner split prefers lr 0.01, the held-out clips lr 0.001
            client.log_metric(run.info.run_id, "val/acc_best", {0.01: 0.9, 0.001: 0.7, 0.0001: 0.5}[lr])
            client.set_terminated(run.info.run_id, "FINISHED")
    # an older run of the 0.0001 cell's config (same config hash, run again later): not counted
    stale = client.create_run(experiment, start_time=1, tags={"mer.sweep_name": "table3_lr", "mer.config_hash": "c1",
                                                              "mer.complete": "true"})
    for key, value in {"optim.lr": 0.0001, "seed": 1, "sweep.varied": "optim.lr"}.items():
        client.log_param(stale.info.run_id, key, value)
    client.log_metric(stale.info.run_id, "test/acc", 0.0)
    client.set_terminated(stale.info.run_id, "FINISHED")
    # FINISHED without the completion marker (Lightning's logger used to end runs before their test): not counted
    incomplete = client.create_run(experiment, tags={"mer.sweep_name": "table3_lr", "mer.config_hash": "c-incomplete"})
    for key, value in {"optim.lr": 0.0001, "seed": 9, "sweep.varied": "optim.lr"}.items():
        client.log_param(incomplete.info.run_id, key, value)
    client.log_metric(incomplete.info.run_id, "test/acc", 0.0)
    client.set_terminated(incomplete.info.run_id, "FINISHED")
    return client


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_tree, shared_dirs) -> Path:
    """A network trained (one epoch) on the built-in data; spotting and the face path's
    checks need no skill from it."""
    tmp = tmp_path_factory.mktemp("trained")
    overrides = [*base_overrides(tmp, tiny_tree, shared_dirs), "trainer.max_epochs=1", "test=false"]
    train(compose_train(overrides), ["trainer.max_epochs=1"])
    (path,) = (tmp / "out" / "checkpoints").glob("epoch*.ckpt")
    return path


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> Path:
    """`RECORDINGS` in the SMIC-E layout, written by `mer generate`."""
    root = tmp_path_factory.mktemp("long") / "smic_e"
    r = RECORDINGS
    assert mer_main(["generate", str(root), "--layout", "smic_e", "--recording-frames", str(r.recording_frames),
                     "--subjects", str(r.subjects), "--clips-per-subject", str(r.clips_per_subject),
                     "--min-frames", str(r.min_frames), "--max-frames", str(r.max_frames), "--seed", str(r.seed),
                     "--still"]) == 0
    return root


@pytest.fixture
def make_cfg(tmp_path, tiny_tree, shared_dirs):
    """Compose the real `conf/` with test paths, plus the given overrides."""

    def _make(*overrides: str, config_name: str = "train"):
        base = base_overrides(tmp_path, tiny_tree, shared_dirs) if config_name == "train" else []
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides=[*base, *overrides])

    return _make


# Choices whose machinery belongs to a process: a command line with one runs in a process of its own.
PROCESS_BOUND = (
    "trainer=ddp_cpu",  # Lightning's DDP launcher starts the other ranks by running the command line again
    "hydra/launcher=parallel",  # joblib keeps its worker processes, with the state the last jobs left, for the next sweep
    "logger=mlflow_server",  # the servers a process has lost, and their HTTP settings, are that process's own
)


def run_script(script: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python train.py ARGS` (or evaluate.py): Hydra, Lightning and MLflow exactly as on the
    command line, in this process (`run_in_process`), or in a real one (limited to `timeout`
    seconds) where an argument is `PROCESS_BOUND`."""
    if not any(arg in PROCESS_BOUND for arg in args):
        from helpers import run_in_process
        from mer.commands.entrypoints import evaluate_main, train_main

        return run_in_process({"train.py": train_main, "evaluate.py": evaluate_main}[script], [str(ROOT / script), *args], cwd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_mer(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`mer ARGS`, in this process (`run_in_process`)."""
    from helpers import run_in_process

    return run_in_process(lambda: sys.exit(mer_main(list(args))), ["mer", *args], cwd)


@pytest.fixture
def kernel_build_fails(monkeypatch, tmp_path):
    """MER3DCNN's CPU kernels fail to build, as without a compiler (none can be taken away
    here, so the build itself fails); the real build is back afterwards."""
    from torch.utils import cpp_extension

    from mer.models import cpu_kernels

    def failing_build(**kwargs):
        raise RuntimeError("ninja: build stopped: subcommand failed.")

    monkeypatch.setattr(cpp_extension, "load", failing_build)
    # An extension folder of its own: a build lock left by another process is not this case.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch_extensions"))
    cpu_kernels.load_kernels.cache_clear()
    yield
    cpu_kernels.load_kernels.cache_clear()


@pytest.fixture
def train_overrides(tmp_path, tiny_tree, shared_dirs):
    """The test suite's paths, with a store of this test's own (its runs are all there is)."""
    return [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(options)`: a real tmpfs mounted for this test (e.g. 'size=16k'), so a
    write past its size fails with ENOSPC exactly as on a full disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill a disk needs root")
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        # lazy: a file still open there (a store connection) must not fail the test's teardown
        subprocess.run(["umount", "-l", str(point)], check=True)
