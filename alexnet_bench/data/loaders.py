"""Batch loaders yielding ``(uint8 images, int64 labels)`` already on the training device.

Shuffling is seeded by ``(seed, epoch)`` alone, so a run resumed at epoch ``e`` sees exactly the
batches an uninterrupted run would. With ``world_size > 1`` every rank draws the same permutation,
cuts it into *global* batches of ``batch_size * world_size`` and takes every ``world_size``-th
sample of each: the union of the ranks' step-``b`` batches is exactly the single-process
step-``b`` batch, so DDP (which averages the ranks' gradients) follows the 1-process trajectory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import DataError
from .sources import FolderSplit, decode_image

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 97 + stream)


class TensorBatchLoader:
    """Mini-batches of an in-memory data set (uint8 N x 3 x S x S) held on ``device``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        device: torch.device,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        pin = device.type == "cuda"
        self.images = images.to(device, non_blocking=pin) if images.device != device else images
        self.labels = labels.to(device, non_blocking=pin) if labels.device != device else labels
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = self.labels.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        return order.to(self.device)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def __iter__(self) -> Iterator[Batch]:
        order = self._indices()
        for b in range(len(self)):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            idx = chunk[self.rank :: self.world_size]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


class FolderDataset(Dataset):
    """Decodes one image per item (for data sets too large to hold in memory)."""

    def __init__(self, split: FolderSplit, size: int, on_bad_image: str) -> None:
        self.split = split
        self.size = size
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int, str]:
        path = self.split.paths[i]
        try:
            return decode_image(Path(path), self.size), self.split.labels[i], str(path)
        except DataError:
            if self.on_bad_image == "skip":
                return None, self.split.labels[i], str(path)
            raise


def _collate(
    items: list[tuple[np.ndarray | None, int, str]],
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    good = [(a, y) for a, y, _ in items if a is not None]
    skipped = [p for a, _, p in items if a is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), skipped
    images = torch.from_numpy(np.stack([a for a, _ in good]))
    labels = torch.tensor([y for _, y in good], dtype=torch.int64)
    return images, labels, skipped


class StreamingLoader:
    """Worker-decoded batches from disk, pinned and copied asynchronously to ``device``."""

    def __init__(
        self,
        split: FolderSplit,
        size: int,
        batch_size: int,
        *,
        device: torch.device,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 4,
        on_bad_image: str = "fail",
    ) -> None:
        self.dataset = FolderDataset(split, size, on_bad_image)
        self.sampler = DistributedSampler(
            self.dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.loader = DataLoader(
            self.dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            drop_last=drop_last,
            persistent_workers=workers > 0,
        )
        self.device = device
        self.skipped: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for images, labels, skipped in self.loader:
            self.skipped.update(skipped)
            if images.shape[0] == 0:
                continue
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )

    @property
    def num_samples(self) -> int:
        return len(self.dataset)
