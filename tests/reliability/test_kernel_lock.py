"""A kernel build interrupted earlier leaves torch's lock file behind; later runs must
not wait on it forever."""

from __future__ import annotations

import logging
import time

import pytest

from mer.common.errors import MerError
from mer.models import cpu_kernels


def this_build() -> str:
    return cpu_kernels.build_name(cpu_kernels.SOURCE.read_bytes(), cpu_kernels.build_flags(),
                                  cpu_kernels.header_paths())


@pytest.fixture
def fresh_kernel_load():
    """load_kernels runs again here, and the real kernels are loaded again after."""
    cpu_kernels.load_kernels.cache_clear()
    yield
    cpu_kernels.load_kernels.cache_clear()


def test_a_stale_build_lock_falls_back_to_stock_ops_naming_the_lock(fresh_kernel_load, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("MER_KERNEL_LOCK_TIMEOUT", "1")
    # where torch's builder puts its FileBaton: <extensions dir>/<extension name>/lock
    lock = tmp_path / this_build() / "lock"
    lock.parent.mkdir()
    lock.touch()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=cpu_kernels.log.name):
        assert cpu_kernels.load_kernels() is None
    assert time.monotonic() - start < 5
    assert lock.exists()
    warnings = [r.getMessage() for r in caplog.records if r.name == cpu_kernels.log.name]
    assert len(warnings) == 2 and all(str(lock) in w for w in warnings)
    assert "delete it if no other build is running" in warnings[1] and "stock PyTorch ops" in warnings[1]


def test_a_wait_that_is_not_a_number_of_seconds_is_refused(fresh_kernel_load, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("MER_KERNEL_LOCK_TIMEOUT", "5min")
    lock = tmp_path / this_build() / "lock"
    lock.parent.mkdir()
    lock.touch()
    with pytest.raises(MerError, match=r"^MER_KERNEL_LOCK_TIMEOUT='5min' is not a number of seconds"):
        cpu_kernels.load_kernels()
