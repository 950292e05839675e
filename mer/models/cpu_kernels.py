"""MER3DCNN's CPU kernels (kernels/mer3dcnn_cpu.cpp): fused conv + pool + ReLU and a one-pass
dropout. Built once per machine from the source the package ships, with the compiler that is
there, then loaded from torch's extension cache; when they cannot be built, the model runs on
stock PyTorch ops and says so once."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sysconfig
import time
from pathlib import Path

import torch
from torch import nn

from mer.common.errors import MerError
from mer.common.files import atomic_write

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels") / "mer3dcnn_cpu.cpp"
# Instruction sets torch reports -> compiler targets; the name keeps builds for different
# CPUs apart when a home folder (and so torch's extension cache) is shared across nodes.
_ARCH_FLAGS = {"AVX512": ["-march=x86-64-v4"], "AVX2": ["-march=x86-64-v3"]}
LOCK_TIMEOUT_ENV = "MER_KERNEL_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0  # a build takes about a minute


def build_target() -> str:
    """The instruction set the kernels are compiled for on this machine (runs record it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return " ".join([capability, *_ARCH_FLAGS.get(capability, [])])


def build_flags() -> list[str]:
    # -fopenmp: torch's builder leaves it out, and without it at::parallel_for runs on one
    # core. The extension then binds to the libgomp torch has already loaded (same soname).
    return ["-O3", "-ffp-contract=fast", "-fopenmp", *_ARCH_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])]


def header_paths() -> list[str]:
    """The include folders torch writes into the build file: torch's own and Python's. Two
    environments (a checkout's venv and another with the wheel installed) differ here, and
    ninja rebuilds whenever the build file changes."""
    from torch.utils import cpp_extension

    return [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]


def build_name(source: bytes, flags: list[str], headers: list[str]) -> str:
    """The extension's name, and so its folder in torch's extension cache: the instruction
    set, then a digest of the source, the flags, torch's version and the include folders.
    Under one name, torch keeps one build and rebuilds it whenever another source or
    another environment asks (two checkouts, or a checkout and an installed wheel, would
    evict each other's build at every switch, a minute each, and block each other on the
    build lock); under this one, each source is built once per environment."""
    parts = [source, " ".join(flags).encode(), torch.__version__.encode(), "\0".join(headers).encode()]
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()
    return f"mer3dcnn_cpu_{torch.backends.cpu.get_cpu_capability().lower()}_{digest[:12]}"


def _source_in_build_folder(name: str, source: bytes) -> Path:
    """The source, copied into its build's folder: the build is compiled from there, so
    every copy of mer with this source hands torch the same file. ninja rebuilds when the
    path of a source changes, so building each copy from its own package would redo the
    build at every switch even under one name."""
    from torch.utils import cpp_extension

    copy = Path(cpp_extension._get_build_directory(name, verbose=False)) / SOURCE.name
    if not copy.is_file() or copy.read_bytes() != source:
        atomic_write(copy, lambda handle: handle.write(source))
    return copy


def _put_ninja_on_path() -> None:
    # torch runs `ninja` through PATH; the pip package's binary is only on it in an activated venv.
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"


def _lock_timeout() -> float:
    """Seconds to wait on another build's lock: $MER_KERNEL_LOCK_TIMEOUT, else 300."""
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if value is None:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        seconds = float(value)
        if seconds >= 0:
            return seconds
    except ValueError:
        pass
    raise MerError(f"{LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds; set it to e.g. 300 or unset it")


def _build_lock_released(name: str, timeout: float) -> bool:
    """Whether torch's build lock for extension `name` is absent or goes within `timeout` s.

    torch waits on that lock with no limit, and a build killed mid-way (Ctrl-C) leaves it
    behind for good: every later run would hang with no hint."""
    from torch.utils import cpp_extension

    # the folder torch's load() builds in, honouring TORCH_EXTENSIONS_DIR as it does
    lock = Path(cpp_extension._get_build_directory(name, verbose=False)) / "lock"
    if not lock.exists():
        return True
    log.warning("%s exists: another MER3DCNN kernel build is running, or one was interrupted; "
                "waiting up to %g s for it (%s)", lock, timeout, LOCK_TIMEOUT_ENV)
    deadline = time.monotonic() + timeout
    while lock.exists():
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("%s is still there after %g s: delete it if no other build is running; "
                        "using stock PyTorch ops", lock, timeout)
            return False
        time.sleep(min(0.5, left))
    return True


@functools.lru_cache(maxsize=None)
def load_kernels():
    """The compiled extension, or None (after a one-line warning saying why) if it cannot build."""
    from torch.utils import cpp_extension

    flags, source = build_flags(), SOURCE.read_bytes()
    name = build_name(source, flags, header_paths())
    timeout = _lock_timeout()
    _put_ninja_on_path()
    log.info("loading MER3DCNN CPU kernels (compiled on first use on this machine, about a minute)")
    try:
        if not _build_lock_released(name, timeout):
            return None
        return cpp_extension.load(name=name, sources=[str(_source_in_build_folder(name, source))], extra_cflags=flags,
                                  extra_ldflags=["-fopenmp"])
    except Exception as error:  # no compiler, ninja or headers: all mean "use stock ops"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        log.warning("MER3DCNN CPU kernels unavailable (%s); using stock PyTorch ops", lines[-1][:200])
        return None


class _ConvPoolReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        out, winner = load_kernels().conv_pool_forward(x, weight, bias)
        ctx.save_for_backward(x, out, winner, weight)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, winner, weight = ctx.saved_tensors
        grad_weight, grad_bias = load_kernels().conv_pool_backward(grad, x, out, winner, weight)
        return None, grad_weight, grad_bias


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        # the seed comes from torch's generator, so seeding torch seeds the masks
        seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
        out, mask = load_kernels().dropout(x, p, seed)
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def conv_pool_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(max_pool3d(conv3d(x, weight, bias), 3)), channels-last; x gets no gradient."""
    return _ConvPoolReLU.apply(x, weight, bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """nn.functional.dropout's distribution and scaling, one pass, masks seeded from torch."""
    if not training or p == 0.0:
        return x
    return _Dropout.apply(x, p)


def conv_pool_applies(x: torch.Tensor, conv: nn.Conv3d, pool: nn.MaxPool3d) -> bool:
    """Whether the fused kernel computes exactly relu(pool(conv(x))) for this input."""
    def cube(value, n):
        return value in (n, (n, n, n))

    return (x.device.type == "cpu" and not x.requires_grad and x.dtype in (torch.float32, torch.float64)
            and conv.in_channels == 1 and cube(conv.kernel_size, 3)
            and cube(conv.stride, 1) and cube(conv.padding, 0) and cube(conv.dilation, 1) and conv.groups == 1
            and conv.bias is not None and conv.padding_mode == "zeros" and cube(pool.kernel_size, 3)
            and cube(pool.stride, 3) and cube(pool.padding, 0) and cube(pool.dilation, 1) and not pool.ceil_mode
            and not pool.return_indices and load_kernels() is not None
            and conv.out_channels % load_kernels().channel_multiple == 0)
