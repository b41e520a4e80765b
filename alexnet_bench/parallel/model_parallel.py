"""The paper's model-parallel AlexNet: two towers on two devices (Section 3.2, Figure 2)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..model import CONV_INDICES, FC_INDICES, AlexNet, PaperLRN

__all__ = ["TwoTowerAlexNet", "split_supported"]


def split_supported(model: nn.Module) -> bool:
    """True when ``model`` can be split into two towers: a grouped ``paper``-variant AlexNet."""
    if not isinstance(model, AlexNet):
        return False
    return model.config["variant"] == "paper" and bool(model.config["grouped"])


def _conv_half(conv: nn.Conv2d, rows: slice, in_channels: int, device: torch.device) -> nn.Conv2d:
    """An ungrouped conv holding output channels ``rows`` of ``conv``."""
    weight = conv.weight.detach()[rows]
    half = nn.Conv2d(
        in_channels, weight.shape[0], conv.kernel_size, conv.stride, conv.padding, device=device
    )
    with torch.no_grad():
        half.weight.copy_(weight)
        half.bias.copy_(conv.bias.detach()[rows])
    return half


def _linear_half(fc: nn.Linear, rows: slice, device: torch.device) -> nn.Linear:
    """A linear layer holding output neurons ``rows`` of ``fc``."""
    weight = fc.weight.detach()[rows]
    half = nn.Linear(fc.in_features, weight.shape[0], device=device)
    with torch.no_grad():
        half.weight.copy_(weight)
        half.bias.copy_(fc.bias.detach()[rows])
    return half


class _Tower(nn.Module):
    """The parameterised layers of one tower (one device)."""

    def __init__(self, model: AlexNet, tower: int, device: torch.device) -> None:
        super().__init__()
        f, c = model.features, model.classifier
        convs = [f[i] for i in CONV_INDICES]
        fcs = [c[i] for i in FC_INDICES]

        def rows(n: int) -> slice:  # first half (rounded up) to tower 0, the rest to tower 1
            cut = n - n // 2
            return slice(0, cut) if tower == 0 else slice(cut, n)

        c1, c2, c3, c4, _ = (conv.out_channels for conv in convs)
        self.conv1 = _conv_half(convs[0], rows(c1), 3, device)
        self.conv2 = _conv_half(convs[1], rows(c2), c1 // 2, device)  # grouped: own tower only
        self.conv3 = _conv_half(convs[2], rows(c3), c2, device)  # sees both towers
        self.conv4 = _conv_half(convs[3], rows(c4), c3 // 2, device)
        self.conv5 = _conv_half(convs[4], rows(convs[4].out_channels), c4 // 2, device)
        self.fc6, self.fc7, self.fc8 = (
            _linear_half(fc, rows(fc.out_features), device) for fc in fcs
        )


class TwoTowerAlexNet(nn.Module):
    """The paper's model-parallel layout of a grouped ``paper``-variant AlexNet over two devices.

    Tower A (the first half of the kernels of every conv layer and of the neurons of every FC
    layer, fc8 included) lives on ``devices[0]``, tower B (the second halves) on ``devices[1]``.
    conv1 is ungrouped in :class:`AlexNet` (3 input channels), so its output channels are split
    in halves, consistent with ``groups=2`` in conv2 feeding group 0 from the first half.
    Activations cross devices only where the paper has it: the input of conv3 (each conv3 half
    sees both towers' conv2 output) and the FC layers (each FC half sees both halves of the
    previous layer); conv1, conv2, conv4 and conv5 stay within their tower. The logits are
    gathered on ``devices[0]``.

    LRN: the paper normalises each tower over its own kernels, whereas the unsplit model's LRN
    window spans all channels. To stay exactly equal to the unsplit model, after conv1 and conv2
    the towers exchange a halo of ``size // 2`` boundary channels (2 for the paper's n=5): tower
    A normalises ``[A, B[:2]]`` and keeps its own channels, tower B normalises ``[A[-2:], B]``.
    Dropout (on the outputs of fc6 and fc7, as in the paper variant) is applied by each tower to
    its own half before the exchange, so both halves of the next FC layer see the same mask, as
    in the unsplit model.

    The weights of ``model`` are copied (``model`` is left untouched); use
    :meth:`merged_state_dict` to load trained weights back into an unsplit :class:`AlexNet`.
    """

    def __init__(self, model: AlexNet, devices: Sequence[torch.device | str]) -> None:
        super().__init__()
        if not split_supported(model):
            cfg = getattr(model, "config", {})
            raise ValueError(
                "the two-tower split needs a paper-variant AlexNet with grouped=True, got "
                f"variant={cfg.get('variant')!r} grouped={cfg.get('grouped')!r}"
            )
        if len(devices) != 2:
            raise ValueError(f"the two-tower split needs exactly 2 devices, got {len(devices)}")
        self.devices = tuple(torch.device(d) for d in devices)
        self.config = {
            **model.config,
            "parallel": "model",
            "devices": [str(d) for d in self.devices],
        }
        self.towers = nn.ModuleList(_Tower(model, t, d) for t, d in enumerate(self.devices))
        self.act = copy.deepcopy(model.features[7])  # the plain hidden activation
        self.lrn = copy.deepcopy(model.features[1][1]) if model.config["lrn"] else None
        self.pool1, self.pool2, self.pool5 = (copy.deepcopy(model.features[i]) for i in (2, 5, 12))
        self.avgpool = copy.deepcopy(model.avgpool)
        self.dropout = copy.deepcopy(model.classifier[2][1])  # the paper's: on fc6/fc7 outputs

    def _exchange(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers' activations concatenated on each tower's device (channel/feature dim 1)."""
        da, db = self.devices
        return torch.cat([a, b.to(da)], 1), torch.cat([a.to(db), b], 1)

    def _lrn(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-channel LRN over the union of both towers, exchanging only the halo channels."""
        assert self.lrn is not None
        if not isinstance(self.lrn, PaperLRN):  # LRNGain: element-wise, no channel window
            return self.lrn(a), self.lrn(b)
        da, db = self.devices
        halo = self.lrn.size // 2
        na, nb = a.shape[1], b.shape[1]
        a_ext = torch.cat([a, b[:, :halo].to(da)], 1)
        b_ext = torch.cat([a[:, max(0, na - halo) :].to(db), b], 1)
        return self.lrn(a_ext)[:, :na], self.lrn(b_ext)[:, b_ext.shape[1] - nb :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ta, tb = self.towers
        da, db = self.devices
        act = self.act
        a, b = act(ta.conv1(x.to(da))), act(tb.conv1(x.to(db)))
        if self.lrn is not None:
            a, b = self._lrn(a, b)
        a, b = self.pool1(a), self.pool1(b)
        a, b = act(ta.conv2(a)), act(tb.conv2(b))
        if self.lrn is not None:
            a, b = self._lrn(a, b)
        a, b = self.pool2(a), self.pool2(b)
        xa, xb = self._exchange(a, b)
        a, b = act(ta.conv3(xa)), act(tb.conv3(xb))
        a, b = act(ta.conv4(a)), act(tb.conv4(b))
        a, b = act(ta.conv5(a)), act(tb.conv5(b))
        a, b = self.pool5(a), self.pool5(b)
        # Flattening is channel-major, so [A | B] is the unsplit model's fc6 input order.
        a, b = torch.flatten(self.avgpool(a), 1), torch.flatten(self.avgpool(b), 1)
        for fa, fb in ((ta.fc6, tb.fc6), (ta.fc7, tb.fc7)):
            xa, xb = self._exchange(a, b)
            a, b = self.dropout(act(fa(xa))), self.dropout(act(fb(xb)))
        xa, xb = self._exchange(a, b)
        return torch.cat([ta.fc8(xa), tb.fc8(xb).to(da)], 1)

    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The towers' weights in the unsplit :class:`AlexNet` layout (tensors on devices[0])."""
        ta, tb = self.towers
        da = self.devices[0]
        names = [f"features.{i}" for i in CONV_INDICES] + [f"classifier.{i}" for i in FC_INDICES]
        layers = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
        state: dict[str, torch.Tensor] = {}
        for name, layer in zip(names, layers, strict=True):
            la, lb = getattr(ta, layer), getattr(tb, layer)
            for p in ("weight", "bias"):
                pa, pb = getattr(la, p).detach(), getattr(lb, p).detach()
                state[f"{name}.{p}"] = torch.cat([pa, pb.to(da)], 0)
        return state
