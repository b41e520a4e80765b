"""Batch loaders yielding ``(uint8 images, int64 labels)`` already on the training device.

Shuffling is seeded by ``(seed, epoch)`` alone, so a run resumed at epoch ``e`` sees exactly the
batches an uninterrupted run would. With ``world_size > 1`` every rank draws the same permutation,
cuts it into *global* batches of ``batch_size * world_size`` and takes every ``world_size``-th
sample of each: the union of the ranks' step-``b`` batches is exactly the single-process
step-``b`` batch, so DDP (which averages the ranks' gradients) follows the 1-process trajectory.
"""

from __future__ import annotations

import contextlib
import queue
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..imagefolder import FolderSplit
from .sources import BadImage, decode_image

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 97 + stream)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The order of an epoch's ``n`` samples (CPU int64): a permutation determined by
    ``(seed, epoch)`` alone, or ``0..n-1`` without shuffling."""
    if shuffle:
        return torch.randperm(n, generator=epoch_generator(seed, epoch))
    return torch.arange(n)


def num_batches(n: int, global_batch: int, drop_last: bool) -> int:
    """Batches per epoch of ``n`` samples cut into global batches."""
    return n // global_batch if drop_last else -(-n // global_batch)


def rank_batches(
    order: torch.Tensor, global_batch: int, rank: int, world_size: int, drop_last: bool
) -> Iterator[torch.Tensor]:
    """This rank's share of every global batch of ``order``: every ``world_size``-th sample."""
    for b in range(num_batches(int(order.shape[0]), global_batch, drop_last)):
        yield order[b * global_batch : (b + 1) * global_batch][rank::world_size]


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

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.global_batch, self.drop_last)

    def __iter__(self) -> Iterator[Batch]:
        order = epoch_order(
            self.num_samples, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch
        ).to(self.device)
        for idx in rank_batches(
            order, self.global_batch, self.rank, self.world_size, self.drop_last
        ):
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class _PinnedSlot:
    """One pinned host batch buffer and the event of its last copy to the device."""

    images: torch.Tensor
    labels: torch.Tensor
    copied: torch.cuda.Event | None = None


@dataclass
class _HostBatch:
    """A gathered batch on the host; ``slot`` is the pinned buffer it lives in (CUDA)."""

    images: torch.Tensor
    labels: torch.Tensor
    slot: _PinnedSlot | None = None


class RowReader(Protocol):
    """Where a :class:`MappedBatchLoader` reads images: ``gather(rows)`` -> uint8 N x ``shape``."""

    shape: tuple[int, ...]

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray: ...


class MappedBatchLoader:
    """Mini-batches read from the prepared-data cache (a memory-mapped store).

    The batches are :class:`TensorBatchLoader`'s: the same order for the same ``(seed,
    epoch)``, the same DDP split. Background threads gather each batch's rows from ``reader``
    (a raw store's rows are a memory copy, NumPy releasing the GIL; a JPEG store's are decoded,
    Pillow releasing it) ``prefetch`` (default ``workers + 2``) batches ahead; on CUDA into a ring of pinned buffers, copied to the device
    asynchronously on a side stream that the training stream waits on (``ring``: use the ring
    of host buffers; default on CUDA only). ``rows[i]`` is the store row of sample ``i``;
    ``labels[i]`` its label. A read error ends the epoch with that error (its buffer back in
    the ring); an index outside the store raises.
    """

    def __init__(
        self,
        reader: RowReader,
        rows: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        *,
        device: torch.device,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 2,
        prefetch: int | None = None,
        ring: bool | None = None,
    ) -> None:
        self.reader = reader
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.workers = max(1, workers)
        self.prefetch = prefetch or self.workers + 2  # every thread busy, and some look-ahead
        self.epoch = 0
        self._cuda = device.type == "cuda"
        self.ring = self._cuda if ring is None else ring
        self._free: queue.Queue[_PinnedSlot] = queue.Queue()
        if self.ring:
            shape = (batch_size, *reader.shape)
            for _ in range(self.ring_size):
                images = torch.empty(shape, dtype=torch.uint8)
                labels_buffer = torch.empty(batch_size, dtype=torch.int64)
                if self._cuda:
                    images, labels_buffer = images.pin_memory(), labels_buffer.pin_memory()
                self._free.put(_PinnedSlot(images, labels_buffer))
        if self._cuda:
            self._copy_stream = torch.cuda.Stream(device)

    @property
    def ring_size(self) -> int:
        """Host buffers in the ring: every prefetched batch, the one being copied, one spare."""
        return self.prefetch + 2

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.global_batch, self.drop_last)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def _gather(self, idx: np.ndarray) -> _HostBatch:
        """Samples ``idx``: their rows of the map, into a free ring slot or new arrays."""
        rows = self.rows[idx]
        if not self.ring:
            images = self.reader.gather(rows)
            return _HostBatch(torch.from_numpy(images), torch.from_numpy(self.labels[idx]))
        slot = self._free.get()
        try:
            if slot.copied is not None:
                slot.copied.synchronize()  # the slot's previous batch has reached the device
            n = len(rows)
            self.reader.gather(rows, out=slot.images.numpy()[:n])
            np.take(self.labels, idx, out=slot.labels.numpy()[:n])
        except BaseException:
            self._free.put(slot)  # a failed read hands its buffer back: the ring never runs dry
            raise
        return _HostBatch(slot.images[:n], slot.labels[:n], slot)

    def _release(self, host: _HostBatch) -> None:
        if host.slot is not None:
            self._free.put(host.slot)

    def _to_device(self, host: _HostBatch) -> Batch:
        if host.slot is None:
            return host.images, host.labels
        if not self._cuda:  # a ring on the CPU: the batch leaves the ring as a copy
            batch = host.images.clone(), host.labels.clone()
            self._release(host)
            return batch
        with torch.cuda.stream(self._copy_stream):
            images = host.images.to(self.device, non_blocking=True)
            labels = host.labels.to(self.device, non_blocking=True)
            host.slot.copied = torch.cuda.Event()
            host.slot.copied.record(self._copy_stream)
        current = torch.cuda.current_stream(self.device)
        current.wait_event(host.slot.copied)
        images.record_stream(current)
        labels.record_stream(current)
        self._release(host)  # refilled only once the copy is done (_gather waits on it)
        return images, labels

    def __iter__(self) -> Iterator[Batch]:
        order = epoch_order(
            self.num_samples, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch
        )
        batches = [
            idx.numpy()
            for idx in rank_batches(
                order, self.global_batch, self.rank, self.world_size, self.drop_last
            )
        ]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: deque[Future[_HostBatch]] = deque(
                pool.submit(self._gather, idx) for idx in batches[: self.prefetch]
            )
            ahead = len(pending)
            try:
                while pending:
                    host = pending.popleft().result()
                    if ahead < len(batches):
                        pending.append(pool.submit(self._gather, batches[ahead]))
                        ahead += 1
                    yield self._to_device(host)
            finally:  # an epoch left early (divergence, an error): hand every slot back
                for future in pending:
                    if not future.cancel():
                        with contextlib.suppress(Exception):
                            self._release(future.result())


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
            return decode_image(path, self.size), self.split.labels[i], path
        except BadImage:
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
