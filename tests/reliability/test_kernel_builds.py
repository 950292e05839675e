"""Two copies of mer on one machine (two checkouts, or a checkout and an installed wheel)
share torch's extension cache: one kernel source is built once, and another source gets a
build of its own instead of evicting the first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mer.models import cpu_kernels

ROOT = Path(__file__).resolve().parents[2]
# Loads the kernels of the mer found first on sys.path; prints the built file and the source it came from.
LOAD = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
        "from mer.models import cpu_kernels as k; m = k.load_kernels(); "
        "print(k.SOURCE); print(m.__file__ if m else 'stock')")


def copy_of_mer(folder: Path, edit: str = "") -> Path:
    """The package copied under `folder`, its kernel source changed by `edit` (appended)."""
    shutil.copytree(ROOT / "mer", folder / "mer", ignore=shutil.ignore_patterns("__pycache__"))
    if edit:
        source = folder / "mer" / "models" / "kernels" / "mer3dcnn_cpu.cpp"
        source.write_text(source.read_text() + edit)
    return folder


def load_from(copy: Path, extensions: Path | None = None) -> tuple[Path, Path, str]:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    if extensions is not None:
        env["TORCH_EXTENSIONS_DIR"] = str(extensions)
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=600, cwd=copy)
    assert done.returncode == 0, done.stderr[-3000:]
    source, built = done.stdout.split()
    return Path(source), Path(built), done.stderr


def test_two_copies_of_one_source_share_one_build():
    here = cpu_kernels.load_kernels()  # this checkout's build: made now if the suite has not yet
    assert here is not None
    built_file = Path(here.__file__)
    before = built_file.stat().st_mtime_ns
    for copy in ("first", "second"):
        with_copy = copy_of_mer(Path(os.environ.get("TMPDIR", "/tmp")) / f"mer-copy-{os.getpid()}-{copy}")
        try:
            source, built, log = load_from(with_copy)
        finally:
            shutil.rmtree(with_copy)
        assert source.is_relative_to(with_copy), "the copy's own package was imported"
        assert built == built_file, f"{copy} copy loaded {built}, not the one build of this source {built_file}"
        assert "Building extension module" not in log, log[-2000:]
    assert built_file.stat().st_mtime_ns == before, "the build was redone"


def test_a_changed_source_or_environment_is_named_apart_and_the_same_source_alike():
    source = cpu_kernels.SOURCE.read_bytes()
    flags = cpu_kernels.build_flags()
    headers = cpu_kernels.header_paths()
    name = cpu_kernels.build_name(source, flags, headers)
    assert cpu_kernels.build_name(bytes(source), list(flags), list(headers)) == name
    assert cpu_kernels.build_name(source + b"\n// edited\n", flags, headers) != name
    assert cpu_kernels.build_name(source, [*flags, "-DEXTRA"], headers) != name
    # another environment's torch (a wheel installed in another venv) writes another build file
    assert cpu_kernels.build_name(source, flags, ["/other/venv/torch/include", *headers[1:]]) != name
    assert name.startswith("mer3dcnn_cpu_")


@pytest.mark.slow
def test_alternating_between_two_sources_builds_each_once(tmp_path):
    """Two real builds (about a minute each) in an extension cache of their own."""
    extensions = tmp_path / "extensions"
    first, second = copy_of_mer(tmp_path / "a"), copy_of_mer(tmp_path / "b", "\n// another source\n")
    built = {}
    for copy in (first, second, first, second):
        _, path, log = load_from(copy, extensions)
        assert path != Path("stock"), log[-2000:]
        if copy in built:
            assert path == built[copy][0] and path.stat().st_mtime_ns == built[copy][1], "rebuilt on a switch"
            assert "Building extension module" not in log
        else:
            built[copy] = (path, path.stat().st_mtime_ns)
    assert built[first][0].parent != built[second][0].parent
