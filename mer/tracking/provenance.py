"""Where a run came from: the git commit, the package versions and the CPU it computed on."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from mer.tracking.run_tags import VERSIONS_TAG

TRACKED_PACKAGES = ("mer", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "mlflow",
                    "numpy", "opencv-python-headless", "dlib-bin", "albumentations", "onnxruntime")


def git_state(cwd: Path) -> dict[str, str]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    return {MLFLOW_GIT_COMMIT: head.stdout.strip(), "mer.git_dirty": str(dirty).lower()}


def package_versions() -> str:
    """`torch 2.13.0+cpu, pytorch-lightning 2.6.6, ...`: one tag, not a dozen crowding the
    run's overview."""
    versions = []
    for package in TRACKED_PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(versions)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_tags() -> dict[str, str]:
    """The machine a run computed on; the device and the model path that ran are tagged
    after training, from what Lightning and the network actually used."""
    # Imported here: a sweep's launching process loads this module (a few seconds sooner
    # to its first job, or to refusing a bad sweep) and never needs torch.
    import torch

    return {"mer.cpu": cpu_model(), VERSIONS_TAG: f"{package_versions()}, cuda {torch.version.cuda or 'none'}"}
