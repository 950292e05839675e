"""Checkpoints outlive code changes, and trained networks leave for other runtimes as ONNX."""

import numpy as np
import onnxruntime
import pytest
import torch

from mer.commands.cli import main as mer_main
from mer.models.checkpoint_io import load_checkpoint
from mer.models.export import export_onnx
from mer.models.mer3dcnn import MER3DCNN


def onnx_logits(path, clips):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"clips": clips.numpy()})[0]


@pytest.mark.parametrize("impl", ["fused", "stock"])
def test_onnx_export_gives_the_models_logits_for_any_batch(tmp_path, impl):
    torch.manual_seed(0)
    net = MER3DCNN(size=64, impl=impl).eval()
    path = export_onnx(net, tmp_path / "net.onnx", depth=10, size=64)
    assert net.impl == impl  # the export borrows the reference graph only while tracing
    for batch in (1, 5):
        clips = torch.rand(batch, 1, 10, 64, 64)
        with torch.no_grad():
            expected = net(clips).numpy()
        np.testing.assert_allclose(onnx_logits(path, clips), expected, atol=1e-4, rtol=1e-4)


def test_mer_export_writes_a_checkpoints_network(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert mer_main(["export", str(checkpoint), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    module, run_cfg, _ = load_checkpoint(checkpoint)
    clips = torch.rand(3, 1, run_cfg.preprocess.depth, run_cfg.preprocess.size, run_cfg.preprocess.size)
    with torch.no_grad():
        expected = module.eval()(clips).numpy()
    np.testing.assert_allclose(onnx_logits(out, clips), expected, atol=1e-4, rtol=1e-4)


def test_checkpoints_from_before_model_impl_still_load(checkpoint, tmp_path):
    stored = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del stored["hyper_parameters"]["run_config"]["model"]["impl"]
    old = tmp_path / "before-impl.ckpt"
    torch.save(stored, old)
    new_module, run_cfg, _ = load_checkpoint(checkpoint)
    old_module, _, _ = load_checkpoint(old)
    assert old_module.net.impl == "fused"
    clips = torch.rand(2, 1, run_cfg.preprocess.depth, run_cfg.preprocess.size, run_cfg.preprocess.size)
    with torch.no_grad():
        torch.testing.assert_close(old_module.eval()(clips), new_module.eval()(clips))


def test_serving_a_checkpoint_reads_the_file_once(checkpoint, monkeypatch):
    """`mer predict`, `mer spot-eval` and the logged model load a checkpoint through
    load_trained: one unpickling of the file, not one each for the config, the weights
    (Lightning's load_from_checkpoint) and the input scaling."""
    from mer.spotting.model import load_trained

    reads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: reads.append(args[0]) or real_load(*args, **kwargs))
    model = load_trained(checkpoint)
    assert reads == [checkpoint]
    assert model.checkpoint == checkpoint
