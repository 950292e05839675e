"""Weight initialisation schemes a network can start from (`model.init`)."""

from __future__ import annotations

from torch import nn

from mer.common.config import ADAM_EPS

# The frameworks whose defaults a network can start from: the ones conf/optim/adam.yaml
# knows an epsilon for, so the two lists cannot drift apart.
INITS = tuple(ADAM_EPS)


def initialise(net: nn.Module, init: str) -> None:
    """keras: Keras' layer defaults, glorot-uniform weights and zero biases for every Conv3d
    and Linear, as the paper and the MicroExpSTCNN baseline were trained. torch: PyTorch's
    defaults, as the layers were constructed."""
    if init not in INITS:
        raise ValueError(f"model.init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "torch":
        return
    for module in net.modules():
        if isinstance(module, (nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
