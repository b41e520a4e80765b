"""Where a run's images are, and the loaders over them: one class per place, one interface.

* :class:`InMemory`: decoded uint8 tensors (shapes10, CIFAR-10, an image folder or a prepared
  store that fits in memory), batched by :class:`~.loaders.TensorBatchLoader`;
* :class:`Mapped`: prepared stores read in place (memory-mapped), batched by
  :class:`~.loaders.MappedBatchLoader`;
* :class:`OnDisk`: an image folder decoded batch by batch, :class:`~.loaders.StreamingLoader`.

Each gives the number of training images, a sample of them (for the channel statistics, PCA
lighting and the data-dependent init) and its three loaders: training (shuffled, the DDP rank's
share), validation and the fixed clean training subset (``eval.train_images``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..imagefolder import FolderSplit
from .loaders import MappedBatchLoader, StreamingLoader, TensorBatchLoader
from .sources import decode_split
from .store import ImageStore

Loader = TensorBatchLoader | MappedBatchLoader | StreamingLoader
Loaders = tuple[Loader, Loader, Loader | None]  # train, val, clean training subset


def spread(total: int, count: int) -> torch.Tensor:
    """``min(count, total)`` evenly spaced indices into ``total`` items (a class-sorted folder
    then still gives every class)."""
    count = min(count, total)
    if count <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.div(torch.arange(count) * total, count, rounding_mode="floor")


@dataclass(frozen=True)
class LoaderPlan:
    """What every placement's loaders share: batch sizes, device, seed, DDP rank, limits."""

    batch: int  # per rank
    eval_batch: int
    clean_images: int  # eval.train_images
    device: torch.device
    seed: int
    rank: int
    world_size: int
    workers: int  # data.workers
    on_bad_image: str
    stored: int
    max_train: int | None
    max_val: int | None

    @property
    def train_kw(self) -> dict[str, Any]:
        return {
            "shuffle": True,
            "drop_last": True,
            "rank": self.rank,
            "world_size": self.world_size,
            "device": self.device,
            "seed": self.seed,
        }

    @property
    def eval_kw(self) -> dict[str, Any]:
        return {"shuffle": False, "drop_last": False, "device": self.device, "seed": self.seed}


class Placement(Protocol):
    """Where the images are: the interface :func:`alexnet_bench.data.build_data` uses."""

    def num_train(self, plan: LoaderPlan) -> int: ...

    def sample(self, plan: LoaderPlan, count: int) -> torch.Tensor: ...

    def loaders(self, plan: LoaderPlan) -> Loaders: ...


def _limit(images: torch.Tensor, labels: torch.Tensor, limit: int | None) -> tuple[Any, Any]:
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


@dataclass
class InMemory:
    """Decoded uint8 images (N x 3 x S x S) and their labels, per split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]

    def num_train(self, plan: LoaderPlan) -> int:
        return int(_limit(*self.train, plan.max_train)[1].shape[0])

    def sample(self, plan: LoaderPlan, count: int) -> torch.Tensor:
        tx, _ = _limit(*self.train, plan.max_train)
        return tx[spread(self.num_train(plan), count)]

    def loaders(self, plan: LoaderPlan) -> Loaders:
        tx, ty = _limit(*self.train, plan.max_train)
        vx, vy = _limit(*self.val, plan.max_val)
        train = TensorBatchLoader(tx, ty, plan.batch, **plan.train_kw)
        val = TensorBatchLoader(vx, vy, plan.eval_batch, **plan.eval_kw)
        clean = spread(int(ty.shape[0]), plan.clean_images)
        clean_loader = (
            TensorBatchLoader(tx[clean], ty[clean], plan.eval_batch, **plan.eval_kw)
            if len(clean)
            else None
        )
        return train, val, clean_loader


@dataclass
class Mapped:
    """Prepared stores read in place (their leases held until the run closes them)."""

    train: ImageStore
    val: ImageStore
    stores: list[ImageStore] = field(default_factory=list)

    def num_train(self, plan: LoaderPlan) -> int:
        return min(self.train.num_images, plan.max_train or self.train.num_images)

    def sample(self, plan: LoaderPlan, count: int) -> torch.Tensor:
        return self.train.read(spread(self.num_train(plan), count))

    def loaders(self, plan: LoaderPlan) -> Loaders:
        store, vstore = self.train, self.val
        n, n_val = self.num_train(plan), min(vstore.num_images, plan.max_val or vstore.num_images)
        mapped = {"workers": max(1, plan.workers)}
        evaluation = {"workers": min(4, max(1, plan.workers))}  # once an epoch
        train = MappedBatchLoader(
            store.reader, store.rows[:n], store.labels[:n], plan.batch, **plan.train_kw, **mapped
        )
        val = MappedBatchLoader(
            vstore.reader,
            vstore.rows[:n_val],
            vstore.labels[:n_val],
            plan.eval_batch,
            **plan.eval_kw,
            **evaluation,
        )
        clean = spread(n, plan.clean_images).numpy()
        clean_loader = (
            MappedBatchLoader(
                store.reader,
                store.rows[clean],
                store.labels[clean],
                plan.eval_batch,
                **plan.eval_kw,
                **evaluation,
            )
            if len(clean)
            else None
        )
        return train, val, clean_loader


@dataclass
class OnDisk:
    """An image folder's files, decoded by the loaders' workers batch by batch."""

    train: FolderSplit
    val: FolderSplit

    def num_train(self, plan: LoaderPlan) -> int:
        return len(self.train.paths)

    def sample(self, plan: LoaderPlan, count: int) -> torch.Tensor:
        paths = self.train.paths
        picked = paths[:: max(1, len(paths) // count)][:count]
        images, _, _ = decode_split(
            FolderSplit(picked, [0] * len(picked)),
            plan.stored,
            "skip",
            workers=max(1, plan.workers),
        )
        return images

    def loaders(self, plan: LoaderPlan) -> Loaders:
        kw = {"workers": plan.workers, "on_bad_image": plan.on_bad_image}
        train = StreamingLoader(self.train, plan.stored, plan.batch, **plan.train_kw, **kw)
        val = StreamingLoader(self.val, plan.stored, plan.eval_batch, **plan.eval_kw, **kw)
        clean = spread(len(self.train.paths), plan.clean_images).tolist()
        subset = FolderSplit(
            [self.train.paths[i] for i in clean], [self.train.labels[i] for i in clean]
        )
        clean_loader = (
            StreamingLoader(subset, plan.stored, plan.eval_batch, **plan.eval_kw, **kw)
            if clean
            else None
        )
        return train, val, clean_loader
