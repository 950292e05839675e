"""One clear line instead of a traceback for problems the user can fix."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

from mer.errors import MerError

log = logging.getLogger("mer")


@contextmanager
def exit_on_user_error():
    """In a single run, stop with the message and exit status 1. In a sweep, report it and
    let the other runs go on (the failed one is already marked FAILED in MLflow)."""
    try:
        yield
    except (MerError, MissingMandatoryValue, InstantiationException) as error:
        # A config value a constructor refused (model.dropout=1.5) is a user error; anything
        # else Hydra failed to build is a bug and keeps its traceback.
        if isinstance(error, InstantiationException) and not isinstance(error.__cause__, (ValueError, MerError)):
            raise
        message = f"error: {error}"
        in_sweep = HydraConfig.initialized() and str(HydraConfig.get().mode).endswith("MULTIRUN")
        log.error(message)
        if not in_sweep:
            print(message, file=sys.stderr)
            sys.exit(1)
