"""A run's status says how it ended, whatever ended it: real signals to real train.py
processes, a process killed outright, a store on a full disk, a diverging network."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_mer
from harness import running_with_training_loss
from helpers import runs_of, start_train, wait_until_training
from mer.common.errors import MerError
from mer.commands.train import train


def stop_with(signum: int, *args: str, cwd) -> tuple[subprocess.Popen, str]:
    process = start_train(*args, cwd=cwd)
    wait_until_training(process, lambda: running_with_training_loss(cwd / "mlflow.db"))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process, stderr


def test_ctrl_c_in_a_sweep_marks_its_runs_killed_and_exits_130(train_overrides, tmp_path):
    process, stderr = stop_with(signal.SIGINT, "-m", *train_overrides, "trainer.max_epochs=300", "seed=1", cwd=tmp_path)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "stopped: interrupted by SIGINT"
    runs = {run.data.tags.get("mer.role", "job"): run for run in runs_of(tmp_path / "mlflow.db")}
    assert set(runs) == {"job", "sweep_parent"}
    for role, run in runs.items():
        # which run, and the process's own account, where one is left open (seen once, on a fresh clone's first test)
        assert run.info.status == "KILLED" and run.data.tags.get("mer.error") == "interrupted by SIGINT", \
            (role, run.info.status, run.data.tags.get("mer.error"), stderr[-3000:])
        assert "mer.complete" not in run.data.tags


def test_sigterm_marks_the_run_killed_and_exits_143(train_overrides, tmp_path):
    process, stderr = stop_with(signal.SIGTERM, *train_overrides, "trainer.max_epochs=300", cwd=tmp_path)
    assert process.returncode == 143, stderr[-2000:]
    (run,) = runs_of(tmp_path / "mlflow.db")
    assert run.info.status == "KILLED" and run.data.tags["mer.error"] == "interrupted by SIGTERM"


def cleanup(store) -> subprocess.CompletedProcess:
    return run_mer("runs", "cleanup", f"--tracking-uri=sqlite:///{store}")


def test_a_run_left_running_by_kill_9_is_closed_by_cleanup_and_a_live_one_is_not(train_overrides, tmp_path):
    store = tmp_path / "mlflow.db"
    process = start_train(*train_overrides, "trainer.max_epochs=300", cwd=tmp_path)
    wait_until_training(process, lambda: running_with_training_loss(store))
    assert cleanup(store).stdout.startswith("closed 0 run(s)"), "a run whose process lives was taken for stale"
    process.kill()
    process.communicate()
    (run,) = runs_of(store)
    assert run.info.status == "RUNNING"
    done = cleanup(store)
    assert done.returncode == 0
    assert done.stdout.startswith(f"closed 1 run(s) left RUNNING by a process that is gone\n  {run.info.run_id}")
    (run,) = runs_of(store)
    assert run.info.status == "FAILED" and run.data.tags["mer.stale"] == "true"
    assert re.search(r"its process \(pid \d+ on .+\) ended without closing the run", run.data.tags["mer.error"])


def test_the_next_run_closes_a_run_whose_process_is_gone(make_cfg):
    """A run owned by a process that has ended (a real one, on this host) is closed FAILED
    as the next run of its store starts."""
    from mlflow.tracking import MlflowClient

    from mer.tracking.run_lifecycle import tracked_run

    cfg = make_cfg("logger.run_name=orphan")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with tracked_run(cfg, []) as orphan:
        pass
    client = MlflowClient(cfg.logger.tracking_uri)
    client.update_run(orphan.run_id, "RUNNING")
    client.set_tag(orphan.run_id, "mer.pid", ended.stdout.strip())
    with tracked_run(make_cfg("logger.run_name=next"), []):
        assert client.get_run(orphan.run_id).info.status == "FAILED"
    assert client.get_run(orphan.run_id).data.tags["mer.stale"] == "true"


def test_a_run_of_another_host_is_left_alone_and_listed_by_cleanup(make_cfg):
    """Another host's process cannot be seen from here: cleanup neither closes its run
    nor stays silent about it (a run of a SLURM job is judged by SLURM: tests/cluster)."""
    from mlflow.tracking import MlflowClient

    from mer.tracking.run_lifecycle import tracked_run

    cfg = make_cfg("logger.run_name=elsewhere")
    with tracked_run(cfg, []) as other:
        pass
    client = MlflowClient(cfg.logger.tracking_uri)
    client.update_run(other.run_id, "RUNNING")
    client.set_tag(other.run_id, "mer.host", "node-elsewhere")
    store = cfg.logger.tracking_uri.removeprefix("sqlite:///")
    done = cleanup(store)
    assert done.returncode == 0 and done.stdout.startswith("closed 0 run(s)")
    assert f"{other.run_id} 'elsewhere' on node-elsewhere" in done.stdout
    assert client.get_run(other.run_id).info.status == "RUNNING"
    client.set_terminated(other.run_id, "FAILED")  # the session's shared store stays tidy


def test_a_store_on_a_full_disk_never_leaves_the_run_running(train_overrides, small_disk, tmp_path):
    """The error that ends the run is the one reported, not the store's; the run is closed,
    by the process itself or, if the store could take nothing, by cleanup afterwards."""
    disk = small_disk("size=2m")
    store = disk / "mlflow.db"
    overrides = [o for o in train_overrides if not o.startswith("logger.tracking_uri")] + [f"logger.tracking_uri=sqlite:///{store}"]
    script = textwrap.dedent(f"""
        import sys
        from mer.common.config import compose_train
        from mer.tracking.run_lifecycle import tracked_run
        cfg = compose_train({overrides!r})
        with tracked_run(cfg, []) as run:
            filler = open({str(disk / 'filler')!r}, "wb")
            try:
                while True:
                    filler.write(b"x" * 65536)
                    filler.flush()
            except OSError:
                pass
            raise RuntimeError("training broke while the disk was full")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "RuntimeError: training broke while the disk was full" in done.stderr
    (disk / "filler").unlink()
    assert cleanup(store).returncode == 0
    (run,) = runs_of(store)
    assert run.info.status == "FAILED"


def test_a_nan_loss_stops_the_run_failed_naming_the_epoch_and_step(make_cfg):
    cfg = make_cfg("optim.lr=1e30", "trainer.max_epochs=3", "logger.run_name=diverges")
    with pytest.raises(MerError, match=r"train/loss is nan at epoch \d+, step \d+: training diverged; lower optim.lr"):
        train(cfg, ["optim.lr=1e30"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = runs_of(client, "attributes.run_name = 'diverges'")
    assert run.info.status == "FAILED" and "training diverged" in run.data.tags["mer.error"]
    assert "test/acc" not in run.data.metrics


def test_a_full_disk_while_checkpointing_leaves_no_truncated_checkpoint(make_cfg, small_disk):
    out = small_disk("size=2m")  # a checkpoint is about 5 MB
    cfg = make_cfg(f"paths.output_dir={out}", "trainer.max_epochs=1", "logger.run_name=disk-full-ckpt")
    with pytest.raises(MerError, match=rf"cannot write {out}/checkpoints/epoch000.ckpt: No space left on device"):
        train(cfg, [])
    assert not list(out.rglob("*.ckpt*")), "a partial checkpoint was left behind"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = runs_of(client, "attributes.run_name = 'disk-full-ckpt'")
    assert run.info.status == "FAILED" and "No space left on device" in run.data.tags["mer.error"]


def test_a_sweep_with_a_refused_job_records_it_and_ends_its_parent_failed(train_overrides, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", *train_overrides, "debug=fast",
                           "model.dropout=0.3,1.5"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]  # the sweep goes on past a refused job
    runs = runs_of(tmp_path / "mlflow.db")
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    (refused,) = [r for r in runs if r.info.run_name.endswith("(refused)")]
    assert refused.info.status == "FAILED" and refused.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert refused.data.tags["mer.error"] == "model.dropout=1.5 must be a number in [0, 1)"
    assert [r.info.status for r in runs if r not in (parent, refused)] == ["FINISHED"]
    assert parent.info.status == "FAILED"
    assert parent.data.tags["mer.error"] == f"1 run(s) of the sweep did not finish: {refused.info.run_name}"
