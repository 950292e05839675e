"""Whether a real train.py process is mid-fit, read from its store."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def running_with_training_loss(store: Path) -> bool:
    """Read-only: an MLflow client here would race the process's own store migrations."""
    try:
        with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return db.execute("select 1 from metrics m join runs r on m.run_uuid = r.run_uuid "
                              "where m.key = 'train/loss' and r.status = 'RUNNING' limit 1").fetchone() is not None
    except sqlite3.Error:
        return False
