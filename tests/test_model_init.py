"""`model.init`: Keras' layer defaults (the paper's and the baseline's framework) or PyTorch's."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf.errors import InterpolationResolutionError

from mer.common.config import compose_train
from mer.models.mer3dcnn import MER3DCNN
from mer.models.microexpstcnn import MicroExpSTCNN

NETWORKS = [lambda init: MER3DCNN(depth=10, size=32, init=init),
            lambda init: MicroExpSTCNN(depth=18, size=32, init=init)]


def layers(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear))]


def glorot_bound(weight: torch.Tensor) -> float:
    receptive = weight[0, 0].numel()
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("build", NETWORKS, ids=["mer3dcnn", "microexpstcnn"])
def test_keras_init_is_glorot_uniform_with_zero_biases(build):
    torch.manual_seed(0)
    for layer in layers(build("keras")):
        bound = glorot_bound(layer.weight)
        largest = layer.weight.abs().max().item()
        # Uniform on [-bound, bound]: fills the interval, never leaves it.
        assert 0.5 * bound < largest <= bound
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("build", NETWORKS, ids=["mer3dcnn", "microexpstcnn"])
def test_torch_init_is_pytorchs_default(build):
    torch.manual_seed(0)
    net = build("torch")
    for layer in layers(net):
        assert torch.count_nonzero(layer.bias) == layer.bias.numel()
    # PyTorch's conv bound, 1/sqrt(27), is over twice glorot's for a 1->32 channel 3x3x3 conv.
    conv = layers(net)[0]
    assert conv.weight.abs().max().item() > glorot_bound(conv.weight)


@pytest.mark.parametrize("network", [MER3DCNN, MicroExpSTCNN])
def test_an_unknown_init_is_refused(network):
    with pytest.raises(ValueError, match="model.init must be one of keras, torch, got 'xavier'"):
        network(depth=18, size=32, init="xavier")


def optimizer(cfg):
    return instantiate(cfg.optim)(params=[torch.nn.Parameter(torch.zeros(1))])


def test_adam_epsilon_follows_the_init():
    default = compose_train([])
    assert default.model.init == "keras"
    assert default.optim.eps == 1e-7
    assert optimizer(default).defaults["eps"] == 1e-7
    torch_cfg = compose_train(["model.init=torch"])
    assert torch_cfg.optim.eps == 1e-8
    assert optimizer(torch_cfg).defaults["eps"] == 1e-8
    assert compose_train(["experiment=paper"]).optim.eps == 1e-7
    with pytest.raises(InterpolationResolutionError, match="model.init must be one of keras, torch"):
        compose_train(["model.init=xavier"]).optim.eps


@pytest.mark.parametrize("overrides", [["experiment=paper"], ["experiment=microexpstcnn"], ["model=microexpstcnn"]])
def test_the_configured_networks_start_from_keras_init(overrides):
    cfg = compose_train([*overrides, "preprocess.size=32"])
    assert cfg.model.init == "keras"
    torch.manual_seed(0)
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in layers(instantiate(cfg.model)))
    torch_net = instantiate(compose_train([*overrides, "preprocess.size=32", "model.init=torch"]).model)
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in layers(torch_net))
