"""Sweeps through `hydra/launcher=slurm` on a real single-node SLURM (slurmctld, slurmd,
slurmdbd), which scripts/slurm/start-local-cluster.sh installs and starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from hydra import compose, initialize_config_dir
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from conftest import ROOT
from mer.common.config import CONFIG_DIR
from helpers import runs_of

SCRIPTS = ROOT / "scripts" / "slurm"


@pytest.fixture(scope="session")
def slurm_partition():
    """The partition of a running local cluster, started for the session (and stopped after
    it) unless one already ran."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (apt-get, its daemons)")
    running = shutil.which("scontrol") and subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0
    started = subprocess.run(["bash", str(SCRIPTS / "start-local-cluster.sh")], capture_output=True, text=True, timeout=900)
    if started.returncode == 3:  # the packages could not be installed: no apt-get, no mirror
        pytest.skip(started.stderr.strip().splitlines()[-1])
    assert started.returncode == 0, started.stderr[-3000:]
    yield started.stdout.split()[-1]
    if not running:
        subprocess.run(["bash", str(SCRIPTS / "stop-local-cluster.sh")], capture_output=True, timeout=300)


def slurm_sweep(partition: str, overrides: list[str], *extra: str) -> tuple[subprocess.Popen, str]:
    """The running sweep and its jobs' name (its own: squeue and scancel pick them by it)."""
    name = f"mer-test-{uuid.uuid4().hex[:8]}"
    # One CPU per job: the two cells run side by side on a 2-core node.
    args = ["-m", "hydra/launcher=slurm", f"hydra.launcher.partition={partition}", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10", f"hydra.launcher.name={name}", *overrides, "trainer.max_epochs=1",
            "test=false", "model.impl=stock", *extra]
    sweep = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return sweep, name


def outcome(sweep: subprocess.Popen, name: str, timeout: int) -> str:
    """The sweep's stderr once it has ended; a sweep still waiting after `timeout` seconds
    is killed (its jobs too) and fails the test."""
    try:
        return sweep.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        sweep.kill()
        subprocess.run(["scancel", "--name", name], capture_output=True)
        pytest.fail(f"the sweep was still waiting after {timeout} s: {sweep.communicate()[1][-3000:]}")


def parent_and_jobs(tmp_path):
    runs = runs_of(tmp_path / "mlflow.db")
    parents = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    return parents, [r for r in runs if r not in parents]


@pytest.mark.parametrize("overrides, gpus, tasks", [
    ([], None, 1),
    (["trainer=gpu"], 1, 1),
    (["trainer=gpu", "trainer.devices=4"], 4, 4),
    (["trainer=gpu", "trainer.devices=[0,2]"], 2, 2),
    (["trainer=gpu", "trainer.devices=auto", "hydra.launcher.gpus_per_node=8"], 8, 8),
    (["trainer=cpu", "trainer.devices=3"], None, 3),
])
def test_a_job_asks_slurm_for_what_its_trainer_uses(overrides, gpus, tasks, monkeypatch):
    monkeypatch.setenv("MER_SLURM_PARTITION", "gpu-long")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (gpus, tasks, "gpu-long")


def test_a_slurm_sweep_runs_each_cell_as_a_job_under_one_parent(slurm_partition, train_overrides, tmp_path):
    # The jobs' environment lacks the parent's id (as where a site's task prolog resets
    # it): they find their parent in the store.
    sweep, name = slurm_sweep(slurm_partition, train_overrides, "optim.lr=0.01,0.001",
                              'hydra.launcher.setup=["unset MER_PARENT_RUN_ID"]')
    stderr = outcome(sweep, name, 600)
    assert sweep.returncode == 0, stderr[-3000:]
    (parent,), children = parent_and_jobs(tmp_path)
    assert parent.info.status == "FINISHED", parent.data.tags.get("mer.error")
    assert sorted(r.data.params["lr"] for r in children) == ["0.001", "0.01"]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parent.info.run_id}
    assert {(r.info.status, r.data.tags.get("mer.complete")) for r in children} == {("FINISHED", "true")}
    # Each cell ran as a SLURM job (submitit's result file), started with this venv's python.
    (sweep_dir,) = (tmp_path / "outputs" / "hydra" / "multiruns").iterdir()
    assert len(list(sweep_dir.glob(".submitit/*/*_result.pkl"))) == 2
    (script,) = sweep_dir.glob(".submitit/*/*_submission.sh")
    assert f"{sys.executable} -u -m submitit.core._submit" in script.read_text()


# slow: about 25 s, and the default run is near its 20 min line; `make test-all` runs it.
@pytest.mark.slow
def test_a_cancelled_slurm_job_ends_the_sweep_failed_instead_of_waiting_forever(slurm_partition, train_overrides, tmp_path):
    # Without accounting (slurmdbd) submitit cannot tell a cancelled job from a running one
    # and the launching process would wait for its result forever.
    sweep, name = slurm_sweep(slurm_partition, train_overrides, "optim.lr=0.01,0.001")
    # Cancelled once running, as a job killed mid-run: an array cancelled within a second of
    # its submission can reach accounting under the array's id alone, which submitit never
    # maps to its tasks (it would wait for them forever; a race a person cancelling a sweep
    # is unlikely to hit).
    deadline = time.monotonic() + 120
    while not subprocess.run(["squeue", "-h", "-t", "R", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout.split():
        assert time.monotonic() < deadline and sweep.poll() is None, "the sweep's jobs never ran"
        time.sleep(0.5)
    subprocess.run(["scancel", "--name", name], check=True)
    stderr = outcome(sweep, name, 120)
    assert sweep.returncode == 1 and "UncompletedJobError" in stderr and "CANCELLED" in stderr, stderr[-3000:]
    (parent,), children = parent_and_jobs(tmp_path)
    assert parent.info.status == "FAILED"
    assert not [r for r in children if r.info.status == "FINISHED"]


def test_a_run_of_an_ended_slurm_job_on_another_node_is_closed_by_cleanup(slurm_partition, make_cfg):
    """Another node's pid cannot be checked from here, but SLURM knows whether its job runs."""
    from mer.tracking.run_lifecycle import tracked_run
    from mer.tracking.stale_runs import close_stale_runs

    job = subprocess.run(["sbatch", "--parsable", "-p", slurm_partition, "-c", "1", "-o", "/dev/null", "--wrap",
                          "sleep 300"], capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    cfg = make_cfg("logger.run_name=on-a-node")
    with tracked_run(cfg, []) as run:
        pass
    client = MlflowClient(cfg.logger.tracking_uri)
    client.update_run(run.run_id, "RUNNING")
    client.log_batch(run.run_id, tags=[RunTag("mer.host", "node-elsewhere"), RunTag("mer.slurm_job", job)])
    experiment = [client.get_run(run.run_id).info.experiment_id]
    try:
        assert run.run_id not in close_stale_runs(client, experiment), "a run of a live SLURM job was closed"
    finally:
        subprocess.run(["scancel", job], check=True)
    deadline = time.monotonic() + 60
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, f"SLURM job {job} never ended"
        time.sleep(0.5)
    assert run.run_id in close_stale_runs(client, experiment)
    closed = client.get_run(run.run_id)
    assert closed.info.status == "FAILED" and f"SLURM job {job}, pid" in closed.data.tags["mer.error"]
