"""Data: shapes10 determinism, real loaders on generated directories, augmentation statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet_bench.config import RunConfig
from alexnet_bench.data import build_data
from alexnet_bench.data.augment import BatchAugment, rgb_pca
from alexnet_bench.data.loaders import TensorBatchLoader
from alexnet_bench.data.sources import load_cifar10
from alexnet_bench.data.synthetic import generate_shapes, shapes10
from alexnet_bench.errors import DataError
from alexnet_bench.imagefolder import scan_tree

from .conftest import tiny_run

CPU = torch.device("cpu")


def test_shapes10_is_deterministic_balanced_and_disjoint() -> None:
    a_x, a_y, v_x, _ = shapes10(200, 50, 37)
    b_x, b_y = generate_shapes(200, 37, seed=2012)
    assert a_x.dtype == torch.uint8 and a_x.shape == (200, 3, 37, 37)
    assert torch.equal(a_x, b_x) and torch.equal(a_y, b_y)
    assert torch.bincount(a_y).tolist() == [20] * 10
    assert not torch.equal(a_x[:50], v_x)
    # colour is not a class cue: the per-class mean colours are close to each other
    means = torch.stack([a_x[a_y == c].float().mean(dim=(0, 2, 3)) for c in range(10)])
    assert (means.max(0).values - means.min(0).values).max() < 60


def test_image_folder_split_and_decode(image_folder: Path) -> None:
    scan = scan_tree(image_folder, val_fraction=0.34)
    train, val = scan.train, scan.val
    assert train.classes == ["cat", "dog", "fox"]
    assert len(val.paths) == 6 and len(train.paths) == 12  # 2 of 6 per class held out
    assert not set(train.paths) & set(val.paths)
    cfg = RunConfig(
        tiny_run(
            data={"source": "imagefolder", "root": str(image_folder), "val_fraction": 0.34},
            train={"batch_size": 4},
        )
    )
    bundle = build_data(cfg, CPU)
    assert bundle.num_classes == 3 and bundle.info["num_train"] == 12
    x, y = next(iter(bundle.train))
    assert x.shape == (4, 3, 37, 37) and x.dtype == torch.uint8


def test_image_folder_streaming_matches_in_memory(image_folder: Path) -> None:
    base = tiny_run(
        data={"source": "imagefolder", "root": str(image_folder)}, train={"batch_size": 4}
    )
    mem = build_data(RunConfig(base), CPU)
    base["data"]["in_memory"] = "no"
    stream = build_data(RunConfig(base), CPU)
    assert stream.info["in_memory"] is False
    mem_val = torch.cat([x for x, _ in mem.val])
    stream_val = torch.cat([x for x, _ in stream.val])
    assert torch.equal(mem_val, stream_val)


def test_corrupt_image_fails_or_is_skipped_and_counted(image_folder: Path) -> None:
    (image_folder / "dog" / "broken.jpg").write_bytes(b"not an image at all")
    run = tiny_run(
        data={"source": "imagefolder", "root": str(image_folder), "val_fraction": 0.2},
        train={"batch_size": 4},
    )
    with pytest.raises(DataError, match=r"broken\.jpg.*on_bad_image: skip"):
        build_data(RunConfig(run), CPU)
    run["data"]["on_bad_image"] = "skip"
    bundle = build_data(RunConfig(run), CPU)
    assert [Path(p).name for p in bundle.skipped_files] == ["broken.jpg"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "holds no images"),
    ],
)
def test_bad_data_directories(tmp_path: Path, setup, message: str) -> None:
    root = setup(tmp_path)
    cfg = RunConfig(tiny_run(data={"source": "imagefolder", "root": str(root)}))
    with pytest.raises(DataError, match=message):
        build_data(cfg, CPU)


def test_single_class_directory_is_rejected(image_folder: Path) -> None:
    for name in ("dog", "fox"):
        for f in (image_folder / name).iterdir():
            f.unlink()
    cfg = RunConfig(tiny_run(data={"source": "imagefolder", "root": str(image_folder)}))
    with pytest.raises(DataError, match="at least 2"):
        build_data(cfg, CPU)


def test_cifar10_loader(cifar_dir: Path) -> None:
    tx, ty, vx, vy = load_cifar10(cifar_dir.parent)  # parent holding cifar-10-batches-py works too
    assert tx.shape == (100, 3, 32, 32) and vx.shape == (10, 3, 32, 32)
    assert ty.dtype == torch.int64 and int(ty.max()) < 10
    cfg = RunConfig(
        tiny_run(
            data={"source": "cifar10", "root": str(cifar_dir), "image_size": 32, "stored_size": 36},
            train={"batch_size": 10},
        )
    )
    bundle = build_data(cfg, CPU)
    assert bundle.info["num_train"] == 100 and next(iter(bundle.train))[0].shape == (10, 3, 36, 36)
    with pytest.raises(DataError, match="no CIFAR-10 batches"):
        load_cifar10(cifar_dir / "nowhere")


def test_ddp_ranks_split_the_global_batch() -> None:
    cfg = RunConfig(tiny_run(train={"batch_size": 32}))
    ranks = [build_data(cfg, CPU, rank=r, world_size=2).train for r in (0, 1)]
    assert [loader.batch_size for loader in ranks] == [16, 16]
    assert len(ranks[0]) == len(build_data(cfg, CPU).train) == 5
    with pytest.raises(DataError, match="not divisible by 3"):
        build_data(cfg, CPU, rank=0, world_size=3)


def test_loader_shards_are_disjoint_and_resumable() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).contiguous()
    labels = torch.arange(40)

    def epoch_labels(rank: int, world: int, epoch: int) -> list[int]:
        loader = TensorBatchLoader(
            images,
            labels,
            5,
            device=CPU,
            shuffle=True,
            drop_last=True,
            seed=3,
            rank=rank,
            world_size=world,
        )
        loader.set_epoch(epoch)
        return [int(v) for _, y in loader for v in y]

    r0, r1 = epoch_labels(0, 2, 1), epoch_labels(1, 2, 1)
    assert not set(r0) & set(r1) and len(r0) == len(r1) == 20
    # step b of the two ranks together is exactly step b of one process with the global batch
    whole = TensorBatchLoader(images, labels, 10, device=CPU, shuffle=True, drop_last=True, seed=3)
    whole.set_epoch(1)
    for b, (_, y) in enumerate(whole):
        assert sorted(y.tolist()) == sorted(r0[5 * b : 5 * b + 5] + r1[5 * b : 5 * b + 5])
    assert epoch_labels(0, 1, 4) == epoch_labels(0, 1, 4) != epoch_labels(0, 1, 5)


def test_batch_augment_crops_flips_and_centre() -> None:
    x = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8)
    aug = BatchAugment(8, torch.zeros(3), torch.ones(3), crop_flip=True)
    centre = aug(x, train=False)
    assert torch.allclose(centre, x[:, :, 1:9, 1:9].float() / 255)
    gen = torch.Generator().manual_seed(0)
    out = aug(x, train=True, generator=gen)
    assert out.shape == (8, 3, 8, 8)
    for i in range(8):  # every output is some crop of its own image, possibly mirrored
        candidates = [
            x[i, :, t : t + 8, l : l + 8].float() / 255 for t in range(3) for l in range(3)
        ]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)
    tens = aug.ten_crop(x)
    assert tens.shape == (10, 8, 3, 8, 8) and torch.equal(tens[5], tens[0].flip(-1))


def test_pca_lighting_shift_has_scaled_data_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 3, generator=gen)
    pixels = (torch.randn(20000, 3, generator=gen) @ base * 20 + 128).clamp(0, 255).to(torch.uint8)
    images = pixels.view(20000, 3, 1, 1)
    eigval, eigvec = rgb_pca(images)
    cov = torch.cov((pixels.double() / 255).T).float()
    assert torch.allclose(eigvec @ torch.diag(eigval) @ eigvec.T, cov, atol=1e-6)
    # the per-image colour shift has covariance lighting_std^2 * cov and is constant over pixels
    aug = BatchAugment(
        4, torch.zeros(3), torch.ones(3), crop_flip=False, pca=(eigval, eigvec), lighting_std=0.1
    )
    flat = torch.full((4000, 3, 4, 4), 128, dtype=torch.uint8)
    shifted = aug(flat, train=True, generator=torch.Generator().manual_seed(1)) - 128 / 255
    assert torch.allclose(shifted, shifted[:, :, :1, :1].expand_as(shifted), atol=1e-6)
    shift_cov = torch.cov(shifted[:, :, 0, 0].T.double()).float()
    assert torch.allclose(shift_cov, 0.01 * cov, rtol=0.15, atol=2e-6)
    assert torch.allclose(aug(flat, train=False), torch.full((4000, 3, 4, 4), 128 / 255))
