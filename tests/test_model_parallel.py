"""The paper's two-tower model split: exactly equal to the unsplit grouped AlexNet."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from alexnet_bench.model import AlexNet, PaperLRN
from alexnet_bench.parallel import TwoTowerAlexNet, split_supported

CPU2 = ("cpu", "cpu")


def _pair(seed: int = 0, **options) -> tuple[AlexNet, TwoTowerAlexNet]:
    torch.manual_seed(seed)
    options = {"width": 0.125, "image_size": 32, "init": "torchvision", **options}
    model = AlexNet(10, **options)
    return model, TwoTowerAlexNet(model, CPU2)


def _input(size: int, batch: int = 3, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * scale


@pytest.mark.parametrize("size", [32, 64])
def test_split_equals_unsplit(size: int) -> None:
    for activation, lrn, pooling in itertools.product(
        ["relu", "tanh"], [True, False], ["overlapping", "plain"]
    ):
        model, split = _pair(activation=activation, lrn=lrn, pooling=pooling, image_size=size)
        model.eval(), split.eval()
        # Large inputs and big tanh/relu activations make the LRN sum term matter.
        x = _input(size, scale=30.0)
        with torch.no_grad():
            expected, got = model(x), split(x)
        assert got.shape == expected.shape == (3, 10)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_split_with_paper_init_and_odd_classes() -> None:
    torch.manual_seed(0)
    model = AlexNet(7, width=0.25, image_size=48, init="paper").eval()
    split = TwoTowerAlexNet(model, CPU2).eval()
    assert [t.fc8.out_features for t in split.towers] == [4, 3]
    x = _input(48)
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x), atol=1e-5, rtol=1e-5)


def test_lrn_halo_is_needed_and_exact() -> None:
    """Per-tower LRN (no halo) differs from the unsplit LRN at the tower boundary; the halo fixes it."""
    _, split = _pair()
    a = torch.randn(2, 12, 3, 3) * 30
    full = PaperLRN()(a)
    na, nb = split._lrn(a[:, :6], a[:, 6:])
    torch.testing.assert_close(torch.cat([na, nb], 1), full, atol=1e-6, rtol=1e-6)
    naive = torch.cat([PaperLRN()(a[:, :6]), PaperLRN()(a[:, 6:])], 1)
    assert not torch.allclose(naive[:, 4:8], full[:, 4:8], atol=1e-4)  # boundary channels
    torch.testing.assert_close(naive[:, :4], full[:, :4])  # away from the boundary: same


def test_weights_split_into_halves() -> None:
    model, split = _pair()
    ta, tb = split.towers
    c1, c2, c3, c4, c5 = model.config["channels"]
    assert (ta.conv1.out_channels, tb.conv1.out_channels) == (c1 // 2, c1 // 2)
    assert ta.conv2.in_channels == c1 // 2 and ta.conv3.in_channels == c2  # conv3 sees both towers
    assert ta.conv4.in_channels == c3 // 2 and ta.conv5.in_channels == c4 // 2
    assert ta.fc6.in_features == c5 * 36 and ta.fc6.out_features == model.config["hidden"] // 2
    assert all(m.groups == 1 for t in split.towers for m in t.modules() if isinstance(m, nn.Conv2d))
    merged = split.merged_state_dict()
    reference = model.state_dict()
    assert merged.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value, atol=0, rtol=0)
    # Copies, not views: the unsplit model is left untouched by training the split.
    with torch.no_grad():
        ta.conv1.weight.add_(1.0)
    assert not torch.equal(
        split.merged_state_dict()["features.0.weight"], reference["features.0.weight"]
    )
    assert count(split) == count(model)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_sgd_step_matches_unsplit(activation: str) -> None:
    model, split = _pair(activation=activation, dropout=0.0, image_size=48, width=0.25)
    model.train(), split.train()
    x, y = _input(48, batch=4, scale=5.0), torch.tensor([0, 3, 7, 9])
    for net in (model, split):
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in split.parameters())
    merged, reference = split.merged_state_dict(), model.state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x), atol=1e-5, rtol=1e-4)


def test_dropout_in_train_mode_runs() -> None:
    _, split = _pair(dropout=0.5)
    out = split.train()(_input(32))
    out.sum().backward()
    assert out.shape == (3, 10)


def test_split_supported_and_errors() -> None:
    grouped = AlexNet(10, width=0.125, image_size=32)
    assert split_supported(grouped)
    assert not split_supported(AlexNet(10, width=0.125, image_size=32, grouped=False))
    assert not split_supported(AlexNet(10, width=0.125, image_size=32, variant="torchvision"))
    assert not split_supported(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="grouped=True"):
        TwoTowerAlexNet(AlexNet(10, width=0.125, image_size=32, grouped=False), CPU2)
    with pytest.raises(ValueError, match="variant='torchvision'"):
        TwoTowerAlexNet(AlexNet(10, width=0.125, image_size=32, variant="torchvision"), CPU2)
    with pytest.raises(ValueError, match="exactly 2 devices"):
        TwoTowerAlexNet(grouped, ["cpu"])
    split = TwoTowerAlexNet(grouped, CPU2)
    assert split.config["parallel"] == "model" and split.config["devices"] == ["cpu", "cpu"]


def _cuda_check(devices: tuple[str, str]) -> None:
    model, _ = _pair(lrn=True, dropout=0.0, image_size=64, width=0.25)
    model.eval()
    split = TwoTowerAlexNet(model, devices).eval()
    ta, tb = split.towers
    assert ta.conv1.weight.device == torch.device(devices[0])
    assert tb.conv1.weight.device == torch.device(devices[1])
    x = _input(64, scale=30.0)
    with torch.no_grad():
        expected = model(x)
        got = split(x.to(devices[0]))
    assert got.device == torch.device(devices[0])
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)
    split.train()
    split(x).sum().backward()
    assert all(p.grad is not None for p in split.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_two_gpus() -> None:
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    _cuda_check(("cuda:0", "cuda:1"))


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA device")
def test_both_towers_on_one_gpu() -> None:
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    _cuda_check(("cuda:0", "cuda:0"))
