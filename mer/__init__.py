"""mer: spontaneous facial micro-expression recognition with a 3D CNN."""

import os

__version__ = "0.1.0"

# A research tool that promises no network use keeps MLflow's usage telemetry (and the
# installation id it writes under the home folder) off; set MLFLOW_DISABLE_TELEMETRY=false
# to allow it. Set here, before any mer module imports mlflow, which reads it on import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
