"""One MLflow run per training run: readable name, the compared settings as params (the
resolved config as an artifact), provenance tags, and a terminal status that says how it
ended: FINISHED only when complete, KILLED when a signal stopped it, FAILED otherwise."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
import traceback
from contextlib import contextmanager
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path
from typing import Iterator, Sequence

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE
from omegaconf import DictConfig, OmegaConf

from mer.common.files import json_digest
from mer.common.distributed import is_global_rank_zero
from mer.common.errors import MerError
from mer.common.interrupts import Interrupted
from mer.tracking.stale_runs import ERROR_TAG, STALE_TAG, close_stale_runs, owner_is_gone, owner_tags
from mer.tracking.offline import tracking_client
from mer.tracking.store import ensure_logger_store
from mer.tracking.sweep_parent import sweep_parent_id

log = logging.getLogger(__name__)

TRACKED_PACKAGES = ("mer", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "mlflow",
                    "numpy", "opencv-python-headless", "dlib-bin", "albumentations", "onnxruntime")
# Set, with status FINISHED, only once a run's results, predictions and artifacts are all
# logged: sweep resume and the tables count a run only when both say so.
COMPLETE_TAG = "mer.complete"
# A run's settings less its seed and fold: its runs over seeds (and folds) form one cell.
CELL_TAG = "mer.cell_hash"
# A run's settings less its fold: the fold runs whose predictions pool into one figure.
POOL_TAG = "mer.pool_hash"
TEST_CLIPS_TAG = "mer.test_clips"  # digest of the held-out clips a run's test figures are computed on
POOLED_ROLE = "pooled_cell"  # mer.role of the run holding one config's folds pooled
# A sweep run's settings less its sweep's varied keys, the seed and the fold (the tables' grouping).
FIXED_SETTINGS_TAG = "mer.fixed_settings_hash"
SWEEP_VARIED_TAG = "mer.sweep_varied"  # the config keys a sweep's table varies, comma-separated
# Where a run's checkpoints go; `last.ckpt` there is what resuming continues from.
CHECKPOINT_DIR_TAG = "mer.checkpoint_dir"
LAST_CHECKPOINT = "last.ckpt"
RESUMED_TAG = "mer.resumed"  # how many times the run was continued from a checkpoint
COMPLETE_FILTER = f"attributes.status = 'FINISHED' and tags.`{COMPLETE_TAG}` = 'true'"
# Runs this process created and has not closed yet, with their store's client.
_OPEN_RUNS: dict[str, MlflowClient] = {}
VERSIONS_TAG = "mer.versions"
MAX_TAG_LENGTH = 8000  # MLflow's limit on a tag value
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
# The settings a researcher compares across runs, as short stable param names (the MLflow
# UI's columns, "show diff only", parallel coordinates). The whole resolved config is the
# run's `config/config.yaml` artifact; other settings the command line changed are params
# under their dotted keys.
COMPARED_PARAMS = {"lr": "optim.lr", "dropout": "model.dropout", "epochs": "trainer.max_epochs",
                   "batch": "data.batch_size", "seed": "seed", "dataset": "data.name", "protocol": "protocol.name",
                   "preprocess": "preprocess.layout", "depth": "preprocess.depth", "impl": "model.impl",
                   "init": "model.init", "model": "model._target_", "optimizer": "optim._target_",
                   # a spotter's windows (experiment=spotter); absent from other runs
                   "windows.stride": "data.windows.stride", "windows.none_ratio": "data.windows.none_ratio",
                   "windows.seed": "data.windows.seed"}
SHORT_NAMES = {key: name for name, key in COMPARED_PARAMS.items()}
# Every run's name shows the paper's three knobs, after the settings the command line set.
NAMED_SETTINGS = ("optim.lr", "model.dropout", "trainer.max_epochs")
# Left out of run names: where a run reads and writes, and how it looks, not what it
# computes (all overrides are still in the `mer.overrides` tag). Seed is appended last.
UNNAMED_KEYS = ("seed", "test", "sweeps", "ckpt_path", "resume", "hydra.", "paths.", "logger", "trainer.enable_", "data.root", "data.generator",
                "data.preprocess_workers", "data.num_workers", "data.cache_compression")


def short_name(key: str) -> str:
    """`lr` for `optim.lr`; a key without a short name keeps its dotted one."""
    return SHORT_NAMES.get(key, key)


def overridden(cfg: DictConfig, overrides: Sequence[str]) -> list[tuple[str, object, bool]]:
    """(key, value, is a value setting) for each command-line override, in order: the
    resolved value of a setting, the typed choice of a config group (`model=microexpstcnn`)."""
    out = []
    for override in overrides:
        key, _, typed = override.lstrip("+~").partition("=")
        value = OmegaConf.select(cfg, key, default=None)
        setting = value is not None and not OmegaConf.is_config(value)
        out.append((key, value if setting else typed, setting))
    return out


def compared_params(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, object]:
    params = {}
    for name, key in COMPARED_PARAMS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            params[name] = str(value).rsplit(".", 1)[-1] if key.endswith("_target_") else value
    for key, value, setting in overridden(cfg, overrides):
        if setting and is_setting(key) and not key.startswith(UNNAMED_KEYS):
            params.setdefault(short_name(key), value)
    return params


def run_name(cfg: DictConfig, overrides: Sequence[str]) -> str:
    """`dropout=0.5 lr=0.001 epochs=100 seed=1`: what the command line set first (in a sweep,
    the varied keys), then the paper's knobs, one spelling for each key, so the name column
    tells runs apart even where the UI cuts it."""
    parts = {}
    for key, value, _ in overridden(cfg, overrides):
        if not key.startswith(UNNAMED_KEYS):
            parts.setdefault(short_name(key).rsplit(".", 1)[-1], value)
    for key in NAMED_SETTINGS:
        parts.setdefault(short_name(key), OmegaConf.select(cfg, key))
    return " ".join(f"{name}={value}" for name, value in parts.items()) + f" seed={cfg.seed}"


# Where a run reads and writes, how it displays, how many workers it uses, how its cache is
# stored, and what a sweeper reads from it: not what it computes; and `module` /
# `datamodule`, which only repeat other groups' values by interpolation. Dotted keys; `*` is a wildcard.
NOT_SETTINGS = ("paths", "logger", "metric_loggers", "sweep", "hydra", "optimized_metric", "allow_heldout_objective",
                "module", "datamodule", "ckpt_path", "resume",
                "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "data.preprocess_workers", "data.num_workers", "data.cache_compression", "callbacks.*.dirpath")


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

    return json_digest(settings(OmegaConf.to_container(cfg, resolve=True)), 16)


def same_config_runs(cfg: DictConfig, key: str, sweep: str | None, condition: str) -> list:
    """Runs of this config (and sweep, if given) meeting `condition`, newest first."""
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    if experiment is None:
        return []
    query = f"tags.`mer.config_hash` = '{key}'" + (f" and tags.`mer.sweep_name` = '{sweep}'" if sweep else "")
    return client.search_runs([experiment.experiment_id], f"{query} and {condition}", run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=1000, order_by=["attributes.start_time DESC"])


def finished_run(cfg: DictConfig, key: str, sweep: str):
    """A complete run of the same sweep and config, if the store has one."""
    found = same_config_runs(cfg, key, sweep, COMPLETE_FILTER)
    return found[0] if found else None


def resumable_run(cfg: DictConfig, key: str, sweep: str | None) -> tuple[str, Path] | None:
    """The newest run of this config (and sweep) that stopped before it finished and left
    a last checkpoint behind: (its run id, that checkpoint). A run still RUNNING counts
    when its process is gone (kill -9); under DDP, the other ranks also take the one
    their rank zero has just reopened, so that every process continues from it."""
    follower = not is_global_rank_zero()
    for run in same_config_runs(cfg, key, sweep, "attributes.status != 'FINISHED'"):
        if run.info.status == "RUNNING" and not (follower or owner_is_gone(run.data.tags)):
            continue
        folder = run.data.tags.get(CHECKPOINT_DIR_TAG)
        if folder and (Path(folder) / LAST_CHECKPOINT).is_file():
            return run.info.run_id, Path(folder) / LAST_CHECKPOINT
    return None


def stored_run(tracking_uri: str, run_id: str):
    """Run `run_id` of that store, or None when the store has no such run."""
    try:
        return MlflowClient(tracking_uri).get_run(run_id)
    except MlflowException:
        return None


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


DATASET_ATTEMPTS = 3


class TrackedRun:
    """A thin handle on the active run, so training code never imports mlflow itself."""

    def __init__(self, client: MlflowClient, run_id: str, tracking_uri: str):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    def store(self) -> tuple[str, str]:
        """(tracking uri, run id) where the run is written now: a run carried on offline after
        its server was lost lives in the local store (`mer.tracking.offline`)."""
        locate = getattr(self.client, "store_of", None)
        return locate(self.run_id) if locate else (self.tracking_uri, self.run_id)

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0, dataset: tuple[str, str] | None = None,
                    model_id: str | None = None) -> None:
        """`dataset`: the (name, digest) of the logged dataset the figures were computed on;
        `model_id`: the logged model they score (its page lists them, and that dataset)."""
        now = int(time.time() * 1000)
        name, digest = dataset or (None, None)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step, model_id=model_id, dataset_name=name,
                                                           dataset_digest=digest) for k, v in metrics.items()])

    def log_datasets(self, name: str, source: str, parts: Sequence[tuple[str, str, int]]) -> None:
        """The run's data as MLflow dataset inputs (the runs table's Dataset column): one per
        (context, digest of its clip ids, clip count), all named `name`, read from `source`."""
        inputs = [DatasetInput(Dataset(name, digest, "local", json.dumps({"uri": source}),
                                       profile=json.dumps({"clips": count})),
                               [InputTag(MLFLOW_DATASET_CONTEXT, context)]) for context, digest, count in parts]
        for attempt in range(DATASET_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                # Runs started together insert the same dataset at once: the store looks it up,
                # finds none, and all but one insert fail. Asked again, it finds that one.
                if "UNIQUE" not in str(error).upper() or attempt == DATASET_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)


def close_run(client: MlflowClient, run_id: str, status: str, error: str | None = None, details: str = "") -> bool:
    """Status first, details second: when the store cannot take the details (a full disk),
    the run is still not left RUNNING. The error goes in `mer.error` and, whole with
    `details` (a traceback), in the run's description, the first thing its page shows.
    A failure here is logged and returned, never raised over the error that ended the run."""
    _OPEN_RUNS.pop(run_id, None)
    try:
        client.set_terminated(run_id, status)
        if error:
            client.log_batch(run_id, tags=[RunTag(ERROR_TAG, error[:5000]),
                                           RunTag(MLFLOW_RUN_NOTE, description(status, error, details))])
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


def description(status: str, error: str, details: str) -> str:
    text = f"**{status}**: {error}"
    if details:
        text += f"\n\n```\n{details}\n```"
    return text[-MAX_TAG_LENGTH:]


def traceback_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).strip()


def describe(error: BaseException) -> str:
    return str(error) if isinstance(error, Interrupted) else f"{type(error).__name__}: {error}"


@contextmanager
def tracked_run(cfg: DictConfig, overrides: Sequence[str], extra_tags: dict[str, str] | None = None,
                parent: TrackedRun | str | None = None, name_suffix: str = "",
                continue_run: str | None = None) -> Iterator[TrackedRun]:
    """A run that ends FINISHED (tagged complete) when the block ends, KILLED when a signal
    stopped it, or FAILED with the error in `mer.error`; nothing else sets its status.
    With `parent`, it is nested under that run in the MLflow UI (one fold of a protocol);
    with `continue_run`, that stopped run is reopened instead of a new one created. Under
    DDP only global rank zero writes: the other processes get a handle that keeps nothing."""
    if not is_global_rank_zero():
        yield OtherRankRun()
        return
    logger = cfg.logger
    experiment_id = ensure_logger_store(logger)
    # On a tracking server, the run (and its close_run calls) follows it into a local store
    # if the server stops answering.
    client = tracking_client(logger)
    close_stale_runs(client, [experiment_id])
    name = logger.get("run_name") or run_name(cfg, overrides)
    name = f"{name} {name_suffix}".strip()
    tags = {MLFLOW_RUN_NAME: name, "mer.overrides": " ".join(overrides), "seed": str(cfg.seed), **owner_tags(),
            **git_state(Path(__file__).resolve().parent), **environment_tags(), **(extra_tags or {})}
    if parent is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent.run_id if isinstance(parent, TrackedRun) else parent
    if continue_run:
        run = reopen_run(client, continue_run, tags, overrides)
    else:
        run = client.create_run(experiment_id, run_name=name, tags=tags)
    handle = TrackedRun(client, run.info.run_id, logger.tracking_uri)
    hold_open(client, handle.run_id)
    try:
        handle.log_params(compared_params(cfg, overrides))
        yield handle
    except (Interrupted, KeyboardInterrupt) as error:
        close_run(client, handle.run_id, "KILLED", describe(error) if isinstance(error, Interrupted) else "interrupted")
        raise
    except BaseException as error:
        close_run(client, handle.run_id, "FAILED", describe(error), traceback_text(error))
        error.mer_run_id = handle.run_id  # recorded: whoever catches it need not record it again
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


def reopen_run(client: MlflowClient, run_id: str, tags: dict[str, str], overrides: Sequence[str]):
    """Run `run_id`, RUNNING again and owned by this process, for training to continue in:
    what its earlier end recorded (the error, a stale owner) no longer describes it. Its
    name and first command line stay; this one is added."""
    run = client.get_run(run_id)
    for stale in (ERROR_TAG, STALE_TAG, MLFLOW_RUN_NOTE, COMPLETE_TAG):
        if stale in run.data.tags:
            client.delete_tag(run_id, stale)
    resumed = int(run.data.tags.get(RESUMED_TAG, "0")) + 1
    kept = {k: v for k, v in tags.items() if k not in (MLFLOW_RUN_NAME, "mer.overrides")}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**kept, RESUMED_TAG: str(resumed),
                                                              f"mer.overrides_resume{resumed}": " ".join(overrides)}.items()])
    client.update_run(run_id, "RUNNING")
    log.info("continuing run %s (%s) from its last checkpoint", run_id, run.info.run_name)
    return client.get_run(run_id)


class OtherRankRun:
    """The run handle of a DDP process other than rank zero: it writes nothing (rank zero
    writes the one record) and has no run id of its own."""

    run_id = ""
    tracking_uri = ""

    def _discard(self, *args, **kwargs) -> None:
        pass

    log_params = log_metrics = log_datasets = set_tags = log_artifact = log_text = log_figure = _discard


def record_refused(cfg: DictConfig, overrides: Sequence[str], error: str) -> str:
    """A FAILED run, nested under the sweep's parent, for a sweep job refused before its run
    began (a bad value): the sweep's record then shows the cell that never ran, and why.
    Under DDP, rank zero records it once."""
    if not is_global_rank_zero():
        return ""
    logger = cfg.logger
    client = MlflowClient(logger.tracking_uri)
    try:
        name = run_name(cfg, overrides)
    except Exception:  # the refused value may not even resolve
        name = " ".join(overrides)
    tags = {MLFLOW_RUN_NAME: f"{name} (refused)", "mer.overrides": " ".join(overrides), **owner_tags()}
    parent = sweep_parent_id(logger)
    if parent:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    run = client.create_run(ensure_logger_store(logger), run_name=tags[MLFLOW_RUN_NAME], tags=tags)
    close_run(client, run.info.run_id, "FAILED", error)
    return run.info.run_id
