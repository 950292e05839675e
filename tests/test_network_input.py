"""What a network is fed, in training and in both serving runtimes: scaled frames, or each
frame minus the clip's first (data.input=difference); and the class-balanced loss."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mer.data.scaling import NetworkInput
from mer.common.errors import MerError
from mer.models.module import MicroExpressionModule, balanced_weights
from mer.spotting.model import TorchClassifier, export_checked, load_trained
from mer.commands.train import train


def test_difference_input_is_each_frame_minus_the_first_in_scaled_units():
    clips = torch.tensor([10, 20, 61], dtype=torch.uint8).reshape(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2)
    frames = NetworkInput(0.0, 255.0, "frames")(clips)
    difference = NetworkInput(0.0, 255.0, "difference")(clips)
    np.testing.assert_allclose(frames[0, 0, :, 0, 0].numpy(), [10 / 255, 20 / 255, 61 / 255], rtol=1e-6)
    np.testing.assert_allclose(difference[0, 0, :, 1, 1].numpy(), [0.0, 10 / 255, 51 / 255], rtol=1e-6)
    # mean_max's offset cancels in a difference; its scale does not.
    np.testing.assert_allclose(NetworkInput(7.0, 100.0, "difference")(clips)[0, 0, :, 0, 0].numpy(),
                               [0.0, 0.1, 0.51], rtol=1e-6)
    with pytest.raises(MerError, match="data.input must be one of"):
        NetworkInput(input="flow")


def test_balanced_weights_are_n_over_classes_times_count_and_zero_for_an_absent_class():
    weights = balanced_weights(torch.tensor([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(weights.numpy(), [4 / (2 * 3), 4 / (2 * 1), 0.0], rtol=1e-6)
    with pytest.raises(MerError, match="module.class_weights"):
        MicroExpressionModule(torch.nn.Linear(2, 3), optimizer=lambda params: None, class_weights="inverse")


def test_a_difference_trained_network_is_served_on_differences_by_torch_and_onnx(make_cfg, tmp_path):
    overrides = ["trainer.max_epochs=1", "test=false", "data.input=difference", "module.class_weights=balanced"]
    train(make_cfg(*overrides), overrides)
    (checkpoint,) = (tmp_path / "out" / "checkpoints").glob("epoch*.ckpt")
    model = load_trained(checkpoint)
    assert model.network_input.input == "difference" and model.provenance()["input"] == "difference"
    check = export_checked(model, tmp_path / "net.onnx")
    assert check.max_abs_difference < 1e-4
    depth, size = model.settings.depth, model.settings.size
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 200, (3, depth, size, size), dtype=np.uint8)
    # A still image added to every frame changes frames, never their differences.
    lit = windows + rng.integers(0, 50, (1, 1, size, size), dtype=np.uint8)
    torch_served = TorchClassifier(model)
    np.testing.assert_allclose(torch_served(lit), torch_served(windows), atol=1e-6)
    frames_model = load_trained(checkpoint)
    frames_model.network_input = replace(frames_model.network_input, input="frames")
    assert np.abs(TorchClassifier(frames_model)(lit) - torch_served(lit)).max() > 1e-4
