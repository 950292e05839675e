"""Ctrl-C and SIGTERM as one exception, so a run they stop is recorded KILLED and the
process exits 128 + the signal's number, as shells and schedulers expect (130, 143).

Left alone, Lightning turns Ctrl-C into `sys.exit(1)` and SIGTERM into a `SystemExit`
with status 0: a stopped run would read FAILED, or a killed job as a success."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop signal reached the process. BaseException, like KeyboardInterrupt, so that
    no `except Exception` on the way (Hydra's job runner, Lightning's loops) swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted` in this process. Forked
    children (data-loader and preprocessing workers) keep the usual behaviour, and a second
    signal while the first is being handled is ignored, so the run can still be closed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its own handlers apply
        return
    owner = os.getpid()
    stopping = False

    def handler(signum, frame):
        nonlocal stopping
        if os.getpid() != owner:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if stopping:
            return
        stopping = True
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
