"""The paper's Figure 1 network: cuda-convnet's four-weight-layer CIFAR-10 net (``layers-18pct``).

Krizhevsky et al. (2012), Figure 1: "a four-layer convolutional neural network" on CIFAR-10,
ReLU vs tanh, "no regularization of any kind". The layer stack follows cuda-convnet's
``example-layers/layers-18pct.cfg``::

    conv1 32 5x5 pad 2 -> act -> max-pool 3/2 -> conv2 32 5x5 pad 2 -> act -> avg-pool 3/2
    -> conv3 64 5x5 pad 2 -> act -> avg-pool 3/2 -> fc 10

Pools use cuda-convnet's ``outputsX=0`` rule (windows cover the whole map: ``ceil_mode``), so a
32 px input is pooled to 16, 8 and 4 px and fc10 sees 64 x 4 x 4 = 1024 inputs. The two
response-normalisation layers of ``layers-18pct`` are left out: the paper says Figure 1 used no
regularisation, and the same stack serves both activations. No dropout.

Initialisation (:meth:`Layers18pct.reset_parameters`), one of two rules, each the same for both
activations (so with the same seed both arms start from the same draws and seeds pair):

* ``auto`` (variance-preserving): weights are standard-normal draws scaled by
  ``gain / sqrt(fan_in)``, where ``gain`` is the activation's variance-preserving gain
  (``torch.nn.init.calculate_gain``: sqrt(2) for ReLU, 5/3 for tanh; 1 for the linear fc10),
  biases zero. This is what Glorot & Bengio (2010) and LeCun et al. (1998) prescribe.
* ``paper`` (the paper era's): cuda-convnet's own constants from ``layers-18pct.cfg``
  (:data:`PAPER_INIT_STD`: ``initW`` = the std of a zero-mean Gaussian, 1e-4 for conv1 and 0.01
  for conv2, conv3 and fc10; no ``initB``, so biases zero), for both activations. Those constants
  were set for cuda-convnet's input units (its CIFAR data provider subtracts the mean and keeps
  the 0-255 pixel scale), which a run reproduces with ``data.normalise: mean``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import LAYERS18PCT_INITS as INITS

__all__ = ["ARCH", "INITS", "PAPER_INIT_STD", "Layers18pct"]

ARCH = "layers18pct"
ACTIVATIONS = ("relu", "tanh")
_CHANNELS = (32, 32, 64)
#: ``initW`` of dnouri/cuda-convnet example-layers/layers-18pct.cfg (std of N(0, std^2); biases 0)
PAPER_INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}


def _pooled(size: int, kernel: int = 3, stride: int = 2) -> int:
    """Output size of a ``ceil_mode`` pool (cuda-convnet ``outputsX=0``)."""
    return max(1, math.ceil((size - kernel) / stride) + 1) if size >= kernel else 1


class Layers18pct(nn.Module):
    """cuda-convnet's ``layers-18pct`` CIFAR-10 net without LRN, with ReLU or tanh after each conv.

    Args:
        num_classes: outputs of the final fully connected layer (>= 2).
        activation: ``"relu"`` or ``"tanh"`` after every convolution.
        image_size: input size the network is built for (>= 3; the paper's CIFAR-10 is 32).
        init: ``"auto"`` (variance-preserving, the default) or ``"paper"`` (``layers-18pct.cfg``'s
            ``initW`` constants, :data:`PAPER_INIT_STD`).
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        activation: str = "relu",
        image_size: int = 32,
        init: str = "auto",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose relu or tanh")
        if init not in INITS:
            raise ValueError(f"unknown layers18pct init {init!r}; choose auto or paper")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if image_size < 3:
            raise ValueError(f"image_size must be >= 3, got {image_size}")
        c1, c2, c3 = _CHANNELS

        def act() -> nn.Module:
            return nn.ReLU(inplace=True) if activation == "relu" else nn.Tanh()

        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 5, padding=2),
            act(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(c1, c2, 5, padding=2),
            act(),
            nn.AvgPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(c2, c3, 5, padding=2),
            act(),
            nn.AvgPool2d(3, 2, ceil_mode=True),
        )
        size = _pooled(_pooled(_pooled(image_size)))
        self.classifier = nn.Linear(c3 * size * size, num_classes)
        self.activation = activation
        self.init = init
        self.reset_parameters()
        self.config: dict[str, Any] = {
            "arch": ARCH,
            "activation": activation,
            "image_size": int(image_size),
            "num_classes": int(num_classes),
            "channels": list(_CHANNELS),
            "feature_map": size,
            "lrn": False,
            "dropout": 0.0,
            "init": "fan-in normal x activation gain (same draws for relu and tanh)"
            if init == "auto"
            else "paper: cuda-convnet layers-18pct.cfg initW (same draws for relu and tanh)",
            "init_std": self.init_std(),
        }

    def weight_layers(self) -> dict[str, nn.Module]:
        """conv1, conv2, conv3 and fc10 by their cuda-convnet names."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        return {"conv1": convs[0], "conv2": convs[1], "conv3": convs[2], "fc10": self.classifier}

    def init_std(self) -> dict[str, float]:
        """The std of each layer's initial weights under this net's init rule."""
        if self.init == "paper":
            return dict(PAPER_INIT_STD)
        gain = nn.init.calculate_gain(self.activation)
        return {
            name: (1.0 if name == "fc10" else gain) / math.sqrt(m.weight[0].numel())
            for name, m in self.weight_layers().items()
        }

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Weights N(0, 1) * :meth:`init_std` per layer (one draw per seed), biases 0."""
        std = self.init_std()
        for name, m in self.weight_layers().items():
            m.weight.normal_(0.0, 1.0).mul_(std[name])
            m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
