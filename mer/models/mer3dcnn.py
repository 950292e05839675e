"""The paper's network (Irawan et al., Table II), shapes derived from the input size."""

from __future__ import annotations

import torch
from torch import nn

from mer.models import cpu_kernels, stock_ops
from mer.models.init import initialise

IMPLEMENTATIONS = ("fused", "stock", "reference")


def _flat_features(features: nn.Module, depth: int, size: int) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, 1, depth, size, size)).numel())


class MER3DCNN(nn.Module):
    """Conv3d(32, 3x3x3) -> MaxPool3d(3) -> Dropout -> MaxPool3d(2) -> Dropout -> Flatten
    -> Dropout -> Dense(32) -> Dropout -> Dense(classes). Input (N, 1, depth, size, size);
    returns logits (softmax lives in the loss). 452,611 parameters at 1x10x128x128, 3 classes.

    `forward` is an exact rewrite of `reference_forward` (the layers in Table II order),
    about 3x faster on CPU: MaxPool3d(3) keeps only the first 3*floor(d/3) conv depths,
    so the frames feeding the rest are never convolved; ReLU commutes with max-pooling,
    so it runs on 27x fewer values after the pool; activations are channels-last.

    `impl` picks how: "fused" (default) runs conv + pool + ReLU and the dropouts as the CPU
    kernels of `cpu_kernels` (the stock path on a GPU, or where the kernels cannot build);
    "stock" is the rewrite on stock PyTorch ops (`stock_ops`: the conv a few clips at a time,
    cheaper dropout masks); "reference" is `reference_forward`. `init` is `mer.models.init`'s
    scheme: "keras" (default) or "torch"."""

    def __init__(self, num_classes: int = 3, depth: int = 10, size: int = 128, dropout: float = 0.3,
                 channels: int = 32, hidden: int = 32, impl: str = "fused", init: str = "keras"):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"model.impl must be one of {', '.join(IMPLEMENTATIONS)}, got {impl!r}")
        self.impl = impl
        # The path the last forward took: `fused` falls back to `stock` on a GPU or where the
        # kernels cannot build, and the two draw different dropout streams; runs record it.
        self.impl_ran: str | None = None
        self.features = nn.Sequential(
            nn.Conv3d(1, channels, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3),
            nn.Dropout(dropout),
            nn.MaxPool3d(2),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(_flat_features(self.features, depth, size), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        initialise(self, init)
        self.to(memory_format=torch.channels_last_3d)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "reference":
            self.impl_ran = "reference"
            return self.reference_forward(x)
        conv, relu, pool1, dropout1, pool2, dropout2, _ = self.features
        drop1, dense1, relu1, drop2, dense2 = self.classifier
        if self.impl == "fused" and cpu_kernels.conv_pool_applies(x, conv, pool1):
            self.impl_ran = "fused"
            x = cpu_kernels.conv_pool_relu(x, conv.weight, conv.bias)
            kernel_dropout = cpu_kernels.dropout
        else:
            self.impl_ran = "stock"
            kernel, window = conv.kernel_size[0], pool1.kernel_size
            kept = (x.shape[2] - kernel + 1) // window * window + kernel - 1
            x = x[:, :, :kept].contiguous(memory_format=torch.channels_last_3d)
            if x.device.type == "cpu" and not x.requires_grad:
                x = stock_ops.conv_pool_relu(x, conv.weight, conv.bias, window)
            else:  # cuDNN takes the whole batch best; an input gradient needs the plain layers
                x = relu(pool1(conv(x)))
            kernel_dropout = stock_ops.dropout

        def drop(values, layer):
            return kernel_dropout(values, layer.p, self.training)

        x = stock_ops.flatten_channels_last(drop(pool2(drop(x, dropout1)), dropout2))
        return dense2(drop(relu1(dense1(drop(x, drop1))), drop2))
