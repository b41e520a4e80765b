"""Opening a run's data: from its source (shapes10, CIFAR-10, an image folder, a prepared store)
to a :mod:`~.placement` (in memory, memory-mapped or on disk), with what the record says about
it (classes, skipped and ignored files, the stores read, the data identity).

The run config guarantees ``data.root`` for a non-synthetic source (config.py)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..identity import DataIdentity, cifar10_identity, store_identity, tree_identity
from ..imagefolder import find_store, scan_tree
from .placement import InMemory, Mapped, OnDisk, Placement
from .sources import BadImage, decode_split, load_cifar10
from .store import ImageStore, ensure_store
from .synthetic import CLASS_NAMES, shapes10

log = logging.getLogger(__name__)

IN_MEMORY_LIMIT_BYTES = 8 * 2**30
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


@dataclass
class Opened:
    """A run's data, opened: where its images are and what the record says about them."""

    classes: list[str]
    images: Placement
    skipped: list[str] = field(default_factory=list)  # bad files left out
    ignored: int = 0  # non-image files of an image folder, never decoded
    prepared: str | None = None  # the prepared-data cache read (data.cache)
    prepared_format: str | None = None  # its format: raw or jpeg<quality>
    identity: DataIdentity = None  # what the data is (identity.py), wherever it lies
    read_stores: list[ImageStore] = field(default_factory=list)  # every store read (provenance)

    @property
    def leased(self) -> list[ImageStore]:
        """The stores still mapped, whose leases the run holds until it closes them."""
        return list(self.images.stores) if isinstance(self.images, Mapped) else []

    def close(self) -> None:
        for store in self.leased:
            store.close()


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def fits_in_memory(d: Any, num_images: int, stored: int) -> bool:
    """data.in_memory: yes, no, or auto (up to :data:`IN_MEMORY_LIMIT_BYTES` of uint8)."""
    if d.in_memory == "auto":
        return num_images * 3 * stored * stored <= IN_MEMORY_LIMIT_BYTES
    return d.in_memory == "yes"


def open_data(
    cfg: Any, stored: int, rebuild_missing: bool = False, expect: DataIdentity = None
) -> Opened:
    """The configured source's images: decoded into memory (synthetic, CIFAR-10, an image
    folder that fits), read from a prepared-data cache (``data.cache``: into memory when it
    fits, else memory-mapped) or decoded from disk batch by batch. ``expect``: the identity
    the job was planned for; of a cache's stores, it reads those of the planned digests."""
    d = cfg.data
    if d.source == "synthetic":
        tx, ty, vx, vy = shapes10(d.num_train, d.num_val, stored, d.num_classes)
        return Opened(list(CLASS_NAMES[: d.num_classes]), InMemory((tx, ty), (vx, vy)))
    root = Path(d.root).expanduser()
    if not root.exists():
        raise DataError(
            f"data directory '{root}' does not exist; set data.root to an existing directory"
        )
    if d.source == "cifar10":
        identity = cifar10_identity(root)
        tx, ty, vx, vy = load_cifar10(root)
        images = InMemory((_resize(tx, stored), ty), (_resize(vx, stored), vy))
        return Opened(CIFAR10_CLASSES, images, identity=identity)
    cache = getattr(d, "cache", None)
    if cache:
        cache_format = getattr(d, "cache_format", None) or "raw"
        cache_dir = Path(cache).expanduser()
        digests = expect if expect and expect.get("kind") == "store" else {}
        return _open_prepared(cache_dir, root, stored, cache_format, d, rebuild_missing, digests)
    scan = scan_tree(root, d.val_fraction, seed=0)
    n = len(scan.train.paths) + len(scan.val.paths)
    ignored, identity = len(scan.ignored), tree_identity(scan.fingerprint)
    if not fits_in_memory(d, n, stored):
        return Opened(scan.classes, OnDisk(scan.train, scan.val), [], ignored, identity=identity)
    workers = max(1, d.workers)
    tx, ty, skipped_train = decode_split(scan.train, stored, d.on_bad_image, workers=workers)
    vx, vy, skipped_val = decode_split(scan.val, stored, d.on_bad_image, workers=workers)
    skipped = skipped_train + skipped_val
    return Opened(scan.classes, InMemory((tx, ty), (vx, vy)), skipped, ignored, identity=identity)


def _open_store(
    cache: Path,
    root: Path,
    split: str,
    stored: int,
    cache_format: str,
    d: Any,
    rebuild_missing: bool,
    digest: str | None = None,
) -> ImageStore:
    """One split's store in ``cache`` (of ``digest`` when one is planned); with
    ``rebuild_missing``, a store that cannot be read there (the cache was emptied or moved
    without it, an older format) is built from ``root`` first."""
    path = find_store(cache, split, stored, cache_format, digest)
    try:
        return ImageStore.open(path, root=root, stored_size=stored)
    except DataError as exc:
        moved = find_store(cache, split, stored, cache_format, digest)
        if moved != path:  # renamed to its current name while this job opened it
            with contextlib.suppress(DataError):
                return ImageStore.open(moved, root=root, stored_size=stored)
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
    cache: Path,
    root: Path,
    stored: int,
    cache_format: str,
    d: Any,
    rebuild_missing: bool,
    digests: dict[str, Any],
) -> Opened:
    """The train and val stores of ``cache`` (a tree directory of the prepared-data cache):
    read into memory when they fit (their leases then dropped), else mapped (leases held)."""
    train = _open_store(
        cache, root, "train", stored, cache_format, d, rebuild_missing, digests.get("train")
    )
    try:
        val = _open_store(
            cache, root, "val", stored, cache_format, d, rebuild_missing, digests.get("val")
        )
    except BaseException:
        train.close()
        raise
    stores = [train, val]
    try:
        skipped = train.skipped + val.skipped
        if skipped and d.on_bad_image == "fail":
            first = skipped[0]
            raise BadImage(Path(first["path"]), first["reason"])
        images: Placement
        if fits_in_memory(d, train.num_images + val.num_images, stored):
            images = InMemory(train.load(d.max_train), val.load(d.max_val))
            for store in stores:
                store.close()  # in memory now: the stores may go
        else:
            images = Mapped(train, val, stores)
    except BaseException:
        for store in stores:
            store.close()
        raise
    return Opened(
        train.classes,
        images,
        [s["path"] for s in skipped],
        train.ignored_files,
        str(train.path.parent),
        train.cache_format,
        store_identity({"train": train.digest, "val": val.digest}),
        stores,
    )
