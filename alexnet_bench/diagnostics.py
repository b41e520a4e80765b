"""How the network's units behave on a fixed batch: dead ReLUs and how hard LRN normalises.

Recorded at the end of every run (``metrics.json`` -> ``health``) so a study can tell an arm
that trained from one whose units died, and whether LRN acts as a normaliser or, with its
``k`` dominating, as a constant gain of ``k**-beta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .model import AlexNet, PaperLRN, channel_window_sum

__all__ = ["activation_health"]


def forward_with_hooks(
    model: nn.Module, images: torch.Tensor, hooks: dict[nn.Module, Callable[..., Any]]
) -> torch.Tensor:
    """One eval-mode forward pass of ``images`` with ``hooks`` (module -> forward hook)
    attached; the hooks are removed and the model's train/eval mode restored afterwards."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks.items()]
    was_training = model.training
    model.eval()
    try:
        return model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _layer_names(model: AlexNet) -> dict[nn.Module, str]:
    """Activation modules -> 'conv1'..'conv5', 'fc6', 'fc7' (the slot after each layer)."""
    names: dict[nn.Module, str] = {}
    slots = [
        ("conv1", model.features[1]),
        ("conv2", model.features[4]),
        ("conv3", model.features[7]),
        ("conv4", model.features[9]),
        ("conv5", model.features[11]),
        ("fc6", model.classifier[2]),
        ("fc7", model.classifier[5]),
    ]
    for name, slot in slots:
        act = slot[0] if isinstance(slot, nn.Sequential) else slot
        names[act] = name
    return names


@torch.no_grad()
def activation_health(model: nn.Module, images: torch.Tensor) -> dict[str, Any] | None:
    """Per hidden layer on ``images`` (eval mode): the fraction of ReLU units that never fire
    ("dead": zero for every image and position) and, after each LRN, the mean of
    ``alpha * sum(a**2) / k`` (≪ 1: LRN is a constant gain; ≈ 1 or more: it normalises).

    ``None`` for models other than :class:`AlexNet` (e.g. the two-tower split).
    """
    if not isinstance(model, AlexNet):
        return None
    names = _layer_names(model)
    dead: dict[str, float] = {}
    lrn_load: dict[str, float] = {}

    def on_activation(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        if isinstance(module, nn.ReLU):  # a unit = a conv channel or an FC neuron
            positive = out > 0
            fired = positive.amax(dim=(0, 2, 3)) if out.dim() == 4 else positive.amax(dim=0)
            dead[names[module]] = round(1.0 - fired.float().mean().item(), 4)

    def on_lrn(module: PaperLRN, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0].float()
        window = channel_window_sum(x * x, module.size // 2)
        index = len(lrn_load) + 1
        lrn_load[f"lrn{index}"] = float((module.alpha * window / module.k).mean().item())

    hooks = {m: on_activation for m in model.modules() if m in names}
    hooks |= {m: on_lrn for m in model.modules() if isinstance(m, PaperLRN)}
    forward_with_hooks(model, images, hooks)
    out: dict[str, Any] = {"images": int(images.shape[0])}
    if dead:
        out["dead_relu_fraction"] = dead
    if lrn_load:
        out["lrn_alpha_sum_over_k"] = lrn_load
    return out
