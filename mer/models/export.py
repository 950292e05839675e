"""ONNX export of a trained network, for onnxruntime and other runtimes."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
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
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        example = torch.zeros(2, 1, depth, size, size)
        # The exporter narrates each pass and warns about torchvision ops this network never
        # uses: noise around the one line the user needs. Its errors still raise.
        exporter_log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), input_names=["clips"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True)
    finally:
        exporter_log.setLevel(level)
        if impl is not None:
            net.impl = impl
        net.train(was_training)
    return path
