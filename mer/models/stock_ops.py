"""MER3DCNN's first block and dropout on stock PyTorch ops, faster than the layers as written
(the path on GPUs and wherever the CPU kernels cannot build)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Clips per conv call: two clips' conv output (2 x 12 MB at 10x128x128) stays in cache
# between the conv and the pool, and the buffers are small enough for the allocator to reuse.
CHUNK = 2


def chunk_sizes(n_clips: int) -> list[int]:
    """CHUNK clips per conv call, the remainder joining the last call: oneDNN takes a lone
    clip about four times as long per clip (a batch of 11 cost more than one of 12)."""
    sizes = [CHUNK] * (n_clips // CHUNK) or [0]
    sizes[-1] += n_clips % CHUNK
    return sizes


class _ChunkedConvPoolReLU(torch.autograd.Function):
    """relu(max_pool3d(conv3d(x), window)) a few clips at a time. Only the pooled output and
    the pool's winner indices are kept for backward, never the full conv activation; the
    input gets no gradient (it is the data)."""

    @staticmethod
    def forward(ctx, x, weight, bias, window):
        pooled, winners = [], []
        for part in x.split(chunk_sizes(len(x))):
            values, indices = F.max_pool3d(F.conv3d(part, weight, bias), window, return_indices=True)
            pooled.append(values)
            winners.append(indices)
        out = torch.cat(pooled).relu_()
        ctx.conv_size = [s - k + 1 for s, k in zip(x.shape[2:], weight.shape[2:])]
        ctx.save_for_backward(x, weight, out, torch.cat(winners))
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, out, winners = ctx.saved_tensors
        # ReLU's own backward op: masked_fill on these channels-last tensors is far slower
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
        grad_weight, grad_bias = torch.zeros_like(weight), weight.new_zeros(weight.shape[0])
        chunks = chunk_sizes(len(x))
        for part, grad_part, winner_part in zip(x.split(chunks), grad.split(chunks), winners.split(chunks)):
            # The pool's backward: each pooled gradient goes back to its window's winner, written
            # channels-last, the layout oneDNN's weight gradient wants (it would copy otherwise).
            grad_conv = grad.new_zeros(len(part), math.prod(ctx.conv_size), weight.shape[0]).scatter_(
                1, winner_part.flatten(2).transpose(1, 2), grad_part.flatten(2).transpose(1, 2))
            grad_conv = grad_conv.view(len(part), *ctx.conv_size, -1).permute(0, 4, 1, 2, 3)
            _, part_weight, part_bias = torch.ops.aten.convolution_backward(
                grad_conv, part, weight, [weight.shape[0]], [1, 1, 1], [0, 0, 0], [1, 1, 1], False,
                [0, 0, 0], 1, [False, True, True])
            grad_weight += part_weight
            grad_bias += part_bias
        return None, grad_weight, grad_bias, None


def conv_pool_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, window: int) -> torch.Tensor:
    """relu(max_pool3d(conv3d(x, weight, bias), window)) for an input that needs no gradient."""
    return _ChunkedConvPoolReLU.apply(x, weight, bias, window)


class _FlattenChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.view(ctx.shape).contiguous(memory_format=torch.channels_last_3d)


def flatten_channels_last(x: torch.Tensor) -> torch.Tensor:
    """x.flatten(1) (in NCDHW order, as nn.Flatten) whose gradient comes back channels-last.
    Flatten's own gradient is NCDHW, and max_pool3d's CPU backward then copies its
    channels-last input and output to match (2 x 2.26M floats, ~3 ms a step at batch 20)."""
    return _FlattenChannelsLast.apply(x)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout's distribution from 31 random bits per element: one integer fill and one
    compare, where bernoulli_ samples a float per element (the slowest op of the step)."""
    if not training or p == 0.0:
        return x
    # random_() without bounds fills [0, 2**31) from one generator word per element; with
    # explicit bounds torch draws two words and reduces them, three times slower here
    bits = torch.empty_like(x, dtype=torch.int32).random_()
    return x * (bits >= round(p * 2**31)).to(x.dtype).mul_(1.0 / (1.0 - p))
