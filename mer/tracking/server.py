"""A remote MLflow tracking server (an http(s) URI): is it answering, how long its calls
may retry, whether an error means it stopped answering, and which servers this process
has lost (their runs then continue in a local store, `mer.tracking.offline`)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from mer.common.errors import MerError

# MLflow's own knobs for its HTTP calls, by the logger key that sets each. Its defaults
# (7 retries, backoff factor 2, 120 s timeout) make one call to a stopped server retry
# silently for about four minutes.
HTTP_SETTINGS = {"http_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                 "http_backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "http_timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT"}
# Names the variables above that mer set from the config rather than the user: a job
# process inherits them and must still follow its own config, not take them for the user's.
SET_FROM_CONFIG = "MER_MLFLOW_HTTP_FROM_CONFIG"
CHECK_TIMEOUT_S = 5
HINT = "start it (make mlflow-server) or check MLFLOW_TRACKING_URI"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def apply_http_settings(logger) -> None:
    """Bound MLflow's HTTP retries by the logger's `http_*` keys, unless the user set the
    MLflow variable itself."""
    ours = set(filter(None, os.environ.get(SET_FROM_CONFIG, "").split(",")))
    for key, variable in HTTP_SETTINGS.items():
        value = logger.get(key)
        if value is None or (variable in os.environ and variable not in ours):
            continue
        os.environ[variable] = str(int(value))
        ours.add(variable)
    os.environ[SET_FROM_CONFIG] = ",".join(sorted(ours))
    retries = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RetryMessages) for f in retries.filters):
        retries.addFilter(RetryMessages())


class RetryMessages(logging.Filter):
    """urllib3's retry warnings for MLflow calls, in one short line each: they are how a
    user sees that the tracking server stopped answering, and the raw ones are a screenful."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Retrying (") and len(record.args or ()) == 3:
            retry, error, path = record.args
            if "mlflow" in str(path):
                record.msg = "MLflow tracking server not answering (%s) on %s; retrying, %s retries left"
                record.args = (reason(error), str(path).split("?")[0], getattr(retry, "total", "?"))
        return True


def reason(error: BaseException) -> str:
    """The root cause of a failed HTTP call in a few words (`Connection refused`)."""
    text = " ".join(str(e) for e in chain(error))
    found = re.search(r"\[Errno -?\d+\] ([^'\")\[\]]+)", text)
    if found:
        return found.group(1).strip()
    if re.search(r"timed? ?out", text, re.IGNORECASE):
        return "timed out"
    if "too many" in text and "error responses" in text:
        return "it keeps answering with server errors"
    return type(chain(error)[-1]).__name__


def chain(error: BaseException) -> list[BaseException]:
    """The error and those it was raised from or while handling, outermost first."""
    found = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


def unreachable(error: BaseException) -> bool:
    """Whether a failed MLflow call means the server cannot be reached (refused, reset,
    timed out, or only server errors until the retries ran out), rather than that it
    refused the request itself."""
    import requests
    import urllib3

    kinds = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError,
             urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError, ConnectionError, TimeoutError)
    return any(isinstance(e, kinds) for e in chain(error))


def check_server(uri: str) -> None:
    """Fail in seconds, in one line, when nothing answers at `uri`: without this a run
    waits out MLflow's retries (minutes) before it can even start. An answer refusing the
    credentials is named too."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
                                max_retries=0, backoff_factor=0, timeout=CHECK_TIMEOUT_S,
                                raise_on_status=False, params={"max_results": 1})
    except Exception as error:
        raise MerError(f"MLflow tracking server {uri} is not answering ({reason(error)}); {HINT}") from None
    if response.status_code in (401, 403):
        raise MerError(f"MLflow tracking server {uri} refused the credentials (HTTP {response.status_code}); "
                       "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if response.status_code >= 500:
        raise MerError(f"MLflow tracking server {uri} is not answering (HTTP {response.status_code} "
                       f"{response.reason}); {HINT}")


@dataclass(frozen=True)
class LocalStore:
    """Where the runs of a lost server continue: a local store and its artifact folder."""

    uri: str
    artifact_location: str


# Servers this process lost, by URI: once one stopped answering, every later write of
# this process meant for it goes to its local store (one place to upload from).
LOST_SERVERS: dict[str, LocalStore] = {}
