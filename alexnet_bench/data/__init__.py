"""Data: the embedded ``shapes10`` set, CIFAR-10 and ImageFolder sources, loaders, augmentation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import effective_stored_size
from ..errors import DataError
from ..identity import DataIdentity, check_data, cifar10_identity, store_identity, tree_identity
from ..imagefolder import FolderSplit, scan_tree, store_dir
from .augment import BatchAugment, channel_stats, rgb_pca
from .loaders import MappedBatchLoader, StreamingLoader, TensorBatchLoader
from .sources import BadImage, decode_split, load_cifar10
from .store import ImageStore, ensure_store
from .synthetic import CLASS_NAMES, shapes10

log = logging.getLogger(__name__)

IN_MEMORY_LIMIT_BYTES = 8 * 2**30
STATS_SAMPLE = 2000
CALIBRATION_IMAGES = 256  # fixed training images for the data-dependent init (model.init: lsuv)

CIFAR10_CLASSES = [
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
Loader = TensorBatchLoader | MappedBatchLoader | StreamingLoader

__all__ = ["BatchAugment", "DataBundle", "DataOptions", "build_data"]


@dataclass(frozen=True)
class DataOptions:
    """How a job reads its data beyond the run config: ``expect`` = the data identity it was
    planned for (other data fails); ``rebuild_missing`` = build a prepared store missing from
    the cache instead of failing (the workflow's cells)."""

    expect: DataIdentity = None
    rebuild_missing: bool = False


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


@dataclass
class _Splits:
    """The train/val images of a run, in one of three places."""

    classes: list[str]
    train: tuple[torch.Tensor, torch.Tensor] | ImageStore | FolderSplit
    val: tuple[torch.Tensor, torch.Tensor] | ImageStore | FolderSplit
    skipped: list[str] = field(default_factory=list)  # bad files left out
    ignored: int = 0  # non-image files of an image folder, never decoded
    prepared: str | None = None  # the prepared-data cache read (data.cache)
    prepared_format: str | None = None  # its format: raw or jpeg<quality>
    identity: DataIdentity = None  # what the data is (identity.py), wherever it lies
    stores: list[ImageStore] = field(default_factory=list)  # stores still mapped (leased)
    read_stores: list[ImageStore] = field(default_factory=list)  # every store read (provenance)


def _fits_in_memory(d: Any, num_images: int, stored: int) -> bool:
    """data.in_memory: yes, no, or auto (up to :data:`IN_MEMORY_LIMIT_BYTES` of uint8)."""
    if d.in_memory == "auto":
        return num_images * 3 * stored * stored <= IN_MEMORY_LIMIT_BYTES
    return d.in_memory == "yes"


def _open_splits(cfg: Any, stored: int, rebuild_missing: bool = False) -> _Splits:
    """Where the configured source's images come from: decoded into memory (synthetic,
    CIFAR-10, an image folder that fits), read from a prepared-data cache (``data.cache``:
    into memory when it fits, else memory-mapped) or decoded from disk batch by batch.

    The run config guarantees ``data.root`` for a non-synthetic source (config.py)."""
    d = cfg.data
    if d.source == "synthetic":
        tx, ty, vx, vy = shapes10(d.num_train, d.num_val, stored, d.num_classes)
        return _Splits(list(CLASS_NAMES[: d.num_classes]), (tx, ty), (vx, vy))
    root = Path(d.root).expanduser()
    if not root.exists():
        raise DataError(
            f"data directory '{root}' does not exist; set data.root to an existing directory"
        )
    if d.source == "cifar10":
        identity = cifar10_identity(root)
        tx, ty, vx, vy = load_cifar10(root)
        train, val = (_resize(tx, stored), ty), (_resize(vx, stored), vy)
        return _Splits(CIFAR10_CLASSES, train, val, identity=identity)
    cache = getattr(d, "cache", None)
    if cache:
        cache_format = getattr(d, "cache_format", None) or "raw"
        return _open_prepared(
            Path(cache).expanduser(), root, stored, cache_format, d, rebuild_missing
        )
    scan = scan_tree(root, d.val_fraction, seed=0)
    n = len(scan.train.paths) + len(scan.val.paths)
    ignored, identity = len(scan.ignored), tree_identity(scan.fingerprint)
    if not _fits_in_memory(d, n, stored):
        return _Splits(scan.classes, scan.train, scan.val, ignored=ignored, identity=identity)
    workers = max(1, d.workers)
    tx, ty, skipped_train = decode_split(scan.train, stored, d.on_bad_image, workers=workers)
    vx, vy, skipped_val = decode_split(scan.val, stored, d.on_bad_image, workers=workers)
    skipped = skipped_train + skipped_val
    return _Splits(scan.classes, (tx, ty), (vx, vy), skipped, ignored, identity=identity)


def _open_store(
    cache: Path,
    root: Path,
    split: str,
    stored: int,
    cache_format: str,
    d: Any,
    rebuild_missing: bool,
) -> ImageStore:
    """One split's store in ``cache``; with ``rebuild_missing``, a store that cannot be read
    there (the cache was emptied or moved without it, an older format) is built from ``root``
    first."""
    path = store_dir(cache, split, stored, cache_format)
    try:
        return ImageStore.open(path, root=root, stored_size=stored)
    except DataError as exc:
        if not rebuild_missing or not root.is_dir():
            raise
        reason = str(exc)
    threads = max(1, torch.get_num_threads())
    log.warning(
        "%s: building it here from %s over %d process(es)", reason.split(";")[0], root, threads
    )
    built, _ = ensure_store(
        root,
        d.val_fraction,
        split,
        stored,
        cache_format,
        cache.parent,
        on_bad_image="skip",
        workers=threads,
    )
    return ImageStore.open(built, root=root, stored_size=stored)


def _open_prepared(
    cache: Path, root: Path, stored: int, cache_format: str, d: Any, rebuild_missing: bool
) -> _Splits:
    """The train and val stores of ``cache`` (a tree directory of the prepared-data cache)."""
    train = _open_store(cache, root, "train", stored, cache_format, d, rebuild_missing)
    try:
        val = _open_store(cache, root, "val", stored, cache_format, d, rebuild_missing)
    except BaseException:
        train.close()
        raise
    identity = store_identity({"train": train.digest, "val": val.digest})
    skipped = train.skipped + val.skipped
    if skipped and d.on_bad_image == "fail":
        train.close()
        val.close()
        first = skipped[0]
        raise BadImage(Path(first["path"]), first["reason"])
    splits = _Splits(
        train.classes,
        train,
        val,
        [s["path"] for s in skipped],
        train.ignored_files,
        str(train.path.parent),
        train.cache_format,
        identity,
        [train, val],
        [train, val],
    )
    if _fits_in_memory(d, train.num_images + val.num_images, stored):
        try:
            splits.train, splits.val = train.load(d.max_train), val.load(d.max_val)
        except BaseException:
            train.close()
            val.close()
            raise
        for store in splits.stores:
            store.close()  # in memory now: the stores may go
        splits.stores = []
    return splits


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
    per_rank_batch = t.batch_size // world_size
    splits = _open_splits(cfg, stored, rebuild_missing)
    try:
        check_data(splits.identity, expect)
        return _bundle(cfg, device, rank, world_size, splits, stored, per_rank_batch)
    except BaseException:
        for store in splits.stores:
            store.close()
        raise


def _bundle(
    cfg: Any,
    device: torch.device,
    rank: int,
    world_size: int,
    splits: _Splits,
    stored: int,
    per_rank_batch: int,
) -> DataBundle:
    """The loaders over ``splits`` and the augmentation fitted to their training images."""
    d, a, t = cfg.data, cfg.augment, cfg.train
    train_kw = {"shuffle": True, "drop_last": True, "rank": rank, "world_size": world_size}
    eval_kw = {"shuffle": False, "drop_last": False}
    common = {"device": device, "seed": t.seed}
    eval_batch = cfg.eval.batch_size
    train: Loader
    val: Loader
    train_eval: Loader | None
    if isinstance(splits.train, tuple) and isinstance(splits.val, tuple):
        tx, ty = _subset(*splits.train, d.max_train)
        vx, vy = _subset(*splits.val, d.max_val)
        n = int(ty.shape[0])
        _check_batch(per_rank_batch, n, world_size)
        stats_images = tx[spread(n, STATS_SAMPLE)]
        train = TensorBatchLoader(tx, ty, per_rank_batch, **train_kw, **common)
        val = TensorBatchLoader(vx, vy, eval_batch, **eval_kw, **common)
        clean = spread(n, cfg.eval.train_images)
        train_eval = (
            TensorBatchLoader(tx[clean], ty[clean], eval_batch, **eval_kw, **common)
            if len(clean)
            else None
        )
    elif isinstance(splits.train, ImageStore) and isinstance(splits.val, ImageStore):
        store, vstore = splits.train, splits.val
        n = min(store.num_images, d.max_train or store.num_images)
        n_val = min(vstore.num_images, d.max_val or vstore.num_images)
        _check_batch(per_rank_batch, n, world_size)
        stats_images = store.read(spread(n, STATS_SAMPLE))
        mapped = {"workers": max(1, d.workers), **common}
        evaluation = {**mapped, "workers": min(4, max(1, d.workers))}  # once an epoch
        train = MappedBatchLoader(
            store.reader, store.rows[:n], store.labels[:n], per_rank_batch, **train_kw, **mapped
        )
        val = MappedBatchLoader(
            vstore.reader,
            vstore.rows[:n_val],
            vstore.labels[:n_val],
            eval_batch,
            **eval_kw,
            **evaluation,
        )
        clean_rows = spread(n, cfg.eval.train_images).numpy()
        train_eval = (
            MappedBatchLoader(
                store.reader,
                store.rows[clean_rows],
                store.labels[clean_rows],
                eval_batch,
                **eval_kw,
                **evaluation,
            )
            if len(clean_rows)
            else None
        )
    else:
        assert isinstance(splits.train, FolderSplit) and isinstance(splits.val, FolderSplit)
        train_split, val_split = splits.train, splits.val
        _check_batch(per_rank_batch, len(train_split.paths), world_size)
        sample = train_split.paths[:: max(1, len(train_split.paths) // STATS_SAMPLE)][:STATS_SAMPLE]
        stats_images, _, _ = decode_split(
            FolderSplit(sample, [0] * len(sample)), stored, "skip", workers=max(1, d.workers)
        )
        kw = {"workers": d.workers, "on_bad_image": d.on_bad_image, **common}
        train = StreamingLoader(train_split, stored, per_rank_batch, **train_kw, **kw)
        val = StreamingLoader(val_split, stored, eval_batch, **eval_kw, **kw)
        clean_idx = spread(len(train_split.paths), cfg.eval.train_images).tolist()
        subset = FolderSplit(
            [train_split.paths[i] for i in clean_idx], [train_split.labels[i] for i in clean_idx]
        )
        train_eval = (
            StreamingLoader(subset, stored, eval_batch, **eval_kw, **kw) if clean_idx else None
        )
    mean, std = channel_stats(stats_images.cpu())
    if d.normalise == "mean":  # x - mean on the 0-255 scale: (x/255 - mean) / (1/255)
        std = torch.full_like(std, 1.0 / 255.0)
    pca = rgb_pca(stats_images.cpu()) if a.pca_lighting else None
    augment = BatchAugment(
        d.image_size, mean, std, crop_flip=a.crop_flip, pca=pca, lighting_std=a.lighting_std
    ).to(device)
    info = {
        "source": d.source,
        "root": str(d.root) if d.root else None,
        "num_train": train.num_samples,
        "num_val": val.num_samples,
        "num_classes": len(splits.classes),
        "classes": list(splits.classes),
        "image_size": d.image_size,
        "stored_size": stored,
        "in_memory": isinstance(train, TensorBatchLoader),
        "prepared_cache": splits.prepared,
        "prepared_stores": {s.manifest["split"]: str(s.path) for s in splits.read_stores},
        "prepared_format": splits.prepared_format,
        "identity": splits.identity,
        "ignored_files": splits.ignored,
        "skipped_at_load": splits.skipped,
    }
    return DataBundle(
        train=train,
        val=val,
        train_eval=train_eval,
        augment=augment,
        num_classes=len(splits.classes),
        info=info,
        calibration=stats_images[:CALIBRATION_IMAGES].cpu(),
        stores=list(splits.stores),
    )


def _check_batch(batch_size: int, num_train: int, world_size: int) -> None:
    if batch_size * world_size > num_train:
        raise DataError(
            f"train.batch_size={batch_size * world_size} exceeds the {num_train} training "
            "images; lower train.batch_size or add data"
        )
