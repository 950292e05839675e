"""What the test folders share: real train.py processes, free ports, and a store's runs."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from mlflow.tracking import MlflowClient

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_train(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def runs_of(store: Path | str | MlflowClient, query: str = "", experiment: str = "mer") -> list:
    """The runs of `experiment` (none if it does not exist yet); `store` is an sqlite file,
    a tracking URI or a client."""
    client = store if isinstance(store, MlflowClient) else MlflowClient(f"sqlite:///{store}" if isinstance(store, Path) else store)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], query, max_results=1000) if found else []


def wait_until_training(process: subprocess.Popen, training: Callable[[], bool], timeout: float = 240) -> None:
    """Until `training()` says the process is mid-fit; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"train.py ended early ({process.returncode}): {process.stderr.read()[-3000:]}")
        if training():
            return
        time.sleep(0.5)
    process.kill()
    raise AssertionError("train.py never started training")


def run_in_process(main: Callable[[], object], argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """`main` run as its command line would run it, but in this process: `sys.argv`, the
    working folder, the exit status, and everything written to file descriptors 1 and 2
    (Hydra's and Lightning's logs, warnings, worker output) come back as from a
    subprocess, without a second interpreter importing torch, Lightning and MLflow again.
    The process-wide state a command changes (environment, logging, Hydra's singleton) is
    put back afterwards."""
    from hydra.core.global_hydra import GlobalHydra

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryDirectory() as scratch:
        paths = (Path(scratch) / "stdout", Path(scratch) / "stderr")
        # Appending: the descriptor and the Python stream share each file without overwriting.
        streams = [open(path, "a", buffering=1) for path in paths]
        saved_fds = [os.dup(1), os.dup(2)]
        argv_before, stdout_before, stderr_before = sys.argv, sys.stdout, sys.stderr
        folder_before, environ_before = os.getcwd(), dict(os.environ)
        root = logging.getLogger()
        handlers_before, level_before = root.handlers[:], root.level
        code: int | str | None = 0
        try:
            for fd, stream in zip((1, 2), streams):
                os.dup2(stream.fileno(), fd)
            sys.argv, sys.stdout, sys.stderr = [*argv], streams[0], streams[1]
            os.chdir(cwd)
            GlobalHydra.instance().clear()
            try:
                main()
            except SystemExit as stop:
                code = stop.code
        finally:
            for stream in streams:
                stream.flush()
            for fd, old in zip((1, 2), saved_fds):
                os.dup2(old, fd)
                os.close(old)
            sys.argv, sys.stdout, sys.stderr = argv_before, stdout_before, stderr_before
            os.chdir(folder_before)
            os.environ.clear()
            os.environ.update(environ_before)
            root.handlers[:] = handlers_before
            root.setLevel(level_before)
            GlobalHydra.instance().clear()
            for stream in streams:
                stream.close()
        out, err = (path.read_text() for path in paths)
    if isinstance(code, str):  # sys.exit("message"): the interpreter prints it and exits 1
        err, code = err + code + "\n", 1
    return subprocess.CompletedProcess([*argv], code or 0, out, err)
