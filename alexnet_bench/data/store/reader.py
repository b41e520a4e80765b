"""Reading a store: open and check it, hold its lease while reading, gather rows loudly.

An open :class:`ImageStore` holds a shared lock on the store's lease file, so no build or
``data-gc`` removes the store under a running job; :meth:`ImageStore.close` drops it, and
removes the store if a newer build superseded it meanwhile and nobody else reads it.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...errors import DataError
from . import locks
from .manifest import (
    IMAGES,
    JPEG_BLOBS,
    JPEG_INDEX,
    LABELS,
    LEASE,
    ROWS,
    VERSION,
    cache_format_of,
    read_manifest,
)

log = logging.getLogger(__name__)


def prepare_hint(root: str | Path | None, stored: int | None) -> str:
    return (
        f"build it with: alexnet-bench prepare-data --root {root or 'DATA_ROOT'} "
        f"--stored-size {stored or 'S'} (or run the workflow, whose prepare_data jobs build it)"
    )


def _check_rows(rows: np.ndarray, count: int, where: Path) -> None:
    """An index outside the store is a bug upstream: raise rather than read another image."""
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= count):
        bad = int(rows.max()) if int(rows.max()) >= count else int(rows.min())
        raise IndexError(f"row {bad} is outside prepared data '{where}' ({count} rows)")


_warned_no_flock: set[str] = set()


def _take_lease(path: Path) -> int | bool | None:
    """The store's shared lease (a descriptor); False when the store has no lease file (not
    there, or being removed); None when the file system has no ``flock`` (read unleased)."""
    try:
        lease = locks.acquire(path / LEASE, exclusive=False, create=False)
    except locks.LockUnsupported as exc:
        if str(path.parent) not in _warned_no_flock:
            _warned_no_flock.add(str(path.parent))
            log.warning(
                "%s: stores are read without a lease, so a build or data-gc may remove "
                "one in use; mount the cache's file system with flock support",
                exc,
            )
        return None
    except PermissionError as exc:
        raise DataError(
            f"cannot open the lease of prepared data '{path}' ({exc.strerror}); make the cache "
            "readable to this user (chmod -R a+rX)"
        ) from None
    return False if lease is None else lease


def _holds(path: Path, lease: int) -> bool:
    """Whether ``lease`` is still the lease file of the store at ``path``."""
    try:
        return os.stat(path / LEASE).st_ino == os.fstat(lease).st_ino
    except FileNotFoundError:
        return False


def _drop(lease: int | bool | None) -> None:
    if isinstance(lease, int) and not isinstance(lease, bool):
        locks.release(lease)


class RawRows:
    """Rows of a mapped N x 3 x S x S uint8 array."""

    def __init__(self, images: np.ndarray, where: Path = Path("?")) -> None:
        self.images = images
        self.shape = tuple(images.shape[1:])
        self.where = where

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` into ``out`` (or a new array); the GIL is released while it copies.
        An index outside the store raises :class:`IndexError`; a failed read, a
        :class:`DataError` naming the store and the row."""
        rows = np.asarray(rows, dtype=np.int64)
        _check_rows(rows, len(self.images), self.where)
        try:  # bounds checked above: "clip" avoids the buffered copy of mode="raise"
            return np.take(self.images, rows, axis=0, mode="clip", out=out)
        except OSError as exc:
            row = next((int(r) for r in rows if not _readable(self.images, int(r))), rows[0])
            raise DataError(
                f"cannot read row {row} of prepared data '{self.where}' ({exc}); delete the "
                "store and rebuild it"
            ) from None


def _readable(images: np.ndarray, row: int) -> bool:
    try:
        np.array(images[row])
    except OSError:
        return False
    return True


class JpegRows:
    """Rows stored as JPEG blobs in one mapped file, decoded by Pillow (libjpeg-turbo), which
    releases the GIL while it decodes."""

    def __init__(
        self, blobs: np.ndarray, index: np.ndarray, shape: tuple[int, ...], where: Path = Path("?")
    ) -> None:
        self.blobs, self.index, self.shape, self.where = blobs, index, tuple(shape), where

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        _check_rows(rows, len(self.index), self.where)
        out = np.empty((len(rows), *self.shape), np.uint8) if out is None else out
        for i, row in enumerate(rows.tolist()):
            start, length = self.index[row]
            try:
                with Image.open(io.BytesIO(self.blobs[start : start + length])) as image:
                    out[i] = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
            except (OSError, ValueError, SyntaxError) as exc:
                raise DataError(
                    f"cannot read row {row} of prepared data '{self.where}' "
                    f"({type(exc).__name__}: {exc}); delete the store and rebuild it"
                ) from None
        return out


@dataclass
class ImageStore:
    """An opened store: its rows (raw or JPEG), the kept rows and their labels, the manifest.
    Holds the store's lease until :meth:`close` (or the process ends)."""

    path: Path
    manifest: dict[str, Any]
    reader: RawRows | JpegRows
    rows: np.ndarray
    labels: np.ndarray
    _lease: int | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def open(
        cls, path: str | Path, *, root: str | Path | None = None, stored_size: int | None = None
    ) -> ImageStore:
        """Open and check a store; a one-line :class:`DataError` when it cannot be used.
        (``root`` only names the tree in the hint of that message: a store is found by its
        location and checked by its content, wherever the tree lies now.)"""
        path = Path(path)
        for _ in range(3):  # a rebuild swapping the store in meanwhile: open the new one
            lease = _take_lease(path)
            manifest = read_manifest(path) if lease is not False else None
            if manifest is None:
                _drop(lease)
                raise DataError(
                    f"no prepared data at '{path}' (never built, removed, or its build did not "
                    "finish); " + prepare_hint(root, stored_size)
                )
            try:
                store = cls._checked(path, manifest, lease, root, stored_size)
            except BaseException:
                _drop(lease)
                raise
            if lease is None or _holds(path, lease):
                return store
            _drop(lease)  # the files just read may be another store's than the one leased
        raise DataError(f"prepared data at '{path}' keeps being replaced; rerun the job")

    @classmethod
    def _checked(
        cls,
        path: Path,
        manifest: dict[str, Any],
        lease: int | None,
        root: str | Path | None,
        stored_size: int | None,
    ) -> ImageStore:
        if manifest.get("version") != VERSION:
            raise DataError(
                f"prepared data at '{path}' has format version {manifest.get('version')}, this "
                f"alexnet-bench reads version {VERSION}; rebuild it (prepare-data rebuilds it)"
            )
        if stored_size is not None and manifest["stored_size"] != stored_size:
            raise DataError(
                f"prepared data at '{path}' holds {manifest['stored_size']} px images, the run "
                f"needs data.stored_size {stored_size}; " + prepare_hint(root, stored_size)
            )
        images = manifest["images"]
        shape = tuple(images["shape"])
        try:
            rows, labels = np.load(path / ROWS), np.load(path / LABELS)
            if images["encoding"] == "jpeg":
                index = np.load(path / JPEG_INDEX)
                blobs = np.memmap(path / JPEG_BLOBS, dtype=np.uint8, mode="r")
                reader: RawRows | JpegRows = JpegRows(blobs, index, shape[1:], path)
                found = (len(index), *shape[1:]) if int(index[:, 1].sum()) == blobs.size else ()
            else:
                array = np.load(path / IMAGES, mmap_mode="r")
                reader = RawRows(array, path)
                found = array.shape if array.dtype == np.uint8 else ()
        except (OSError, ValueError) as exc:
            raise DataError(
                f"prepared data at '{path}' is unreadable ({exc}); delete it and rebuild it"
            ) from None
        if tuple(found) != shape or len(rows) != len(labels):
            raise DataError(
                f"prepared data at '{path}' does not match its manifest (images {found}, "
                f"manifest {shape}); delete it and rebuild it"
            )
        return cls(path, manifest, reader, rows, labels, lease)

    def close(self) -> None:
        """Drop the lease; remove the store if a newer build superseded it and no other
        process reads it (and any older store a rebuild moved aside from its place)."""
        if self._closed:
            return
        self._closed = True
        _drop(self._lease)
        self._lease = None
        from .maintenance import remove_if_superseded

        remove_if_superseded(self.path)

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def digest(self) -> str:
        """The content digest of what training reads from this store."""
        return str(self.manifest["digest"])

    @property
    def cache_format(self) -> str:
        """``raw`` or ``jpeg<quality>`` (``data.cache_format``)."""
        return cache_format_of(self.manifest)

    @property
    def skipped(self) -> list[dict[str, str]]:
        """``{"path", "reason"}`` of every file the build could not decode."""
        return list(self.manifest["skipped"])

    @property
    def ignored_files(self) -> int:
        """Files of the tree that are not images by their extension (not decoded)."""
        return int(self.manifest["ignored"]["count"])

    def read(self, index: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images ``index`` (positions among the kept images) as a uint8 tensor."""
        idx = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(self.reader.gather(self.rows[idx]))

    def load(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``limit`` (default: all) kept images and their labels, read into memory."""
        n = self.num_images if limit is None else min(limit, self.num_images)
        rows = self.rows[:n]
        contiguous = n and np.array_equal(rows, np.arange(rows[0], rows[0] + n))
        if isinstance(self.reader, RawRows) and contiguous:  # one sequential read
            images = np.array(self.reader.images[rows[0] : rows[0] + n])
        else:
            images = self.reader.gather(rows)
        return torch.from_numpy(images), torch.from_numpy(np.array(self.labels[:n]))
