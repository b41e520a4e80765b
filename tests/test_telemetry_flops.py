"""FLOP counts against hand-computed numbers; peak table, measured peak and MFU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alexnet_bench.telemetry import flops
from alexnet_bench.telemetry.flops import (
    device_peak_flops,
    forward_flops_per_image,
    mfu,
    train_flops_per_image,
)


def conv_macs(out_ch: int, out_hw: int, in_ch: int, k: int) -> int:
    return out_ch * out_hw * out_hw * in_ch * k * k


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 8x8 -> 8x8
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 4x4
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(6 * 4 * 4, 5),
    )


def test_tiny_net_matches_hand_count() -> None:
    c1 = conv_macs(4, 8, 3, 3)  # 6912
    c2 = conv_macs(6, 8, 4, 3)  # 13824
    fc = 96 * 5
    forward = 2 * (c1 + c2 + fc)
    # backward = 2x forward (input + weight gradients), except the first conv: weight only
    train = 2 * (2 * c1 + 3 * c2 + 3 * fc)
    model = tiny_net()
    assert forward_flops_per_image(model, 8) == forward == 42_432
    assert train_flops_per_image(model, 8) == train == 113_472


def test_counting_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout())
    model.add_module("fc", nn.Linear(4 * 6 * 6, 3))
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    conv_w = model[0].weight
    conv_w.grad = torch.full_like(conv_w, 7.0)
    rng = torch.get_rng_state()
    train_flops_per_image(model, 8)
    forward_flops_per_image(model, 8)
    assert not model.training and not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():  # weights and BN running stats unchanged
        assert torch.equal(v, weights[k]), k
    assert conv_w.grad is not None and torch.all(conv_w.grad == 7.0)
    assert model.fc.weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)


def test_torchvision_alexnet_at_64px() -> None:
    from torchvision.models import alexnet

    # 64 px: conv1 11/4 p2 -> 15, pool -> 7, conv2 -> 7, pool -> 3, conv3-5 -> 3, pool -> 1,
    # adaptive avg-pool -> 6x6 (replicated), then the 9216-4096-4096-1000 classifier.
    first = conv_macs(64, 15, 3, 11)
    rest = (
        conv_macs(192, 7, 64, 5)
        + conv_macs(384, 3, 192, 3)
        + conv_macs(256, 3, 384, 3)
        + conv_macs(256, 3, 256, 3)
        + 256 * 6 * 6 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )
    model = alexnet()
    assert forward_flops_per_image(model, 64) == 2 * (first + rest)
    assert train_flops_per_image(model, 64) == 2 * (2 * first + 3 * rest)


@pytest.mark.parametrize(
    ("name", "dtype", "tf32", "peak", "key"),
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, True, 989e12, "bf16"),
        ("NVIDIA H100 80GB HBM3", torch.float32, False, 66.9e12, "fp32"),
        ("NVIDIA H100 80GB HBM3", torch.float32, True, 494.5e12, "tf32"),
        ("NVIDIA H100 PCIe", torch.bfloat16, False, 756e12, "bf16"),
        ("NVIDIA H100 PCIe", torch.float32, False, 51.2e12, "fp32"),
        ("NVIDIA H200", torch.bfloat16, False, 989e12, "bf16"),
        ("NVIDIA A100-SXM4-80GB", torch.float32, True, 156e12, "tf32"),
        ("NVIDIA A100-SXM4-80GB", torch.float16, False, 312e12, "fp16"),
    ],
)
def test_gpu_spec_table(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    dtype: torch.dtype,
    tf32: bool,
    peak: float,
    key: str,
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(flops, "_tf32_enabled", lambda: tf32)
    p = device_peak_flops(torch.device("cuda", 0), dtype)
    assert p == {
        "peak_flops": peak,
        "source": f"spec-table:{name}",
        "dtype": key,
        "note": "spec sheet, dense, no sparsity",
    }


def test_cpu_peak_is_measured_and_cached() -> None:
    p = device_peak_flops(torch.device("cpu"))
    assert p["source"] == "measured-matmul" and p["dtype"] == "fp32"
    assert 1e8 < p["peak_flops"] < 1e14
    assert device_peak_flops(torch.device("cpu")) == p  # cached per process


def test_mfu() -> None:
    assert mfu(25e12, 100e12) == 0.25
    with pytest.raises(ValueError):
        mfu(1.0, 0.0)
