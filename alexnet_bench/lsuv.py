"""Data-dependent initialisation: every conv and hidden FC layer starts at unit output variance.

Layer-sequential unit variance (LSUV, Mishkin & Matas, ICLR 2016), in one exact pass: the
layers are visited in forward order on a fixed batch of training images; each layer's weights
are divided by the standard deviation of its output, and the output itself is rescaled in the
same hook, so every later layer already sees the corrected signal. With zero biases (the
kaiming draws) scaling the weights scales the output exactly, so one pass suffices.

Why: an ablation must change one idea, not the network's signal scale. Under a fixed-variance
init, the paper's LRN (k=2, alpha=1e-4) at small activations is a constant gain of
k**-beta = 2**-0.75 per LRN layer, and ReLU's He gain is wrong for tanh, so removing LRN or
swapping the activation also rescaled every later layer's input. Rescaled by the same rule in
every arm, all arms start with unit-variance pre-activations in every layer, while the random
draws (the directions of the weights) stay the same across arms that share parameter shapes.
The output layer (fc8) keeps its small draws, so every arm starts at loss ~ln(classes).
"""

from __future__ import annotations

import torch
from torch import nn

from .diagnostics import forward_with_hooks

__all__ = ["unit_variance_init"]


def _scaled_layers(model: nn.Module) -> list[nn.Module]:
    """Conv and linear layers in forward (registration) order, without the output layer."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[:-1]


@torch.no_grad()
def unit_variance_init(model: nn.Module, images: torch.Tensor) -> list[float]:
    """Rescale ``model``'s conv/hidden FC weights in place; returns the factors applied.

    ``images`` is a normalised float batch on the model's device. The model is run in eval
    mode (dropout off) and left in the mode it was in.
    """
    factors: list[float] = []

    def rescale(module: nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor):
        std = out.float().std().item()
        if not std > 0:
            raise ValueError(f"unit-variance init: a layer's output has std {std} on the batch")
        if module.bias is not None and torch.any(module.bias != 0):
            raise ValueError("unit-variance init needs zero biases (use the kaiming draws)")
        module.weight.div_(std)
        factors.append(1.0 / std)
        return out / std

    forward_with_hooks(model, images, dict.fromkeys(_scaled_layers(model), rescale))
    return factors
