"""Hydra callback: prepare the MLflow store in the launching process."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mer.tracking.store import ensure_store


class PrepareTrackingStore(Callback):
    def _prepare(self, config: DictConfig) -> None:
        logger = config.logger
        ensure_store(logger.tracking_uri, logger.experiment_name, logger.get("artifact_location"))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._prepare(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._prepare(config)
