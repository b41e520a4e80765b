"""Data: the embedded ``shapes10`` set, CIFAR-10 and ImageFolder sources, loaders, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import effective_stored_size
from ..errors import DataError
from .augment import BatchAugment, channel_stats, rgb_pca
from .loaders import StreamingLoader, TensorBatchLoader
from .sources import FolderSplit, decode_split, load_cifar10, scan_image_folder
from .synthetic import CLASS_NAMES, shapes10

IN_MEMORY_LIMIT_BYTES = 8 * 2**30
STATS_SAMPLE = 2000
CALIBRATION_IMAGES = 256  # fixed training images for the data-dependent init (model.init: lsuv)

__all__ = ["BatchAugment", "DataBundle", "build_data"]


def spread(total: int, count: int) -> torch.Tensor:
    """``min(count, total)`` evenly spaced indices into ``total`` items (a class-sorted folder
    then still gives every class)."""
    count = min(count, total)
    if count <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.div(torch.arange(count) * total, count, rounding_mode="floor")


@dataclass
class DataBundle:
    """Everything training needs from the data side."""

    train: TensorBatchLoader | StreamingLoader
    val: TensorBatchLoader | StreamingLoader
    train_eval: TensorBatchLoader | StreamingLoader | None  # fixed training images, in order
    augment: BatchAugment
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)
    calibration: torch.Tensor | None = None  # uint8 training images (the first ones), on the CPU

    @property
    def skipped_files(self) -> list[str]:
        skipped = set(self.info.get("skipped_at_load", []))
        for loader in (self.train, self.val):
            skipped |= getattr(loader, "skipped", set())
        return sorted(skipped)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _subset(
    images: torch.Tensor, labels: torch.Tensor, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def _load_in_memory(
    cfg: Any, stored: int
) -> tuple[tuple[torch.Tensor, ...] | None, tuple[FolderSplit, FolderSplit] | None]:
    """Decode the configured source fully into memory: ``(arrays, None)``; or, for an image
    folder too large for memory, ``(None, (train split, val split))`` to stream from.

    The run config guarantees ``data.root`` for a non-synthetic source (config.py)."""
    d = cfg.data
    if d.source == "synthetic":
        return (
            *shapes10(d.num_train, d.num_val, stored, d.num_classes),
            [],
            list(CLASS_NAMES[: d.num_classes]),
        ), None
    root = Path(d.root).expanduser()
    if not root.exists():
        raise DataError(
            f"data directory '{root}' does not exist; set data.root to an existing directory"
        )
    if d.source == "cifar10":
        tx, ty, vx, vy = load_cifar10(root)
        names = [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
        return (_resize(tx, stored), ty, _resize(vx, stored), vy, [], names), None
    train_split, val_split = scan_image_folder(root, d.val_fraction, seed=0)
    n = len(train_split.paths) + len(val_split.paths)
    stream = d.in_memory == "no" or (
        d.in_memory == "auto" and n * 3 * stored * stored > IN_MEMORY_LIMIT_BYTES
    )
    if stream:
        return None, (train_split, val_split)
    tx, ty, skipped_train = decode_split(
        train_split, stored, d.on_bad_image, workers=max(1, d.workers)
    )
    vx, vy, skipped_val = decode_split(val_split, stored, d.on_bad_image, workers=max(1, d.workers))
    return (tx, ty, vx, vy, skipped_train + skipped_val, train_split.classes), None


def build_data(cfg: Any, device: torch.device, rank: int = 0, world_size: int = 1) -> DataBundle:
    """Build loaders and the batched augmentation for run config ``cfg`` on ``device``."""
    d, a, t = cfg.data, cfg.augment, cfg.train
    stored = effective_stored_size(d.image_size, d.stored_size)
    if t.batch_size % world_size:
        raise DataError(
            f"train.batch_size={t.batch_size} is not divisible by {world_size} processes; "
            "the global batch is split evenly across them, pick a multiple"
        )
    per_rank_batch = t.batch_size // world_size
    loaded, splits = _load_in_memory(cfg, stored)
    common = {"device": device, "seed": t.seed}
    if loaded is not None:
        tx, ty, vx, vy, skipped, classes = loaded
        tx, ty = _subset(tx, ty, d.max_train)
        vx, vy = _subset(vx, vy, d.max_val)
        num_classes = len(classes)
        _check_batch(per_rank_batch, int(ty.shape[0]), world_size)
        stats_images = tx[spread(int(ty.shape[0]), STATS_SAMPLE)]
        train = TensorBatchLoader(
            tx,
            ty,
            per_rank_batch,
            shuffle=True,
            drop_last=True,
            rank=rank,
            world_size=world_size,
            **common,
        )
        val = TensorBatchLoader(
            vx, vy, cfg.eval.batch_size, shuffle=False, drop_last=False, **common
        )
        clean = spread(int(ty.shape[0]), cfg.eval.train_images)
        train_eval = (
            TensorBatchLoader(tx[clean], ty[clean], cfg.eval.batch_size, shuffle=False,
                              drop_last=False, **common)
            if len(clean) else None
        )  # fmt: skip
    else:
        assert splits is not None
        train_split, val_split = splits
        num_classes, classes, skipped = len(train_split.classes), train_split.classes, []
        _check_batch(per_rank_batch, len(train_split.paths), world_size)
        sample = train_split.paths[:: max(1, len(train_split.paths) // STATS_SAMPLE)][:STATS_SAMPLE]
        stats_images, _, _ = decode_split(
            FolderSplit(sample, [0] * len(sample)), stored, "skip", workers=max(1, d.workers)
        )
        kw = {"workers": d.workers, "on_bad_image": d.on_bad_image, **common}
        train = StreamingLoader(
            train_split,
            stored,
            per_rank_batch,
            shuffle=True,
            drop_last=True,
            rank=rank,
            world_size=world_size,
            **kw,
        )
        val = StreamingLoader(
            val_split, stored, cfg.eval.batch_size, shuffle=False, drop_last=False, **kw
        )
        clean = spread(len(train_split.paths), cfg.eval.train_images).tolist()
        subset = FolderSplit([train_split.paths[i] for i in clean],
                             [train_split.labels[i] for i in clean])  # fmt: skip
        train_eval = (
            StreamingLoader(subset, stored, cfg.eval.batch_size, shuffle=False, drop_last=False,
                            **kw)
            if clean else None
        )  # fmt: skip
    mean, std = channel_stats(stats_images.cpu())
    pca = rgb_pca(stats_images.cpu()) if a.pca_lighting else None
    augment = BatchAugment(
        d.image_size, mean, std, crop_flip=a.crop_flip, pca=pca, lighting_std=a.lighting_std
    ).to(device)
    info = {
        "source": d.source,
        "root": str(d.root) if d.root else None,
        "num_train": train.num_samples,
        "num_val": val.num_samples,
        "num_classes": num_classes,
        "classes": list(classes),
        "image_size": d.image_size,
        "stored_size": stored,
        "in_memory": loaded is not None,
        "skipped_at_load": skipped,
    }
    return DataBundle(
        train=train,
        val=val,
        train_eval=train_eval,
        augment=augment,
        num_classes=num_classes,
        info=info,
        calibration=stats_images[:CALIBRATION_IMAGES].cpu(),
    )


def _check_batch(batch_size: int, num_train: int, world_size: int) -> None:
    if batch_size * world_size > num_train:
        raise DataError(
            f"train.batch_size={batch_size * world_size} exceeds the {num_train} training "
            "images; lower train.batch_size or add data"
        )
