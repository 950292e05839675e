"""MER3DCNN's CPU kernels (kernels/mer3dcnn_cpu.cpp): fused conv + pool + ReLU and a one-pass
dropout. Built once per machine from the source the package ships, with the compiler that is
there, then loaded from torch's extension cache; when they cannot be built, the model runs on
stock PyTorch ops and says so once."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels") / "mer3dcnn_cpu.cpp"
# Instruction sets torch reports -> compiler targets; the name keeps builds for different
# CPUs apart when a home folder (and so torch's extension cache) is shared across nodes.
_ARCH_FLAGS = {"AVX512": ["-march=x86-64-v4"], "AVX2": ["-march=x86-64-v3"]}


def build_target() -> str:
    """The instruction set the kernels are compiled for on this machine (runs record it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return " ".join([capability, *_ARCH_FLAGS.get(capability, [])])


def _put_ninja_on_path() -> None:
    # torch runs `ninja` through PATH; the pip package's binary is only on it in an activated venv.
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"


@functools.lru_cache(maxsize=None)
def load_kernels():
    """The compiled extension, or None (after a one-line warning saying why) if it cannot build."""
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    _put_ninja_on_path()
    log.info("loading MER3DCNN CPU kernels (compiled on first use on this machine, about a minute)")
    try:
        # -fopenmp: torch's builder leaves it out, and without it at::parallel_for runs on one
        # core. The extension then binds to the libgomp torch has already loaded (same soname).
        return cpp_extension.load(name=f"mer3dcnn_cpu_{capability.lower()}", sources=[str(SOURCE)],
                                  extra_cflags=["-O3", "-ffp-contract=fast", "-fopenmp", *_ARCH_FLAGS.get(capability, [])],
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
