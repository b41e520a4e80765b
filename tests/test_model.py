"""AlexNet model: ablation shapes, parameter counts, paper LRN, torchvision compatibility, init."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from alexnet_bench.model import (
    CONV_INDICES,
    FC_INDICES,
    AlexNet,
    PaperLRN,
    build_model,
    count_parameters,
)

SIZES = [32, 48, 64, 96, 128, 224]


def _out(model: nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(batch, 3, size, size))


# -- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64, 224])
@pytest.mark.parametrize("variant", ["paper", "torchvision"])
@pytest.mark.parametrize("stem", ["auto", "imagenet", "small"])
def test_output_shape_every_ablation(size: int, variant: str, stem: str) -> None:
    for activation, lrn, dropout, pooling in itertools.product(
        ["relu", "tanh"], [True, False], [0.0, 0.5], ["overlapping", "plain"]
    ):
        model = AlexNet(
            7,
            variant=variant,
            activation=activation,
            lrn=lrn,
            dropout=dropout,
            pooling=pooling,
            stem=stem,
            width=0.25,
            image_size=size,
        ).train()
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("pooling", ["overlapping", "plain"])
@pytest.mark.parametrize("stem", ["auto", "imagenet", "small"])
def test_every_pool_and_stem_at_every_size(pooling: str, stem: str) -> None:
    for size in SIZES:
        model = AlexNet(3, pooling=pooling, stem=stem, width=0.125, image_size=size).eval()
        sizes_in: list[int] = []
        hooks = [
            model.features[i].register_forward_hook(
                lambda _m, inp, _o, seen=sizes_in: seen.append(inp[0].shape[-1])
            )
            for i in (2, 5, 12)
        ]
        assert _out(model, size).shape == (2, 3)
        for h in hooks:
            h.remove()
        kernel = 3 if pooling == "overlapping" else 2
        for index, seen in zip((2, 5, 12), sizes_in, strict=True):
            if index in model.config["skipped_pools"]:
                assert isinstance(model.features[index], nn.Identity) and seen < kernel
            else:
                assert isinstance(model.features[index], nn.MaxPool2d) and seen >= kernel
        assert model.classifier[1].in_features == model.config["channels"][4] * 36


def test_auto_stem_never_skips_a_pool() -> None:
    for pooling in ("overlapping", "plain"):
        for size in range(32, 257):
            cfg = AlexNet(3, pooling=pooling, width=0.0625, image_size=size).config
            assert cfg["stem"] == ("imagenet" if size >= 64 else "small")
            assert cfg["skipped_pools"] == []
    # Forcing the ImageNet stem at 32 px: torchvision would crash; we skip the too-small pools.
    cfg = AlexNet(3, stem="imagenet", width=0.0625, image_size=32).config
    assert cfg["skipped_pools"] == [12]


def test_width_rounding_and_fc6_input() -> None:
    model = AlexNet(10, width=0.1, image_size=32)
    assert model.config["channels"] == [10, 26, 38, 38, 26]
    assert model.config["hidden"] == 410
    assert model.classifier[1].in_features == 26 * 36
    tiny = AlexNet(2, width=0.001, image_size=32)
    assert tiny.config["channels"] == [2] * 5 and tiny.config["hidden"] == 4
    assert _out(tiny.eval(), 32).shape == (2, 2)
    half = AlexNet(10, conv_width=0.5, image_size=32)
    assert half.config["channels"] == [48, 128, 192, 192, 128] and half.config["hidden"] == 4096


# -- parameter counts ---------------------------------------------------------------------------
def test_parameter_counts() -> None:
    assert count_parameters(AlexNet(variant="torchvision", stem="imagenet")) == 61_100_840
    assert count_parameters(AlexNet(variant="paper", stem="imagenet")) == 60_965_224
    assert count_parameters(AlexNet(variant="paper", grouped=False)) == 62_378_344
    assert count_parameters(torchvision.models.alexnet(weights=None)) == 61_100_840
    # Parameter-free switches never change the count.
    assert count_parameters(AlexNet(lrn=False, dropout=0, activation="tanh", pooling="plain")) == (
        60_965_224
    )


# -- LRN ----------------------------------------------------------------------------------------
def _lrn_loop(a: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """The paper's equation, written out literally."""
    out = torch.empty_like(a)
    channels = a.shape[1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha * s) ** beta
    return out


def test_paper_lrn_matches_equation() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 11, 4, 5, dtype=torch.float64) * 40  # large enough for LRN to matter
    expected = _lrn_loop(a)
    assert torch.allclose(PaperLRN()(a), expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(a / 2**0.75, expected, rtol=1e-3)  # the sum term is not negligible
    # Other hyper-parameters and odd sizes too.
    got = PaperLRN(size=3, alpha=1e-3, beta=0.5, k=1.0)(a)
    assert torch.allclose(got, _lrn_loop(a, 3, 1e-3, 0.5, 1.0), rtol=1e-10, atol=1e-12)


def test_paper_lrn_gradients_and_memory_format() -> None:
    """The shifted-slice window sum: exact gradients (both beta paths) and channels_last input."""
    torch.manual_seed(0)
    a = (torch.randn(2, 7, 3, 4, dtype=torch.float64) * 40).requires_grad_()
    for lrn in (PaperLRN(), PaperLRN(size=3, alpha=1e-3, beta=0.5, k=1.0)):
        assert torch.autograd.gradcheck(lrn, (a,))
    x = torch.randn(4, 16, 9, 9) * 30
    plain = PaperLRN()(x)
    last = PaperLRN()(x.to(memory_format=torch.channels_last))
    assert torch.allclose(last, plain, rtol=1e-6, atol=1e-6)
    # bf16 input (autocast): computed in fp32, so the small window term is not rounded away
    half = PaperLRN()(x.bfloat16().requires_grad_())
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), PaperLRN()(x.bfloat16().float()), rtol=1e-2)
    half.sum().backward()
    # the same as torch's LRN with alpha scaled by n (fp32 tolerance)
    reference = nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)(x)
    assert torch.allclose(plain, reference, rtol=1e-5, atol=1e-6)


def test_torch_local_response_norm_pitfall() -> None:
    """torch.nn.LocalResponseNorm divides alpha by n; with the paper's alpha it is not the paper's LRN."""
    torch.manual_seed(0)
    a = torch.randn(2, 11, 4, 5, dtype=torch.float64) * 40
    expected = _lrn_loop(a)
    torch_lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert not torch.allclose(torch_lrn, expected, rtol=1e-3)
    fixed = nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)(a)
    assert torch.allclose(fixed, expected, rtol=1e-10, atol=1e-12)


def test_lrn_position() -> None:
    model = AlexNet(10, lrn=True, width=0.125, image_size=32)
    for i in (1, 4):
        slot = model.features[i]
        assert isinstance(slot, nn.Sequential)
        assert isinstance(slot[0], nn.ReLU) and isinstance(slot[1], PaperLRN)
    no_lrn = AlexNet(10, lrn=False, width=0.125, image_size=32)
    assert not any(isinstance(m, PaperLRN) for m in no_lrn.modules())
    tanh = AlexNet(10, activation="tanh", width=0.125, image_size=32)
    assert all(isinstance(tanh.features[i], nn.Tanh) for i in (7, 9, 11))
    assert all(isinstance(tanh.classifier[i][0], nn.Tanh) for i in (2, 5))


# -- torchvision compatibility ------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"lrn": True, "activation": "tanh", "dropout": 0.0, "pooling": "plain"},
        {"lrn": True, "dropout": 0.3, "init": "paper"},
    ],
)
def test_torchvision_state_dict_keys(options: dict) -> None:
    ours = AlexNet(1000, variant="torchvision", stem="imagenet", **options).state_dict()
    theirs = torchvision.models.alexnet(weights=None).state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)
    conv_keys = {f"features.{i}.weight" for i in CONV_INDICES}
    fc_keys = {f"classifier.{i}.weight" for i in FC_INDICES}
    assert conv_keys | fc_keys <= set(theirs)


def test_torchvision_variant_alone_is_torchvision_alexnet() -> None:
    """model.variant: torchvision with no other option (schema defaults filled in) computes
    exactly torchvision.models.alexnet: same keys and shapes, same logits after a strict load."""
    from alexnet_bench.config import RunConfig
    from alexnet_bench.model import build_model

    cfg = RunConfig({"model": {"variant": "torchvision"}})
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = build_model(cfg.model, 1000, 224).eval()
    assert ours.config["lrn"] is False and ours.config["init"] == "torchvision"
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
    # the same in train mode with the same dropout draws
    ours.train(), reference.train()
    torch.manual_seed(1)
    a = ours(x)
    torch.manual_seed(1)
    b = reference(x)
    assert torch.equal(a, b)


def test_torchvision_checkpoint_gives_same_logits() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = AlexNet(1000, variant="torchvision", lrn=False, stem="imagenet").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-6, rtol=1e-5)


# -- initialisation -----------------------------------------------------------------------------
def test_paper_init_statistics() -> None:
    torch.manual_seed(0)
    model = AlexNet(1000, variant="paper", image_size=224)
    layers = [model.features[i] for i in CONV_INDICES] + [model.classifier[i] for i in FC_INDICES]
    expected_bias = [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # conv1..conv5, fc6, fc7, fc8
    for layer, bias in zip(layers, expected_bias, strict=True):
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 2e-3
        assert w.std().item() == pytest.approx(0.01, rel=0.05)
        assert torch.all(layer.bias == bias)
    assert model.config["init"] == "paper"


def test_init_auto_and_forced() -> None:
    torch.manual_seed(0)
    tv = AlexNet(10, variant="torchvision", width=0.25, image_size=32)
    assert tv.config["init"] == "torchvision"
    assert tv.features[0].weight.std().item() > 0.03  # torch default (1/sqrt(fan_in)), not 0.01
    assert not torch.all(tv.features[3].bias == 1)
    forced = AlexNet(10, variant="torchvision", init="paper", width=0.25, image_size=32)
    assert torch.all(forced.features[3].bias == 1)
    assert forced.features[0].weight.std().item() == pytest.approx(0.01, rel=0.1)
    default_paper = AlexNet(10, variant="paper", init="torchvision", width=0.25, image_size=32)
    assert not torch.all(default_paper.features[3].bias == 1)


# -- options and errors -------------------------------------------------------------------------
def test_grouping() -> None:
    grouped = AlexNet(10, width=0.125, image_size=32)
    assert [grouped.features[i].groups for i in CONV_INDICES] == [1, 2, 1, 2, 2]
    plain = AlexNet(10, grouped=False, width=0.125, image_size=32)
    assert all(plain.features[i].groups == 1 for i in CONV_INDICES)
    tv = AlexNet(
        10, variant="torchvision", grouped=True, width=0.125, image_size=32
    )  # grouping: paper only
    assert all(tv.features[i].groups == 1 for i in CONV_INDICES)


def test_dropout_modules_kept_at_zero() -> None:
    model = AlexNet(10, dropout=0.0, width=0.125, image_size=32)
    assert [model.classifier[i][1].p for i in (2, 5)] == [0.0, 0.0]
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)


def test_dropout_placement_follows_each_reference() -> None:
    """paper: dropout on the outputs of fc6/fc7 (Caffe drop6/drop7 after relu6/relu7);
    torchvision: dropout on the inputs of fc6/fc7 (pool5 and fc6 outputs)."""
    paper = AlexNet(10, width=0.125, image_size=32)
    layout = [type(m).__name__ for m in paper.classifier]
    assert layout == [
        "Identity",
        "Linear",
        "Sequential",
        "Identity",
        "Linear",
        "Sequential",
        "Linear",
    ]
    assert [type(m).__name__ for m in paper.classifier[2]] == ["ReLU", "Dropout"]
    assert paper.config["dropout_on"] == "fc6/fc7 outputs"
    tv = AlexNet(10, variant="torchvision", width=0.125, image_size=32)
    assert [type(m).__name__ for m in tv.classifier] == [
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert tv.config["dropout_on"] == "fc6/fc7 inputs"
    # in train mode, zeroing dropout's input of fc8 is what the paper variant does: dropping
    # fc7's outputs changes fc8's input; torchvision never drops fc8's input
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    paper.train()
    seen = {}
    paper.classifier[6].register_forward_hook(lambda m, i, o: seen.update(fc8_in=i[0]))
    paper(x)
    assert (seen["fc8_in"] == 0).float().mean() > 0.4  # ReLU zeros plus ~half dropped


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activation": "sigmoid"}, "unknown activation 'sigmoid'; choose relu or tanh"),
        ({"variant": "vgg"}, "unknown variant 'vgg'; choose paper or torchvision"),
        ({"pooling": "avg"}, "unknown pooling 'avg'; choose overlapping or plain"),
        ({"stem": "tiny"}, "unknown stem 'tiny'; choose auto, imagenet or small"),
        (
            {"init": "xavier"},
            "unknown init 'xavier'; choose auto, paper, torchvision, kaiming or lsuv",
        ),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"width": 0}, "width and conv_width must be > 0"),
    ],
)
def test_invalid_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        AlexNet(10, **options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_num_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        AlexNet(1)


# -- build_model --------------------------------------------------------------------------------
CFG = {
    "variant": "paper",
    "activation": "tanh",
    "lrn": False,
    "dropout": 0.25,
    "pooling": "plain",
    "width": 0.25,
    "conv_width": 1.0,
    "stem": "auto",
    "init": "auto",
    "grouped": False,
}


def test_build_model_from_dict_and_object() -> None:
    from_dict = build_model(CFG, num_classes=10, image_size=32)
    from_obj = build_model(SimpleNamespace(**CFG), num_classes=10, image_size=32)
    for model in (from_dict, from_obj):
        assert isinstance(model, AlexNet)
        cfg = model.config
        assert cfg["activation"] == "tanh" and cfg["lrn"] is False and cfg["pooling"] == "plain"
        assert cfg["stem"] == "small" and cfg["init"] == "paper" and cfg["grouped"] is False
        assert cfg["dropout"] == 0.25 and cfg["image_size"] == 32 and cfg["num_classes"] == 10
        assert model.classifier[-1].out_features == 10
    assert from_dict.config == from_obj.config
    assert build_model({}, 5, 224).config["stem"] == "imagenet"
    with pytest.raises(ValueError, match="unknown model option"):
        build_model({"lrm": True}, 10, 32)


def test_build_model_from_run_config() -> None:
    from alexnet_bench.config import RunConfig

    cfg = RunConfig({"model": {"width": 0.125, "activation": "tanh"}})
    model = build_model(cfg.model, 10, 32)
    assert model.config["activation"] == "tanh" and model.config["channels"][0] == 12
    assert build_model(cfg.raw["model"], 10, 32).config == model.config
