"""One MLflow run per training run: readable name, resolved config as params,
provenance tags, and a terminal status that says how it ended: FINISHED only when
complete, KILLED when a signal stopped it, FAILED otherwise."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import time
from contextlib import contextmanager
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path
from typing import Iterator, Sequence

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig, OmegaConf

from mer.errors import MerError
from mer.interrupts import Interrupted
from mer.tracking.stale_runs import ERROR_TAG, close_stale_runs, owner_tags
from mer.tracking.store import ensure_logger_store

log = logging.getLogger(__name__)

TRACKED_PACKAGES = ("mer", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "mlflow",
                    "numpy", "opencv-python-headless", "dlib-bin", "albumentations", "onnxruntime")
# Jobs read their sweep's parent run id from here: it reaches in-process jobs and the worker
# processes of other launchers, which inherit the environment.
PARENT_RUN_ENV = "MER_PARENT_RUN_ID"
# Set, with status FINISHED, only once a run's results, predictions and artifacts are all
# logged: sweep resume and the tables count a run only when both say so.
COMPLETE_TAG = "mer.complete"
# A sweep run's settings less its sweep's varied keys and the seed (the tables' grouping).
FIXED_SETTINGS_TAG = "mer.fixed_settings_hash"
COMPLETE_FILTER = f"attributes.status = 'FINISHED' and tags.`{COMPLETE_TAG}` = 'true'"
# Runs this process created and has not closed yet, with their store's client.
_OPEN_RUNS: dict[str, MlflowClient] = {}
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
# Left out of run names: where a run reads and writes, and how it looks, not what it
# computes (all overrides are still in the `mer.overrides` tag). Seed is appended last.
UNNAMED_KEYS = ("seed", "test", "hydra.", "paths.", "logger.", "trainer.enable_", "data.root", "data.generator",
                "data.preprocess_workers", "data.num_workers")


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def run_name(overrides: Sequence[str], seed: int, model_name: str) -> str:
    """`lr=0.001 dropout=0.3 seed=1` from `optim.lr=0.001 model.dropout=0.3`: the last key
    part is enough to tell the runs of a sweep apart in the MLflow UI."""
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith(UNNAMED_KEYS):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(parts or [model_name]) + f" seed={seed}"


def sweep_cell_name(cfg: DictConfig) -> str:
    """In a sweep every run shows the paper's three knobs, whichever the sweep varies."""
    return f"lr={cfg.optim.lr} dropout={cfg.model.dropout} epochs={cfg.trainer.max_epochs} seed={cfg.seed}"


# Where a run reads and writes, how it displays, how many workers it uses, and what a
# sweeper reads from it: not what it computes. Dotted keys; `*` matches one level.
NOT_SETTINGS = ("paths", "logger", "metric_loggers", "sweep", "hydra", "optimized_metric", "allow_heldout_objective",
                "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "data.preprocess_workers", "data.num_workers", "callbacks.*.dirpath")


def is_setting(key: str, leave_out: Sequence[str] = ()) -> bool:
    """Whether the dotted config key (a logged param's name) says what a run computes."""
    return not any(fnmatch(key, pattern) or fnmatch(key, f"{pattern}.*") for pattern in (*NOT_SETTINGS, *leave_out))


def config_hash(cfg: DictConfig, leave_out: Sequence[str] = ()) -> str:
    """Identifies what a run computes: its resolved settings (`is_setting`) less the dotted
    keys in `leave_out`. Paths inside the launch folder count relative to it, so one config
    launched from two folders (each with its own copy of the built-in data) is one cell; a
    dataset elsewhere counts by its path."""
    root = f"{Path(cfg.paths.root_dir).resolve()}/"

    def settings(value, prefix: str = ""):
        if isinstance(value, dict):
            return {k: settings(v, f"{prefix}{k}.") for k, v in value.items() if is_setting(f"{prefix}{k}", leave_out)}
        if isinstance(value, list):
            return [settings(v, prefix) for v in value]
        if isinstance(value, str) and value.startswith("/") and f"{Path(value).resolve()}/".startswith(root):
            return str(Path(value).resolve().relative_to(root[:-1]))
        return value

    blob = json.dumps(settings(OmegaConf.to_container(cfg, resolve=True)), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def finished_run(cfg: DictConfig, key: str, sweep: str):
    """A complete run of the same sweep and config, if the store has one."""
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id],
                               f"tags.`mer.config_hash` = '{key}' and tags.`mer.sweep_name` = '{sweep}' and "
                               + COMPLETE_FILTER, max_results=1)
    return found[0] if found else None


def git_state(cwd: Path) -> dict[str, str]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    return {MLFLOW_GIT_COMMIT: head.stdout.strip(), "mer.git_dirty": str(dirty).lower()}


def package_versions() -> dict[str, str]:
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[f"versions.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


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

    return {"mer.cpu": cpu_model(), "versions.cuda": torch.version.cuda or "none"}


class TrackedRun:
    """A thin handle on the active run, so training code never imports mlflow itself."""

    def __init__(self, client: MlflowClient, run_id: str, tracking_uri: str):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)


def close_run(client: MlflowClient, run_id: str, status: str, error: str | None = None) -> bool:
    """Status first, details second: when the store cannot take the details (a full disk),
    the run is still not left RUNNING. A failure here is logged and returned, never raised
    over the error that ended the run."""
    _OPEN_RUNS.pop(run_id, None)
    try:
        client.set_terminated(run_id, status)
        if error:
            client.set_tag(run_id, ERROR_TAG, error[:5000])
        return True
    except Exception as failure:  # the store itself is failing: say so, keep the first error
        log.error("could not record run %s as %s (%s); `mer runs cleanup` closes it later", run_id, status, failure)
        return False


def hold_open(client: MlflowClient, run_id: str) -> None:
    """Register a run this process must close if it is stopped (`close_open_runs`)."""
    _OPEN_RUNS[run_id] = client


def close_open_runs(status: str, error: str) -> None:
    """Close every run this process still holds open, innermost first: what a stopped
    process does on its way out, for runs whose own code could not (a sweep's parent)."""
    for run_id, client in reversed(list(_OPEN_RUNS.items())):
        close_run(client, run_id, status, error)


def describe(error: BaseException) -> str:
    return str(error) if isinstance(error, Interrupted) else f"{type(error).__name__}: {error}"


@contextmanager
def tracked_run(cfg: DictConfig, overrides: Sequence[str], extra_tags: dict[str, str] | None = None,
                parent: TrackedRun | str | None = None, name_suffix: str = "") -> Iterator[TrackedRun]:
    """A run that ends FINISHED (tagged complete) when the block ends, KILLED when a signal
    stopped it, or FAILED with the error in `mer.error`; nothing else sets its status.
    With `parent`, it is nested under that run in the MLflow UI (one fold of a protocol)."""
    logger = cfg.logger
    experiment_id = ensure_logger_store(logger)
    client = MlflowClient(logger.tracking_uri)
    close_stale_runs(client, [experiment_id])
    name = logger.get("run_name") or (sweep_cell_name(cfg) if cfg.get("sweep") else
                                      run_name(overrides, cfg.seed, cfg.model._target_.rsplit(".", 1)[-1]))
    name = f"{name} {name_suffix}".strip()
    tags = {MLFLOW_RUN_NAME: name, "mer.overrides": " ".join(overrides), "seed": str(cfg.seed), **owner_tags(),
            **git_state(Path(__file__).resolve().parent), **package_versions(), **environment_tags(), **(extra_tags or {})}
    if parent is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent.run_id if isinstance(parent, TrackedRun) else parent
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    handle = TrackedRun(client, run.info.run_id, logger.tracking_uri)
    hold_open(client, handle.run_id)
    try:
        # `module` and `datamodule` are built from keys logged here already (the whole config is an artifact).
        handle.log_params(flatten({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
                                   if k not in ("module", "datamodule")}))
        yield handle
    except (Interrupted, KeyboardInterrupt) as error:
        close_run(client, handle.run_id, "KILLED", describe(error) if isinstance(error, Interrupted) else "interrupted")
        raise
    except BaseException as error:
        close_run(client, handle.run_id, "FAILED", describe(error))
        raise
    else:
        try:
            client.set_tag(handle.run_id, COMPLETE_TAG, "true")
        except BaseException as error:
            close_run(client, handle.run_id, "FAILED", f"the run could not be marked complete: {describe(error)}")
            raise
        if not close_run(client, handle.run_id, "FINISHED"):
            raise MerError(f"run {handle.run_id} computed to the end but the store could not record it FINISHED "
                           f"({logger.tracking_uri}); see the error above")
