"""Files written whole or not at all: each is written under a temporary name in its own
folder, flushed to disk, then renamed over the final name. A crash, a signal or a full
disk leaves the old file or none, never a truncated one under the final name."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO, Callable

from mer.common.errors import MerError


def atomic_write(path: Path, write: Callable[[BinaryIO], None], hint: str = "free space on that disk") -> None:
    """`write(handle)` fills the file; an OSError (a full disk, a read-only folder) becomes
    one line naming `path`, with `hint` saying what to do."""
    path = Path(path)
    # Same folder: a rename within one filesystem is atomic, a move across them is a copy.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise MerError(f"cannot write {path}: {error.strerror or error}; {hint}") from error
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str, hint: str = "free space on that disk") -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()), hint)


def remove_orphaned_temporaries(folder: Path) -> None:
    """Delete the temporary files of writers that died mid-write (pool workers terminated
    when another failed, a killed run): never complete, and never renamed into place. A
    writer still running keeps its file."""
    for path in Path(folder).glob(".*.tmp*"):
        pid = path.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and not process_exists(int(pid)):
            path.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def file_sha256(path: Path) -> str:
    """The whole file's SHA-256, read in blocks (checkpoints run to megabytes)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_digest(value, length: int | None = None) -> str:
    """SHA-256 of `value` as sorted-key JSON (anything JSON cannot write, as its str), the
    first `length` hex digits: one spelling for every config, cell, split and cache hash."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
