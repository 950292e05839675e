"""Real train.py processes to signal, and the runs of their store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import ROOT


def store_runs(store: Path, query: str = "") -> list:
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("mer")
    return client.search_runs([experiment.experiment_id], query) if experiment else []


def running_with_training_loss(store: Path) -> bool:
    """Read-only: an MLflow client here would race the process's own store migrations."""
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return db.execute("select 1 from metrics m join runs r on m.run_uuid = r.run_uuid "
                              "where m.key = 'train/loss' and r.status = 'RUNNING' limit 1").fetchone() is not None
    except sqlite3.Error:
        return False


def start_train(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_until_training(store: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    """Until a running run of the store has logged a training loss (the process is mid-fit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"train.py ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        if running_with_training_loss(store):
            return
        time.sleep(0.5)
    process.kill()
    raise AssertionError("train.py never started training")
