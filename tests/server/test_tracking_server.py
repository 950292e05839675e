"""`logger=mlflow_server` against a real tracking server on PostgreSQL (started by
`scripts/mlflow-server.sh`, as `make mlflow-server` does): sweeps log there with the
server's artifact store, a server that is not there stops a run in seconds, and a server
that dies mid-run loses nothing: the run ends in a local store and `mer runs upload`
puts it on the server once it is back."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from conftest import base_overrides, run_script
from helpers import free_port, runs_of, start_train, wait_until_training
from server_harness import TrackingServer, cannot_run_postgres, server_folder

NOT_ANSWERING = re.compile(r"error: MLflow tracking server (http://\S+) is not answering \(Connection refused\); "
                           r"start it \(make mlflow-server\) or check MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session")
def tracking_server():
    reason = cannot_run_postgres()
    if reason:
        pytest.skip(reason)
    server = TrackingServer(server_folder())
    try:
        assert server.database().startswith("postgresql+psycopg2://mlflow@/mlflow?host=")
        server.start()
        yield server
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(server.folder)], check=False)


@pytest.fixture
def server(tracking_server, monkeypatch):
    """The session's server, running (a test before may have killed it), as this test's
    MLFLOW_TRACKING_URI, with an experiment name of the test's own."""
    if not tracking_server.answers():
        tracking_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    tracking_server.experiment = f"mer-{uuid.uuid4().hex[:8]}"
    return tracking_server


def server_overrides(tmp_path, tiny_tree, shared_dirs, experiment: str) -> list[str]:
    """The test suite's paths with `logger=mlflow_server`: nothing says where the store or
    its artifacts are but the server."""
    kept = [o for o in base_overrides(tmp_path, tiny_tree, shared_dirs) if not o.startswith("logger.")]
    return ["logger=mlflow_server", f"logger.experiment_name={experiment}", *kept]


def test_a_sweep_logs_its_runs_and_artifacts_on_the_server(server, tmp_path, tiny_tree, shared_dirs):
    done = run_script("train.py", "-m", *server_overrides(tmp_path, tiny_tree, shared_dirs, server.experiment),
                      "trainer.max_epochs=1", "optim.lr=0.01,0.001", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = server.client()
    experiment = client.get_experiment_by_name(server.experiment)
    # Created by the client, located by the server: its --artifacts-destination, not this disk.
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = runs_of(client, experiment=server.experiment)
    (parent,) = [r for r in runs if r.data.tags.get("mer.role") == "sweep_parent"]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["lr"] for r in children) == ["0.001", "0.01"]
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["mer.complete"] == "true"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert "logger" not in run.info.run_name, "where a run is stored is not a setting: not in its name"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        (checkpoint,) = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        stored = server.artifacts / experiment.experiment_id / run.info.run_id / "artifacts"
        assert (stored / checkpoint).is_file() and (stored / "config" / "config.yaml").is_file()
    assert not list((tmp_path / "outputs").glob("mlartifacts*")) and not list(tmp_path.rglob("mlruns"))


def test_concurrent_jobs_create_one_experiment(server):
    """Jobs of a sweep (other launchers: separate processes) that all find no experiment
    yet each create it; one wins and the others take it."""
    start_at = time.time() + 6  # after every process has imported mlflow (about 3 s)
    script = ("import sys, time; from mer.tracking.store import ensure_store; "
              f"time.sleep(max(0, {start_at} - time.time())); print(ensure_store(sys.argv[1], sys.argv[2]))")
    jobs = [subprocess.Popen([sys.executable, "-c", script, server.uri, server.experiment], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [job.communicate(timeout=120) for job in jobs]
    assert all(job.returncode == 0 for job in jobs), [err[-2000:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
    (experiment,) = [e for e in server.client().search_experiments() if e.name == server.experiment]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_default_logger_on_a_server_leaves_artifacts_to_the_server(server, tmp_path, monkeypatch):
    """`logger.tracking_uri=http://...` with the default logger group, whose
    artifact_location is a folder of this machine: the server's destination still wins."""
    from mer.common.config import compose_train
    from mer.tracking.store import ensure_logger_store

    # set from the config here (logger.http_*): gone again after the test
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                 "MER_MLFLOW_HTTP_FROM_CONFIG"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    cfg = compose_train([f"paths.root_dir={tmp_path}", f"logger.tracking_uri={server.uri}",
                         f"logger.experiment_name={server.experiment}"])
    assert cfg.logger.artifact_location == f"{tmp_path}/outputs/mlartifacts"
    experiment = server.client().get_experiment(ensure_logger_store(cfg.logger))
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_a_server_that_is_not_there_stops_the_run_in_seconds_in_one_line(multirun, tmp_path, tiny_tree, shared_dirs,
                                                                         monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    done = run_script("train.py", *(["-m"] if multirun else []), *server_overrides(tmp_path, tiny_tree, shared_dirs, "mer"),
                      "trainer.max_epochs=1", *(["optim.lr=0.01,0.001"] if multirun else []), cwd=tmp_path, timeout=300)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert NOT_ANSWERING.fullmatch(last) and NOT_ANSWERING.fullmatch(last).group(1) == uri, last
    # Python, Hydra and mlflow imports included; MLflow's own retries took minutes.
    assert elapsed < 30, f"{elapsed:.1f} s"
    print(f"\nstart-up check: train.py exited 1 after {elapsed:.1f} s")


def test_the_start_up_check_itself_takes_under_a_second():
    from mer.common.errors import MerError
    from mer.tracking.store import ensure_store

    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(MerError) as refused:
        ensure_store(uri, "mer")
    elapsed = time.monotonic() - started
    assert NOT_ANSWERING.fullmatch(f"error: {refused.value}")
    assert elapsed < 1, f"{elapsed:.2f} s"
    print(f"\nstart-up check: failed after {elapsed * 1000:.0f} ms")


def test_logger_mlflow_server_without_mlflow_tracking_uri_says_what_to_set(tmp_path, tiny_tree, shared_dirs, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = run_script("train.py", *server_overrides(tmp_path, tiny_tree, shared_dirs, "mer"), "trainer.max_epochs=1",
                      cwd=tmp_path, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: logger=mlflow_server reads the tracking server's address from MLFLOW_TRACKING_URI, which is not set")


def log_time(stderr: str, text: str) -> datetime:
    """When the run logged the first line containing `text` (Hydra's log format)."""
    line = next(line for line in stderr.splitlines() if text in line)
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")


def test_a_server_killed_mid_run_loses_nothing_and_upload_puts_the_run_back(server, tmp_path, tiny_tree, shared_dirs):
    from mlflow.tracking import MlflowClient

    epochs = 30
    process = start_train(*server_overrides(tmp_path, tiny_tree, shared_dirs, server.experiment),
                          f"trainer.max_epochs={epochs}", cwd=tmp_path)
    client = server.client()
    wait_until_training(process, lambda: bool(runs_of(client, "attributes.status = 'RUNNING' and metrics.`train/loss` > -1",
                                                        server.experiment)))
    (on_server,) = runs_of(client, experiment=server.experiment)
    server.kill()
    killed = datetime.now()
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    output = stdout + stderr  # Hydra logs to stdout
    assert "Traceback" not in output, output[-3000:]
    switched = log_time(output, "stopped answering")
    continued = log_time(output, "continues in")
    print(f"\nserver killed -> 'stopped answering' {(switched - killed).total_seconds():.1f} s, "
          f"-> run going on in the local store {(continued - killed).total_seconds():.1f} s")
    assert "retrying, 2 retries left" in output  # urllib3's retries, said in one short line each
    assert output.count("stopped answering") == 1

    # Everything is in the local store: the run, ended FINISHED there, and its checkpoint.
    offline_uri = f"sqlite:///{tmp_path}/outputs/mlflow-offline.db"
    local = MlflowClient(offline_uri)
    (offline,) = runs_of(local, experiment=server.experiment)
    assert offline.info.status == "FINISHED" and offline.data.tags["mer.complete"] == "true"
    assert offline.data.tags["mer.offline_of"] == on_server.info.run_id
    assert offline.data.tags["mer.offline_uri"] == offline_uri
    assert offline.data.tags["mer.offline_server"] == server.uri
    assert len(local.get_metric_history(offline.info.run_id, "train/loss")) == epochs
    checkpoint = f"checkpoints/epoch{epochs - 1:03d}.ckpt"
    assert [a.path for a in local.list_artifacts(offline.info.run_id, "checkpoints")] == [checkpoint]
    assert (tmp_path / "outputs" / "mlflow-offline-artifacts").is_dir()

    server.start()
    assert client.get_run(on_server.info.run_id).info.status == "RUNNING"
    # Meanwhile `mer runs cleanup` on this host closes the server's run as stale (its
    # process is gone); the upload says how it really ended.
    cleanup = subprocess.run([sys.executable, "-m", "mer.commands.cli", "runs", "cleanup", f"--tracking-uri={server.uri}",
                              f"--experiment={server.experiment}"], capture_output=True, text=True, timeout=120)
    assert "closed 1 run(s) left RUNNING" in cleanup.stdout, cleanup.stdout + cleanup.stderr
    upload = subprocess.run([sys.executable, "-m", "mer.commands.cli", "runs", "upload", "--from", offline_uri],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert upload.returncode == 0, upload.stderr[-3000:]
    assert f"{offline.info.run_id} -> {on_server.info.run_id} (continued)" in upload.stdout

    run = client.get_run(on_server.info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mer.complete"] == "true"
    assert "mer.stale" not in run.data.tags and "mer.error" not in run.data.tags
    assert run.data.tags["mer.offline_run"] == offline.info.run_id
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(epochs))
    assert set(offline.data.metrics) <= set(run.data.metrics) and "test/acc" in run.data.metrics
    assert run.data.params == offline.data.params and run.data.params["epochs"] == str(epochs)
    assert checkpoint in [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    stored = server.artifacts / run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    assert (stored / checkpoint).stat().st_size == (Path(offline.info.artifact_uri.removeprefix("file://")) / checkpoint).stat().st_size
    # Once is enough: the local run says where it went.
    assert local.get_run(offline.info.run_id).data.tags["mer.uploaded_to"] == f"{server.uri} {run.info.run_id}"
    again = subprocess.run([sys.executable, "-m", "mer.commands.cli", "runs", "upload", "--from", offline_uri],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "uploaded 0 run(s)" in again.stdout, again.stdout + again.stderr
