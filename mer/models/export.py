"""ONNX export of a trained network, for onnxruntime and other runtimes."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


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
    # The exporter and the onnxscript optimiser it runs narrate each pass (at INFO, which a
    # Hydra job logs) and warn about torchvision ops this network never uses: noise around
    # the one line the user needs. Their errors still raise.
    exporter_logs = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [log.level for log in exporter_logs]
    try:
        example = torch.zeros(2, 1, depth, size, size)
        for log in exporter_logs:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), input_names=["clips"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True)
    finally:
        for log, level in zip(exporter_logs, levels):
            log.setLevel(level)
        if impl is not None:
            net.impl = impl
        net.train(was_training)
    return path
