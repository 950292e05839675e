"""Runs that outlive their tracking server. A run on a server writes through a
`FallbackClient`, which keeps what it wrote (params, tags, metrics, texts, figures, the
paths of its artifacts: small); when the server stops answering, the run is re-created
in a local sqlite store (`logger.offline_uri`), what it had written is replayed there,
and the run goes on, to its final status, in that store. `upload_runs` (`mer runs
upload`) later continues the server's run with everything the local one holds."""

from __future__ import annotations

import functools
import logging
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from mer.common.errors import MerError
from mer.tracking.server import HINT, LOST_SERVERS, LocalStore, check_server, is_server, reason, unreachable
from mer.tracking.stale_runs import ERROR_TAG, STALE_TAG, close_stale_runs
from mer.tracking.store import ensure_store

log = logging.getLogger(__name__)

OFFLINE_OF_TAG = "mer.offline_of"  # on a local run: the server run it continues
OFFLINE_URI_TAG = "mer.offline_uri"  # the local store that holds (or held) the run's end
OFFLINE_SERVER_TAG = "mer.offline_server"  # the server the run belongs on
OFFLINE_RUN_TAG = "mer.offline_run"  # on the server, after upload: the local run it came from
UPLOADED_TAG = "mer.uploaded_to"  # on the local run, after upload: `<server uri> <run id>`
# Calls whose first argument is a run id, and those of them that write.
WRITES = {"log_batch", "log_param", "log_metric", "set_tag", "delete_tag", "log_artifact", "log_artifacts", "log_text",
          "log_dict", "log_figure", "log_bytes", "log_inputs", "set_terminated", "update_run"}
RUN_CALLS = WRITES | {"get_run", "list_artifacts", "download_artifacts", "get_metric_history"}
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
MAX_PARAMS_PER_BATCH = 100  # and for params or tags; the run handle batches by it too


def tracking_client(logger) -> MlflowClient:
    """The client a tracked run writes through: on a tracking server with
    `logger.offline_uri` set, one that carries the run on locally if the server stops
    answering; a plain client otherwise."""
    uri = logger.tracking_uri
    if not is_server(uri) or not logger.get("offline_uri"):
        return MlflowClient(uri)
    local = LocalStore(logger.offline_uri, logger.get("offline_artifact_location") or "")
    return FallbackClient(uri, local, logger.experiment_name)


@dataclass
class _Call:
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


def invoke(client: MlflowClient, call: _Call, run_id: str | None = None) -> Any:
    args = (run_id, *call.args[1:]) if run_id is not None else call.args
    if call.name == "log_bytes":  # a rendered figure: kept as bytes, since the figure itself is closed after logging
        _, data, artifact_file = args
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(artifact_file).name
            path.write_bytes(data)
            return client.log_artifact(args[0], str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)
    return getattr(client, call.name)(*args, **call.kwargs)


def render(figure, artifact_file: str) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(artifact_file).suffix.lstrip(".") or "png")
    return buffer.getvalue()


# Every FallbackClient of this process, oldest first: when the server is lost, their open
# runs are all re-created locally in that order, so a parent exists before its children.
_CLIENTS: list[weakref.ref] = []
# Server run id -> its local continuation, for every run this process re-created.
LOCAL_IDS: dict[str, str] = {}


class FallbackClient:
    """An MlflowClient for a tracking server (any of its methods) that follows its runs
    into a local store once the server stops answering. It keeps, for each run it created
    or read, the run as the server returned it and every write since; run ids it hands
    out stay the server's, translated to the local run's on the way."""

    def __init__(self, server_uri: str, local: LocalStore, experiment_name: str):
        self.tracking_uri = server_uri
        self._server = MlflowClient(server_uri)
        self._local = local
        self._experiment_name = experiment_name
        self._runs: dict[str, Run] = {}  # open runs: what re-creating each locally needs
        self._journal: dict[str, list[_Call]] = {}
        _CLIENTS.append(weakref.ref(self))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if not callable(getattr(MlflowClient, name, None)):
            return getattr(self._server, name)

        def call(*args, **kwargs):
            return self._call(name, args, kwargs)

        return call

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name == "log_figure":
            figure, artifact_file = args[1], args[2] if len(args) > 2 else kwargs["artifact_file"]
            name, args, kwargs = "log_bytes", (args[0], render(figure, artifact_file), artifact_file), {}
        call = _Call(name, args, kwargs)
        if self.tracking_uri in LOST_SERVERS:
            return self._call_local(call)
        run_id = args[0] if name in RUN_CALLS and args else None
        if name in WRITES and run_id in self._runs:
            self._journal[run_id].append(call)
        try:
            result = invoke(self._server, call)
        except Exception as error:
            if not unreachable(error):
                raise
            if run_id not in self._runs:  # no run of ours to carry on: say so in one line
                raise MerError(f"MLflow tracking server {self.tracking_uri} is not answering ({reason(error)}); {HINT}") from None
            lose_server(self.tracking_uri, self._local, error)
            # A write was kept and replayed with the others; a read is asked of the local run.
            return None if name in WRITES else self._call_local(call)
        if name in ("create_run", "get_run") and result.info.status == "RUNNING":
            # What the server returns is the run so far: the starting point of a re-creation.
            self._runs[result.info.run_id] = result
            self._journal[result.info.run_id] = []
        elif name == "set_terminated":
            # Closed on the server: nothing of it is left to carry on locally.
            self._runs.pop(run_id, None)
            self._journal.pop(run_id, None)
        return result

    def _call_local(self, call: _Call) -> Any:
        local = _local_client(LOST_SERVERS[self.tracking_uri].uri)
        if call.name == "create_run":  # a run begun after the server was lost (the next fold)
            tags = dict(call.kwargs.get("tags") or {})
            if tags.get(MLFLOW_PARENT_RUN_ID) in LOCAL_IDS:
                tags[MLFLOW_PARENT_RUN_ID] = LOCAL_IDS[tags[MLFLOW_PARENT_RUN_ID]]
            tags.update(self._offline_tags())
            return invoke(local, _Call("create_run", call.args, {**call.kwargs, "tags": tags}))
        if call.name in RUN_CALLS and call.args:
            return invoke(local, call, self._local_id(call.args[0]))
        return invoke(local, call)

    def store_of(self, run_id: str) -> tuple[str, str]:
        """(tracking uri, run id) where the run is written now: the server's, or once the
        server is lost the local store's continuation (for writers that bypass this client,
        such as MLflow's model logging)."""
        if self.tracking_uri not in LOST_SERVERS:
            return self.tracking_uri, run_id
        return LOST_SERVERS[self.tracking_uri].uri, self._local_id(run_id)

    def _offline_tags(self) -> dict[str, str]:
        return {OFFLINE_URI_TAG: LOST_SERVERS[self.tracking_uri].uri, OFFLINE_SERVER_TAG: self.tracking_uri}

    def _local_id(self, server_id: str) -> str:
        """The local run continuing `server_id`, created and replayed on first use; an id
        this client never saw on the server is taken as the local store's own."""
        if server_id in LOCAL_IDS or server_id not in self._runs:
            return LOCAL_IDS.get(server_id, server_id)
        store = LOST_SERVERS[self.tracking_uri]
        client = _local_client(store.uri)
        run = self._runs.pop(server_id)
        experiment_id = ensure_store(store.uri, self._experiment_name, store.artifact_location or None)
        tags = {**run.data.tags, **self._offline_tags(), OFFLINE_OF_TAG: server_id}
        if tags.get(MLFLOW_PARENT_RUN_ID) in LOCAL_IDS:
            tags[MLFLOW_PARENT_RUN_ID] = LOCAL_IDS[tags[MLFLOW_PARENT_RUN_ID]]
        created = client.create_run(experiment_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
        local_id = LOCAL_IDS[server_id] = created.info.run_id
        params = [Param(k, v) for k, v in run.data.params.items()]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(local_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
        for call in self._journal.pop(server_id, []):
            try:
                invoke(client, call, local_id)
            except Exception as error:  # an artifact deleted since: the rest of the run still counts
                log.warning("run %s: could not carry %s%s into the local store: %s", server_id, call.name,
                            f" {call.args[1]}" if call.name == "log_artifact" else "", error)
        log.info("run %s continues in %s as run %s", server_id, store.uri, local_id)
        return local_id

    def _carry_open_runs(self) -> None:
        for server_id in list(self._runs):
            self._local_id(server_id)


@functools.lru_cache(maxsize=None)
def _local_client(uri: str) -> MlflowClient:
    return MlflowClient(uri)


def lose_server(server_uri: str, local: LocalStore, error: BaseException) -> None:
    """From now on this process writes what it meant for `server_uri` into `local`; the
    open runs of every FallbackClient continue there, oldest client first."""
    if server_uri in LOST_SERVERS:
        return
    LOST_SERVERS[server_uri] = local
    log.warning("MLflow tracking server %s stopped answering (%s): the run goes on in the local store %s; "
                "once the server is back, `mer runs upload --from %s` puts it there", server_uri, reason(error),
                local.uri, local.uri)
    for ref in list(_CLIENTS):
        client = ref()
        if client is None:
            _CLIENTS.remove(ref)
        elif client.tracking_uri == server_uri:
            client._carry_open_runs()


@dataclass
class Uploaded:
    local_id: str
    server_id: str
    continued: bool  # into the run the server already had (else a new run)


def upload_runs(source_uri: str, target_uri: str | None = None, run_ids: Sequence[str] = (),
                experiment_name: str | None = None) -> list[Uploaded]:
    """Put runs of the local store `source_uri` on their tracking server (`target_uri`,
    else the server each run was recorded against): by default every run (of
    `experiment_name`, else of every experiment) that went on locally when its server
    stopped answering and is not uploaded yet. A run continues the server's run it came
    from (its metrics, params, tags, artifacts and final status are added there), or,
    where the server has no such run, becomes a new one in the same experiment there."""
    if source_uri.startswith("sqlite:///") and not Path(source_uri.removeprefix("sqlite:///")).is_file():
        raise MerError(f"no local store at {source_uri}")  # MLflow would create an empty one
    local = MlflowClient(source_uri)
    if run_ids:
        runs = [_local_run(local, source_uri, run_id) for run_id in run_ids]
    else:
        if experiment_name:
            experiment = local.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise MerError(f"no experiment {experiment_name!r} in {source_uri}")
            experiments = [experiment.experiment_id]
        else:
            experiments = [e.experiment_id for e in local.search_experiments()]
        # A run whose process died offline is closed first, as on any store (FAILED, stale).
        close_stale_runs(local, experiments)
        runs = [r for r in local.search_runs(experiments, f"tags.`{OFFLINE_SERVER_TAG}` LIKE '%'", max_results=10_000)
                if UPLOADED_TAG not in r.data.tags]
    done: list[Uploaded] = []
    server_ids: dict[str, str] = {}  # local run id -> its run on the server, for children's parent tags
    for run in sorted(runs, key=lambda r: r.info.start_time):
        if run.info.status == "RUNNING":
            log.warning("run %s is still running; upload it once it has ended", run.info.run_id)
            continue
        if UPLOADED_TAG in run.data.tags:
            log.warning("run %s is already uploaded (%s)", run.info.run_id, run.data.tags[UPLOADED_TAG])
            continue
        target = target_uri or run.data.tags.get(OFFLINE_SERVER_TAG)
        if not target:
            raise MerError(f"run {run.info.run_id} does not say which server it belongs on: give --tracking-uri")
        uploaded = upload_run(local, run, target, server_ids)
        server_ids[run.info.run_id] = uploaded.server_id
        local.set_tag(run.info.run_id, UPLOADED_TAG, f"{target} {uploaded.server_id}")
        done.append(uploaded)
    return done


def _local_run(local: MlflowClient, source_uri: str, run_id: str) -> Run:
    try:
        return local.get_run(run_id)
    except MlflowException:
        raise MerError(f"no run {run_id} in {source_uri}") from None


def upload_run(local: MlflowClient, run: Run, target_uri: str, server_ids: dict[str, str]) -> Uploaded:
    if is_server(target_uri):
        check_server(target_uri)
    server = MlflowClient(target_uri)
    run_id = run.info.run_id
    tags = dict(run.data.tags)
    parent = tags.get(MLFLOW_PARENT_RUN_ID)
    if parent in server_ids:
        tags[MLFLOW_PARENT_RUN_ID] = server_ids[parent]
    target = _existing(server, tags.get(OFFLINE_OF_TAG))
    if target is None:
        experiment_id = ensure_store(target_uri, local.get_experiment(run.info.experiment_id).name)
        target = server.create_run(experiment_id, start_time=run.info.start_time, run_name=run.info.run_name).info.run_id
        continued = False
    else:
        continued = True
    tags = {k: v for k, v in tags.items() if k not in (OFFLINE_OF_TAG, OFFLINE_SERVER_TAG)}
    tags[OFFLINE_RUN_TAG] = run_id
    # What the server recorded about how the run ended no longer holds (a stale close by
    # `mer runs cleanup` while it ran offline): the local run says how it ended.
    for key in (ERROR_TAG, STALE_TAG, MLFLOW_RUN_NOTE, "mer.complete"):  # runs.COMPLETE_TAG (runs imports this module)
        if key not in tags and key in server.get_run(target).data.tags:
            server.delete_tag(target, key)
    params = [Param(k, v) for k, v in run.data.params.items()]
    for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
        server.log_batch(target, params=params[start : start + MAX_PARAMS_PER_BATCH])
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for start in range(0, len(tag_list), MAX_PARAMS_PER_BATCH):
        server.log_batch(target, tags=tag_list[start : start + MAX_PARAMS_PER_BATCH])
    # Whole histories: the points the server already has (written before it was lost) are
    # the same rows, which the store keeps once.
    metrics = [Metric(key, m.value, m.timestamp, m.step) for key in run.data.metrics
               for m in local.get_metric_history(run_id, key)]
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        server.log_batch(target, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    if local.list_artifacts(run_id):
        with tempfile.TemporaryDirectory() as folder:
            server.log_artifacts(target, _artifact_folder(local, run, folder))
    server.set_terminated(target, run.info.status, end_time=run.info.end_time)
    log.info("uploaded run %s of %s to %s as run %s%s", run_id, local.tracking_uri, target_uri, target,
             " (continuing it)" if continued else "")
    return Uploaded(run_id, target, continued)


def _existing(server: MlflowClient, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        return server.get_run(run_id).info.run_id
    except MlflowException as error:
        if unreachable(error):
            raise
        return None


def _artifact_folder(local: MlflowClient, run: Run, scratch: str) -> str:
    """The run's artifact folder: read in place when the local store keeps it on this
    disk (a checkpoint is not copied), else downloaded into `scratch`."""
    parsed = urlparse(run.info.artifact_uri)
    if parsed.scheme in ("", "file") and Path(unquote(parsed.path)).is_dir():
        return unquote(parsed.path)
    return local.download_artifacts(run.info.run_id, "", scratch)
