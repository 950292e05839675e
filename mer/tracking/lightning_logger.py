"""Lightning's per-epoch metrics written into a run through `TrackedRun`, the one MLflow
writer of a run (params, tags, final figures and artifacts go through it too)."""

from __future__ import annotations

from typing import Any, Mapping

from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from mer.tracking.run_handle import TrackedRun


class TrackedRunLogger(Logger):
    """A Lightning logger for `conf/metric_loggers/`. The run, not Lightning, owns the
    status (Lightning's own MLflow logger ends its run when `fit` returns, before the test
    and artifacts) and writes the final `test/*` figures itself, once, whichever loggers
    are configured; hyperparameters are the run's resolved config, logged by the run."""

    def __init__(self, run: TrackedRun | None = None):
        super().__init__()
        self.run = run

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run.run_id if self.run else ""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Indexed by epoch, the x-axis a researcher reads curves on; Lightning's own
        # `epoch` metric, a straight line, is used as the index and not logged.
        figures = dict(metrics)
        epoch = figures.pop("epoch", None)
        figures = {k: v for k, v in figures.items() if not k.startswith("test/")}
        if figures:
            self.run.log_metrics(figures, int(epoch) if epoch is not None else step or 0)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass
