"""ONNX export of a trained network, for onnxruntime and other runtimes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def export_onnx(net: nn.Module, path: Path, depth: int, size: int) -> Path:
    """Write `net` as ONNX with a dynamic batch axis: input "clips" (N, 1, depth, size, size),
    output "logits". MER3DCNN's CPU kernels and chunked ops are training-speed paths with no
    ONNX form, so the export traces its reference graph: the same mathematics, layer by layer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    impl = getattr(net, "impl", None)
    was_training = net.training
    net.eval()
    if impl is not None:
        net.impl = "reference"
    try:
        example = torch.zeros(2, 1, depth, size, size)
        torch.onnx.export(net, (example,), str(path), input_names=["clips"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True)
    finally:
        if impl is not None:
            net.impl = impl
        net.train(was_training)
    return path
