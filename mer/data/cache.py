"""Preprocessed clips stored once: one array per clip, plus a manifest. Arrays are stored
uncompressed unless asked (`data.cache_compression`): zlib takes as long as finding the
face, to halve a 160 KB clip.

The folder name is a hash of everything that changes the arrays (preprocessing
settings, data root, library versions, format, and the code a clip goes through), so a
changed config or an edited preprocessing stage makes a new cache instead of silently
reusing a stale one. Every file is written to a temporary name and renamed, so an
interrupted run leaves no half-written clip; an entry damaged outside mer (a half-copied
cache folder) is preprocessed again."""

from __future__ import annotations

import ast
import csv
import fcntl
import hashlib
import inspect
import io
import json
import logging
import multiprocessing
import multiprocessing.pool
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from mer.datasets.records import ClipRecord
from mer.common.errors import MerError
from mer.common.files import atomic_write, atomic_write_text, remove_orphaned_temporaries, json_digest
from mer.preprocess import pipeline
from mer.preprocess.pipeline import PreprocessSettings, preprocess_clip

FORMAT_VERSION = 1
# The package of the modules a clip goes through (`clip_code`).
PREPROCESS_PACKAGE = Path(pipeline.__file__).parent
# The cache's disk is full or unwritable: every later clip would fail the same way, so
# the build stops on it instead of recording each clip as failed.
WRITE_HINT = "free space there or set paths.cache_dir to a folder on a disk with room"

log = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    import dlib

    return {"dlib": dlib.__version__, "opencv": cv2.__version__, "numpy": np.__version__}


def clip_code() -> dict[str, str]:
    """The code a clip goes through, by module: mer.preprocess.pipeline and every module of
    its package it imports, directly or not, at the top or inside a function (a backend
    loaded only when chosen), as parsed code, so that a comment or a reflowed line keeps
    the cache; and the worker that stores the clip."""
    package = pipeline.__name__.rpartition(".")[0]
    found: dict[str, str] = {}
    todo = [pipeline.__name__]
    while todo:
        name = todo.pop()
        path = PREPROCESS_PACKAGE / f"{name.rpartition('.')[2]}.py"
        if name in found or name.rpartition(".")[0] != package or not path.is_file():
            continue
        tree = ast.parse(path.read_text())
        found[name] = ast.dump(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from mer.preprocess import align` imports the module mer.preprocess.align
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    found[f"{__name__}._process"] = inspect.getsource(_process)
    return found


def code_digest(code: dict[str, str]) -> str:
    return json_digest(code, 16)


def cache_key(settings: PreprocessSettings, data_root: Path, code: dict[str, str]) -> str:
    return json_digest({"format": FORMAT_VERSION, "settings": settings.as_dict(), "root": str(Path(data_root).resolve()),
                        "code": code_digest(code), **library_versions()}, 16)


@dataclass
class CacheReport:
    ok: list[ClipRecord] = field(default_factory=list)
    failed: list[tuple[ClipRecord, str]] = field(default_factory=list)
    preprocessed: int = 0  # clips this build preprocessed; the others were cached already


def _process(job: tuple[ClipRecord, PreprocessSettings, Path, bool]) -> tuple[ClipRecord, str | None]:
    record, settings, path, compress = job
    try:
        clip = preprocess_clip(record.open(), settings, record.apex, record.onset)
    except MerError as error:
        return record, str(error)
    except (cv2.error, OSError) as error:  # data OpenCV cannot decode, a file that cannot be read
        return record, f"{type(error).__name__}: {error}"
    except Exception as error:
        # Anything else is a bug in mer: recorded as a failed clip, it would quietly shrink
        # the dataset, so it stops the build, with the worker's traceback as its cause.
        raise RuntimeError(f"preprocessing clip {record.clip_id} ({record.path}) hit a bug, not bad data: "
                           f"{type(error).__name__}: {error}") from error
    # Outside the try: a failed write is the cache disk's fault, not the clip's.
    save = np.savez_compressed if compress else np.savez
    atomic_write(path, lambda handle: save(handle, clip=clip), WRITE_HINT)
    return record, None


def _start_worker() -> None:
    # Each worker preprocesses one clip at a time; OpenCV's own threads would only compete.
    cv2.setNumThreads(1)


def worker_pool(workers: int, backend: str) -> multiprocessing.pool.Pool:
    """Workers forked from a server process (forkserver), never from the calling one: by
    the time a cache is built there, torch, OpenCV and BLAS have started threads, and a
    child forked while one of them holds a lock can wait on it forever (a training's build
    hung after its last clip). The server imports the main script once (so a script that
    builds a cache keeps its top level under `if __name__ == "__main__":`, as Python's
    multiprocessing asks), this module and, for the dlib `backend`, dlib's models; it is
    started once per process, so later builds start their workers at fork speed with the
    models loaded."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__, *(["mer.data.dlib_preload"] if backend == "dlib" else [])])
    return context.Pool(workers, initializer=_start_worker)


def written(record: ClipRecord) -> str:
    """Size and modification time of a clip's first and last frame (or its video): what
    changes when its files are written again, read without opening them."""
    files = (record.frames[0], record.frames[-1]) if record.frames else (record.path,)
    try:
        return ",".join(f"{stat.st_size}:{stat.st_mtime_ns}" for stat in (Path(f).stat() for f in files))
    except OSError:
        return "missing"  # preprocessing then reports the clip with its own error


class ClipCache:
    def __init__(self, root: Path, settings: PreprocessSettings, data_root: Path, compress: bool = False):
        self.settings, self.compress = settings, compress
        self.data_root = Path(data_root)
        # Read once: the manifest names the code the folder's key was made from.
        self.code = clip_code()
        self.dir = Path(root) / cache_key(settings, data_root, self.code)

    def path(self, record: ClipRecord) -> Path:
        # The clip's source, its annotated marks and when its files were written are in the
        # name: an edited annotation (another apex), a moved clip or a tree written again
        # under the same names (the built-in data of a newer generator) makes a new entry,
        # never a stale hit.
        marks = hashlib.sha256(f"{record.path}|{record.onset}|{record.apex}|{written(record)}".encode()).hexdigest()[:8]
        return self.dir / f"{record.subject}__{record.clip_id}__{marks}.npz"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def failures_path(self) -> Path:
        return self.dir / "failures.csv"

    def build(self, records: Sequence[ClipRecord], workers: int | None = None, progress: bool = True) -> CacheReport:
        """Preprocess every record not cached yet; report the ones that fail, with why.
        One process builds a cache folder at a time: the jobs of a sweep started together
        (a SLURM array) wait for the first, then find its clips instead of preprocessing
        them all again."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MerError(f"cannot create {self.dir}: {error.strerror or error}; {WRITE_HINT}") from error
        with open(self.dir / ".build.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process building %s", self.dir)
                fcntl.flock(lock, fcntl.LOCK_EX)
            return self._build(records, workers, progress)

    def _build(self, records: Sequence[ClipRecord], workers: int | None, progress: bool) -> CacheReport:
        report = CacheReport()
        todo = []
        for record in records:
            path = self.path(record)
            # is_zipfile reads only the archive's end record, which a truncated copy lacks.
            if path.is_file() and zipfile.is_zipfile(path):
                report.ok.append(record)
                continue
            if path.exists():
                log.warning("%s is corrupt (a half-copied cache?); preprocessing its clip again", path)
            todo.append((record, self.settings, path, self.compress))
        report.preprocessed = len(todo)
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
        bar = tqdm(total=len(todo), desc=f"preprocessing clips ({workers} workers)", disable=not progress or not todo, unit="clip")
        try:
            with bar:
                if workers == 1:
                    results = map(_process, todo)
                    self._collect(results, report, bar)
                else:
                    with worker_pool(workers, self.settings.backend) as pool:
                        self._collect(pool.imap_unordered(_process, todo), report, bar)
        finally:
            # One worker's error (a full disk) terminates the others mid-write.
            remove_orphaned_temporaries(self.dir)
        self._write_manifest(records, report)
        return report

    @staticmethod
    def _collect(results, report: CacheReport, bar) -> None:
        for record, reason in results:
            if reason is None:
                report.ok.append(record)
            else:
                report.failed.append((record, reason))
            bar.update(1)
            bar.set_postfix(failed=len(report.failed))

    def _write_manifest(self, records: Sequence[ClipRecord], report: CacheReport) -> None:
        manifest = {
            "key": self.dir.name,
            "format": FORMAT_VERSION,
            "settings": self.settings.as_dict(),
            "data_root": str(self.data_root.resolve()),
            "versions": library_versions(),
            "code": {"digest": code_digest(self.code), "modules": sorted(self.code)},
            "clips": {r.clip_id: {"subject": r.subject, "label": r.label, "path": str(r.path)} for r in report.ok},
            "failed": {r.clip_id: {"path": str(r.path), "reason": why} for r, why in report.failed},
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1), WRITE_HINT)

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["clip_id", "subject", "label", "path", "reason"])
        writer.writerows([r.clip_id, r.subject, r.label, str(r.path), why] for r, why in report.failed)
        atomic_write_text(self.failures_path, buffer.getvalue(), WRITE_HINT)

    def load(self, record: ClipRecord) -> np.ndarray:
        path = self.path(record)
        try:
            with np.load(path) as data:
                return data["clip"]
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError, OSError) as error:
            # The type alone: numpy's own text for a damaged file suggests loading it unsafely.
            raise MerError(f"cannot read the cache entry {path} ({type(error).__name__}); "
                           "delete it and the next run preprocesses its clip again") from error
