"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) with ablation switches.

Two variants share one module layout, so checkpoints and layer indices are stable across every
ablation: ``paper`` (96-256-384-384-256 kernels, two-tower grouping, LRN, the paper's
initialisation) and ``torchvision`` (64-192-384-256-256, whose ``state_dict`` matches
:func:`torchvision.models.alexnet`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from .config import run_schema

__all__ = [
    "CONV_INDICES",
    "FC_INDICES",
    "POOL_INDICES",
    "AlexNet",
    "LRNGain",
    "PaperLRN",
    "build_model",
    "channel_window_sum",
    "count_parameters",
]

# Positions inside ``AlexNet.features`` / ``AlexNet.classifier`` (identical to torchvision's).
CONV_INDICES = (0, 3, 6, 8, 10)
POOL_INDICES = (2, 5, 12)
FC_INDICES = (1, 4, 6)

VARIANTS = ("paper", "torchvision")
ACTIVATIONS = ("relu", "tanh")
POOLINGS = ("overlapping", "plain")
STEMS = ("auto", "imagenet", "small")
INITS = ("auto", "paper", "torchvision", "kaiming", "lsuv")

_CHANNELS = {"paper": (96, 256, 384, 384, 256), "torchvision": (64, 192, 384, 256, 256)}
_HIDDEN = 4096
_SMALL_STEM_BELOW = 64  # stem="auto": the small stem for inputs below this many pixels


def _choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        options = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
        raise ValueError(f"unknown {kind} {value!r}; choose {options}")
    return value


def _even(n: float) -> int:
    """Round to the nearest multiple of 2 (half up), at least 2."""
    return max(2, 2 * math.floor(n / 2 + 0.5))


def channel_window_sum(t: torch.Tensor, half: int) -> torch.Tensor:
    """Sum over channels ``c - half .. c + half`` (clipped at the ends).

    NCHW tensors: in-place adds of shifted channel slices. channels_last tensors (channels
    innermost, where strided slice adds ran about 8x slower on CPU): one matmul of the
    (N*H*W, C) view with the banded 0/1 matrix, whose result is channels_last again.
    """
    if (
        t.dim() == 4
        and t.shape[1] > 1
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    ):
        index = torch.arange(t.shape[1], device=t.device)
        band = ((index[:, None] - index[None, :]).abs() <= half).to(t.dtype)
        return (t.permute(0, 2, 3, 1) @ band).permute(0, 3, 1, 2)
    total = t.clone()
    for offset in range(1, half + 1):
        total[:, offset:] += t[:, :-offset]
        total[:, :-offset] += t[:, offset:]
    return total


class _PaperLRNFunction(torch.autograd.Function):
    """The paper's LRN with a hand-written backward.

    ``y = x * d**-beta`` with ``d = k + alpha * W(x**2)`` and ``W`` the (symmetric) channel window
    sum, so ``dx = g * d**-beta - 2 * alpha * beta * x * W(g * y / d)``. Forward + backward take
    about a third of the time of autograd through ``F.local_response_norm`` (whose avg_pool3d,
    padding and slice gradients took half the default preset's CPU step). bf16/fp16 inputs are
    computed in fp32: ``k + alpha * sum`` is 2 plus a small term that bf16 would round away.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, half: int, alpha: float, beta: float, k: float):
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        denom = channel_window_sum(work * work, half).mul_(alpha).add_(k)
        # d**-0.75 as rsqrt(d * sqrt(d)): the paper's beta without exp/log
        scale = torch.rsqrt(denom * torch.sqrt(denom)) if beta == 0.75 else denom.pow(-beta)
        out = work * scale
        ctx.save_for_backward(work, out, scale, denom)
        ctx.half, ctx.coeff, ctx.in_dtype = half, 2.0 * alpha * beta, x.dtype
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        work, out, scale, denom = ctx.saved_tensors
        grad = grad.to(work.dtype)
        spread = channel_window_sum(grad * out / denom, ctx.half)
        grad_x = grad * scale - ctx.coeff * work * spread
        return grad_x.to(ctx.in_dtype), None, None, None, None


class PaperLRN(nn.Module):
    """Local response normalisation exactly as the paper's equation (Section 3.3).

    ``b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]**2) ** beta``

    with ``n/2`` the integer ``size // 2``. Defaults are the paper's ``k=2, n=5, alpha=1e-4,
    beta=0.75``. Unlike :class:`torch.nn.LocalResponseNorm`, ``alpha`` is *not* divided by
    ``n`` (torch averages the squares, the paper sums them).
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
    ) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"LRN size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PaperLRNFunction.apply(x, self.size // 2, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class LRNGain(nn.Module):
    """The LRN layer without its normalisation: the constant ``k ** -beta`` it multiplies by
    when ``alpha * sum(a**2)`` is negligible against ``k`` (0.595 for the paper's k=2,
    beta=0.75). The ``lrn: gain`` ablation removes LRN's idea (dividing by the local energy)
    while keeping the signal scale, and so the per-layer step sizes, of the baseline."""

    def __init__(self, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.beta, self.k = beta, k
        self.gain = k**-beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain

    def extra_repr(self) -> str:
        return f"gain={self.gain:.6f} (k={self.k}, beta={self.beta})"


def _activation(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Tanh()


def _pool_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


class AlexNet(nn.Module):
    """AlexNet with the paper's ablation switches.

    Layout (indices as in torchvision, for every option)::

        features:   0 conv1, 1 act1[+LRN], 2 pool1, 3 conv2, 4 act2[+LRN], 5 pool2,
                    6 conv3, 7 act3, 8 conv4, 9 act4, 10 conv5, 11 act5, 12 pool5
        avgpool:    AdaptiveAvgPool2d((6, 6))
        classifier: 1 fc6, 4 fc7, 6 fc8 (parameter-free slots 0, 2, 3, 5; see below)

    Dropout follows each variant's reference: ``paper`` drops the *outputs* of fc6 and fc7
    ("the output of each hidden neuron", Sec. 4.2; Caffe's bvlc_alexnet drop6/drop7), so slots
    2 and 5 hold ``nn.Sequential(act, Dropout)`` and slots 0 and 3 are ``nn.Identity``;
    ``torchvision`` drops the *inputs* of fc6 and fc7 (slots 0 and 3 are ``Dropout``, as in
    ``torchvision.models.alexnet``). LRN is placed inside the activation slot
    (``nn.Sequential(act, PaperLRN())``) and dropout modules are kept with ``p=0``, so
    parameter-free switches never shift indices; the ``torchvision`` variant with the
    ``imagenet`` stem and ``width=1`` loads ``torchvision.models.alexnet`` weights with
    ``strict=True`` and, with its own defaults (no LRN, torch's init), computes the same function.

    Args:
        num_classes: output classes (>= 2).
        variant: ``"paper"`` (96-256-384-384-256, conv2/4/5 in two groups when ``grouped``,
            paper init) or ``"torchvision"`` (64-192-384-256-256, ungrouped, torch default init).
        activation: ``"relu"`` or ``"tanh"`` for every hidden layer (conv and FC).
        lrn: paper LRN after the activations of conv1 and conv2 (``True``), none (``False``),
            or ``"gain"``: only LRN's constant small-signal gain ``k**-beta`` (:class:`LRNGain`),
            i.e. no normalisation at the baseline's signal scale; ``None`` = the variant's own
            (on for ``paper``, off for ``torchvision``, which has none).
        dropout: dropout probability (0 = off), on the outputs of fc6 and fc7 (``paper``) or on
            the inputs of fc6 and fc7 (``torchvision``).
        pooling: ``"overlapping"`` (3x3, stride 2, the paper) or ``"plain"`` (2x2, stride 2).
        width: multiplier on every conv width and on the FC hidden size (4096); each count is
            rounded to a multiple of 2 (at least 2) so the two-tower grouping stays possible.
        conv_width: extra multiplier on the conv widths only (0.5 = the paper's one-GPU net).
        stem: ``"imagenet"`` (conv1 11x11, stride 4, padding 2), ``"small"`` (conv1 5x5,
            stride 1, padding 2) or ``"auto"`` (imagenet when ``image_size >= 64``, else small).
        init: ``"paper"`` (weights N(0, 0.01); bias 1 in conv2, conv4, conv5, fc6, fc7, else 0),
            ``"torchvision"`` (torch's default init), ``"kaiming"`` (He-normal, zero bias, small
            fc8), ``"lsuv"`` (the kaiming draws, to be rescaled on data by
            :func:`alexnet_bench.lsuv.unit_variance_init`, which the trainer does) or ``"auto"``
            (the variant's own).
        grouped: paper variant only; ``groups=2`` in conv2, conv4 and conv5.
        image_size: the input size the network is built for (32-512).

    Small inputs: the feature map entering each max-pool is computed from ``image_size`` at
    construction. With ``stem="auto"`` the 11x11/4 ImageNet stem is used from 64 px up, where
    the last pool sees at least 3x3 (overlapping) or 2x2 (plain); below 64 px the 5x5/1 small
    stem keeps the full resolution into pool1 (a 32 px input reaches pool5 as 7x7 overlapping or
    8x8 plain), so every pool sees a map at least as large as its window for all sizes from
    32 px. If the
    ImageNet stem is forced on an input too small for it (below 63 px overlapping, below 35 px
    plain), each max-pool whose input would be smaller than its window is replaced by
    ``nn.Identity`` (parameter-free, so indices and ``state_dict`` are unchanged) and listed in
    ``config["skipped_pools"]``. In all cases ``AdaptiveAvgPool2d((6, 6))`` brings the last map
    to 6x6 (replicating cells of maps smaller than 6x6, as torchvision does), so fc6 always has
    ``conv5_channels * 36`` inputs.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        variant: str = "paper",
        activation: str = "relu",
        lrn: bool | str | None = None,
        dropout: float = 0.5,
        pooling: str = "overlapping",
        width: float = 1.0,
        conv_width: float = 1.0,
        stem: str = "auto",
        init: str = "auto",
        grouped: bool = True,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        _choice("variant", variant, VARIANTS)
        _choice("activation", activation, ACTIVATIONS)
        _choice("pooling", pooling, POOLINGS)
        _choice("stem", stem, STEMS)
        _choice("init", init, INITS)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if width <= 0 or conv_width <= 0:
            raise ValueError(f"width and conv_width must be > 0, got {width} and {conv_width}")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")

        stem = (
            stem if stem != "auto" else ("imagenet" if image_size >= _SMALL_STEM_BELOW else "small")
        )
        init = init if init != "auto" else variant
        lrn = (variant == "paper") if lrn is None else lrn
        if lrn not in (True, False, "gain"):
            raise ValueError(f"unknown lrn {lrn!r}; choose true, false or 'gain'")
        groups = 2 if variant == "paper" and grouped else 1
        c1, c2, c3, c4, c5 = (_even(c * width * conv_width) for c in _CHANNELS[variant])
        hidden = _even(_HIDDEN * width)
        kernel, stride = (3, 2) if pooling == "overlapping" else (2, 2)

        # Spatial size entering each pool; pools that would see a map smaller than their window
        # become Identity (only possible when the imagenet stem is forced on small inputs).
        k1, s1, p1 = (11, 4, 2) if stem == "imagenet" else (5, 1, 2)
        size = (image_size + 2 * p1 - k1) // s1 + 1
        pools: list[nn.Module] = []
        skipped: list[int] = []
        for index in POOL_INDICES:
            if size >= kernel:
                pools.append(nn.MaxPool2d(kernel, stride))
                size = _pool_out(size, kernel, stride)
            else:
                pools.append(nn.Identity())
                skipped.append(index)

        def act(with_lrn: bool | str = False) -> nn.Module:
            a = _activation(activation)
            if with_lrn == "gain":
                return nn.Sequential(a, LRNGain())
            return nn.Sequential(a, PaperLRN()) if with_lrn else a

        self.features = nn.Sequential(
            nn.Conv2d(3, c1, k1, s1, p1),
            act(lrn),
            pools[0],
            nn.Conv2d(c1, c2, 5, padding=2, groups=groups),
            act(lrn),
            pools[1],
            nn.Conv2d(c2, c3, 3, padding=1),
            act(),
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
            act(),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
            act(),
            pools[2],
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        paper = variant == "paper"

        def input_dropout() -> nn.Module:  # torchvision: dropout on the inputs of fc6 and fc7
            return nn.Identity() if paper else nn.Dropout(p=dropout)

        def fc_activation() -> nn.Module:  # paper: dropout on the outputs of fc6 and fc7
            return nn.Sequential(act(), nn.Dropout(p=dropout)) if paper else act()

        self.classifier = nn.Sequential(
            input_dropout(),
            nn.Linear(c5 * 6 * 6, hidden),
            fc_activation(),
            input_dropout(),
            nn.Linear(hidden, hidden),
            fc_activation(),
            nn.Linear(hidden, num_classes),
        )
        if init == "paper":
            self._paper_init()
        elif init in ("kaiming", "lsuv"):
            self._kaiming_init()

        self.config: dict[str, Any] = {
            "variant": variant,
            "activation": activation,
            "lrn": lrn,
            "dropout": float(dropout),
            "dropout_on": "fc6/fc7 outputs" if paper else "fc6/fc7 inputs",
            "pooling": pooling,
            "width": float(width),
            "conv_width": float(conv_width),
            "stem": stem,
            "init": init,
            "grouped": groups == 2,
            "image_size": int(image_size),
            "num_classes": int(num_classes),
            "channels": [c1, c2, c3, c4, c5],
            "hidden": hidden,
            "feature_map": size,
            "skipped_pools": skipped,
        }

    def _paper_init(self) -> None:
        """Weights N(0, 0.01); bias 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere."""
        ones = {self.features[i] for i in (3, 8, 10)} | {self.classifier[i] for i in (1, 4)}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)

    def _kaiming_init(self) -> None:
        """He-normal weights (fan-in, ReLU gain) and zero biases; fc8 weights N(0, 0.01).

        Not the paper's: at small widths and short schedules the paper's N(0, 0.01) makes the
        signal vanish through eight layers (measured: loss stays at ln(num_classes) for epochs
        on shapes10 at width 0.25), so the CPU presets use this variance-preserving init.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier[6].weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


#: the model options AlexNet takes: every key of the run schema's ``model`` section but ``arch``
_CFG_KEYS = tuple(k for k in run_schema()["properties"]["model"]["properties"] if k != "arch")


def build_model(
    model_cfg: Mapping[str, Any] | object, num_classes: int, image_size: int
) -> nn.Module:
    """Build an :class:`AlexNet` from the ``model`` config section (a mapping or an object with
    those attributes); keys that are missing take the :class:`AlexNet` defaults.

    ``arch: layers18pct`` builds the paper's Figure 1 net instead
    (:class:`~alexnet_bench.cifar_net.Layers18pct`), which uses only ``activation`` and ``init``.
    """
    get = model_cfg.get if isinstance(model_cfg, Mapping) else partial(getattr, model_cfg)
    arch = get("arch", None) or "alexnet"
    if arch == "layers18pct":
        from .cifar_net import Layers18pct

        return Layers18pct(
            num_classes,
            activation=get("activation", "relu"),
            image_size=image_size,
            init=get("init", "auto"),
        )
    if arch != "alexnet":
        raise ValueError(f"unknown model arch {arch!r}; choose alexnet or layers18pct")
    if isinstance(model_cfg, Mapping):
        unknown = sorted(set(model_cfg) - {*_CFG_KEYS, "arch"})
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {', '.join(_CFG_KEYS)}")
        options = {k: model_cfg[k] for k in _CFG_KEYS if k in model_cfg}
    else:
        options = {k: getattr(model_cfg, k) for k in _CFG_KEYS if hasattr(model_cfg, k)}
    return AlexNet(num_classes, image_size=image_size, **options)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
