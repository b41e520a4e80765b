"""Data: the embedded ``shapes10`` set, CIFAR-10 and ImageFolder sources, loaders, augmentation.

:func:`build_data` opens a run's data (:mod:`.opening`: from its source to where its images
are, :mod:`.placement`), checks it is the data the job was planned for, and builds the loaders
and the batched augmentation fitted to the training images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import effective_stored_size
from ..errors import DataError
from ..identity import DataIdentity, check_data
from .augment import BatchAugment, channel_stats, rgb_pca
from .loaders import TensorBatchLoader
from .opening import Opened, open_data
from .placement import Loader, LoaderPlan, spread
from .store import ImageStore

log = logging.getLogger(__name__)

STATS_SAMPLE = 2000
CALIBRATION_IMAGES = 256  # fixed training images for the data-dependent init (model.init: lsuv)

__all__ = ["BatchAugment", "DataBundle", "DataOptions", "build_data", "spread"]


@dataclass(frozen=True)
class DataOptions:
    """How a job reads its data beyond the run config: ``expect`` = the data identity it was
    planned for (other data fails); ``rebuild_missing`` = build a prepared store missing from
    the cache instead of failing (the workflow's cells)."""

    expect: DataIdentity = None
    rebuild_missing: bool = False


@dataclass
class DataBundle:
    """Everything training needs from the data side."""

    train: Loader
    val: Loader
    train_eval: Loader | None  # fixed training images, in order
    augment: BatchAugment
    num_classes: int
    info: dict[str, Any] = field(default_factory=dict)
    calibration: torch.Tensor | None = None  # uint8 training images (the first ones), on the CPU
    stores: list[ImageStore] = field(default_factory=list)  # prepared stores read (leased)

    def close(self) -> None:
        """Release the prepared stores this run reads (their leases)."""
        for store in self.stores:
            store.close()
        self.stores.clear()

    @property
    def skipped_files(self) -> list[str]:
        skipped = set(self.info.get("skipped_at_load", []))
        for loader in (self.train, self.val):
            skipped |= getattr(loader, "skipped", set())
        return sorted(skipped)


def build_data(
    cfg: Any,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    *,
    expect: DataIdentity = None,
    rebuild_missing: bool = False,
) -> DataBundle:
    """Build loaders and the batched augmentation for run config ``cfg`` on ``device``.

    ``expect``: the data identity the job was planned for (the workflow's); other data is a
    one-line :class:`DataError`. ``rebuild_missing``: build a prepared store that is missing
    from the cache instead of failing (the workflow's cells)."""
    d, t = cfg.data, cfg.train
    stored = effective_stored_size(d.image_size, d.stored_size)
    if t.batch_size % world_size:
        raise DataError(
            f"train.batch_size={t.batch_size} is not divisible by {world_size} processes; "
            "the global batch is split evenly across them, pick a multiple"
        )
    plan = LoaderPlan(
        batch=t.batch_size // world_size,
        eval_batch=cfg.eval.batch_size,
        clean_images=cfg.eval.train_images,
        device=device,
        seed=t.seed,
        rank=rank,
        world_size=world_size,
        workers=d.workers,
        on_bad_image=d.on_bad_image,
        stored=stored,
        max_train=d.max_train,
        max_val=d.max_val,
    )
    opened = open_data(cfg, stored, rebuild_missing, expect)
    try:
        check_data(opened.identity, expect)
        return _bundle(cfg, plan, opened)
    except BaseException:
        opened.close()
        raise


def _bundle(cfg: Any, plan: LoaderPlan, opened: Opened) -> DataBundle:
    """The loaders over ``opened`` and the augmentation fitted to its training images."""
    d, a = cfg.data, cfg.augment
    _check_batch(plan.batch, opened.images.num_train(plan), plan.world_size)
    stats_images = opened.images.sample(plan, STATS_SAMPLE)
    train, val, train_eval = opened.images.loaders(plan)
    mean, std = channel_stats(stats_images.cpu())
    if d.normalise == "mean":  # x - mean on the 0-255 scale: (x/255 - mean) / (1/255)
        std = torch.full_like(std, 1.0 / 255.0)
    pca = rgb_pca(stats_images.cpu()) if a.pca_lighting else None
    augment = BatchAugment(
        d.image_size, mean, std, crop_flip=a.crop_flip, pca=pca, lighting_std=a.lighting_std
    ).to(plan.device)
    info = {
        "source": d.source,
        "root": str(d.root) if d.root else None,
        "num_train": train.num_samples,
        "num_val": val.num_samples,
        "num_classes": len(opened.classes),
        "classes": list(opened.classes),
        "image_size": d.image_size,
        "stored_size": plan.stored,
        "in_memory": isinstance(train, TensorBatchLoader),
        "prepared_cache": opened.prepared,
        "prepared_stores": {s.manifest["split"]: str(s.path) for s in opened.read_stores},
        "prepared_format": opened.prepared_format,
        "identity": opened.identity,
        "ignored_files": opened.ignored,
        "skipped_at_load": opened.skipped,
    }
    return DataBundle(
        train=train,
        val=val,
        train_eval=train_eval,
        augment=augment,
        num_classes=len(opened.classes),
        info=info,
        calibration=stats_images[:CALIBRATION_IMAGES].cpu(),
        stores=opened.leased,
    )


def _check_batch(batch_size: int, num_train: int, world_size: int) -> None:
    if batch_size * world_size > num_train:
        raise DataError(
            f"train.batch_size={batch_size * world_size} exceeds the {num_train} training "
            "images; lower train.batch_size or add data"
        )
