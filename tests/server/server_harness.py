"""A real MLflow tracking server on a real PostgreSQL, started by the project's own script
(`scripts/mlflow-server.sh`, what `make mlflow-server` runs) in folders of the test's own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import ROOT
from helpers import free_port

SCRIPT = ROOT / "scripts" / "mlflow-server.sh"
PG_BIN = Path("/usr/lib/postgresql/15/bin")




def cannot_run_postgres() -> str | None:
    """Why PostgreSQL cannot be had here, or None."""
    if (PG_BIN / "initdb").is_file():
        return None
    if os.geteuid() != 0:
        return "PostgreSQL 15 is not installed and installing it with apt needs root"
    if not shutil.which("apt-get"):
        return "PostgreSQL 15 is not installed and there is no apt-get to install it"
    return None


class TrackingServer:
    """`scripts/mlflow-server.sh serve` on a free port, in its own process group: stopping
    it kills the whole server (uvicorn and its workers), as a crash or a lost host would."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = folder / "artifacts"
        self.env = {**os.environ, "MER_SERVER_DIR": str(folder), "MER_MLFLOW_PORT": str(self.port),
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.process: subprocess.Popen | None = None
        self.log = folder / "server.log"

    def database(self) -> str:
        """Install (apt, as root), create and start PostgreSQL; its backend URI."""
        done = subprocess.run([str(SCRIPT), "db"], env=self.env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    def start(self, timeout: float = 180) -> None:
        self.process = subprocess.Popen([str(SCRIPT), "serve"], env=self.env, stdout=self.log.open("a"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server stopped: {self.log.read_text()[-3000:]}"
            if self.answers():
                return
            time.sleep(0.5)
        raise AssertionError(f"the server never answered: {self.log.read_text()[-3000:]}")

    def answers(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.uri}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """SIGKILL to every process of the server: nothing of it answers any more."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # uvicorn's workers may linger an instant after their parent
        deadline = time.monotonic() + 10
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        subprocess.run([str(SCRIPT), "stop-db"], env=self.env, capture_output=True, timeout=120)

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)


def server_folder() -> Path:
    """Outside pytest's temporary folder, which is closed to other users: PostgreSQL runs
    as the `postgres` user and must reach its cluster; the path stays short for its socket."""
    folder = Path(tempfile.mkdtemp(prefix="mer-mlflow-"))
    folder.chmod(0o755)
    return folder
