"""The prepared-data cache: an ImageFolder split decoded once, read by every cell of a study.

Decoding JPEGs costs far more CPU than training AlexNet on a GPU can wait for, and every cell of
a study would repeat it every epoch. A *store* holds one split of a tree at one stored size,
decoded exactly as the direct path decodes it (:func:`~.sources.decode_image`), in one of two
encodings:

* ``raw``: ``images.npy``, N x 3 x S x S uint8 in NumPy's .npy format (``np.load(mmap_mode="r")``
  maps it without reading it): reading a batch is a memory copy, and the pixels are the direct
  path's exactly. 3 S^2 bytes per image (ImageNet at 256 px: 252 GB).
* ``jpeg``: ``images.jpg.bin``, every decoded image re-encoded as a JPEG at ``quality`` (90 by
  default: about 8x smaller), and ``index.npy`` (offset, length per row); batches are decoded by
  Pillow in the loader's threads. Lossy: the pixels differ slightly from
  the direct path's (the manifest and each run's record say which encoding it read).

Beside the images: ``rows.npy`` (the row of every image kept: a bad file skipped under
``on_bad_image: skip`` keeps its unused row), ``labels.npy`` and ``manifest.json`` (what it was
built from and how), written last.

The tree's fingerprint (:func:`alexnet_bench.imagefolder.scan_tree`: paths, sizes and
modification times of every image) names the store's directory (:func:`~alexnet_bench.
imagefolder.store_dir`), so a changed tree is a different store and a rebuild, and nothing else
is. A build writes into ``<store>.tmp-<pid>`` under a lock and renames it into place only when
complete: a killed or disk-full build leaves no directory with a manifest, and a store without
one is never read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..errors import DataError, DiskFullError
from ..imagefolder import TreeScan
from ..io import disk_full_message, human_bytes, write_json
from .sources import BadImage, decode_image

log = logging.getLogger(__name__)

FORMAT = "alexnet-bench-image-store"
VERSION = 1
MANIFEST, IMAGES, ROWS, LABELS = "manifest.json", "images.npy", "rows.npy", "labels.npy"
JPEG_BLOBS, JPEG_INDEX = "images.jpg.bin", "index.npy"
CHUNK = 32  # images per worker task
JPEG_QUALITY = 90
RESIZE_RULE = "RGB; shorter side to {s} (Pillow bilinear, antialiased); centre crop {s} x {s}"


def _prepare_hint(root: str | Path | None, stored: int | None) -> str:
    return (
        f"build it with: alexnet-bench prepare-data --root {root or 'DATA_ROOT'} "
        f"--stored-size {stored or 'S'} (or run the workflow, whose prepare_data jobs build it)"
    )


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a complete store at ``path``, or None (absent, unfinished, foreign)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest


class RawRows:
    """Rows of a mapped N x 3 x S x S uint8 array."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.shape = tuple(images.shape[1:])

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` into ``out`` (or a new array); the GIL is released while it copies."""
        return np.take(self.images, rows, axis=0, mode="clip", out=out)


class JpegRows:
    """Rows stored as JPEG blobs in one mapped file, decoded by Pillow (libjpeg-turbo), which
    releases the GIL while it decodes."""

    def __init__(self, blobs: np.ndarray, index: np.ndarray, shape: tuple[int, ...]) -> None:
        self.blobs, self.index, self.shape = blobs, index, tuple(shape)

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((len(rows), *self.shape), np.uint8) if out is None else out
        for i, row in enumerate(rows):
            start, length = self.index[row]
            with Image.open(io.BytesIO(self.blobs[start : start + length])) as image:
                out[i] = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
        return out


@dataclass
class ImageStore:
    """An opened store: its rows (raw or JPEG), the kept rows and their labels, the manifest."""

    path: Path
    manifest: dict[str, Any]
    reader: RawRows | JpegRows
    rows: np.ndarray
    labels: np.ndarray

    @classmethod
    def open(
        cls, path: str | Path, *, root: str | Path | None = None, stored_size: int | None = None
    ) -> ImageStore:
        """Open and check a store; a one-line :class:`DataError` when it cannot be used."""
        path = Path(path)
        manifest = read_manifest(path)
        if manifest is None:
            raise DataError(
                f"no prepared data at '{path}' (never built, or its build did not finish); "
                + _prepare_hint(root, stored_size)
            )
        if manifest.get("version") != VERSION:
            raise DataError(
                f"prepared data at '{path}' has format version {manifest.get('version')}, this "
                f"alexnet-bench reads version {VERSION}; delete '{path}' and rebuild it"
            )
        if stored_size is not None and manifest["stored_size"] != stored_size:
            raise DataError(
                f"prepared data at '{path}' holds {manifest['stored_size']} px images, the run "
                f"needs data.stored_size {stored_size}; " + _prepare_hint(root, stored_size)
            )
        if root is not None and Path(manifest["source_root"]) != Path(root).expanduser().resolve():
            raise DataError(
                f"prepared data at '{path}' was built from '{manifest['source_root']}', not "
                f"data.root '{root}'; set data.cache to the cache of '{root}' or "
                + _prepare_hint(root, stored_size)
            )
        images = manifest["images"]
        shape = tuple(images["shape"])
        try:
            rows, labels = np.load(path / ROWS), np.load(path / LABELS)
            if images["encoding"] == "jpeg":
                index = np.load(path / JPEG_INDEX)
                blobs = np.memmap(path / JPEG_BLOBS, dtype=np.uint8, mode="r")
                reader: RawRows | JpegRows = JpegRows(blobs, index, shape[1:])
                found = (len(index), *shape[1:]) if int(index[:, 1].sum()) == blobs.size else ()
            else:
                array = np.load(path / IMAGES, mmap_mode="r")
                reader = RawRows(array)
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
        return cls(path, manifest, reader, rows, labels)

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def cache_format(self) -> str:
        """``raw`` or ``jpeg<quality>`` (``data.cache_format``)."""
        images = self.manifest["images"]
        return "raw" if images["encoding"] == "raw" else f"jpeg{images['quality']}"

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


# -- building ------------------------------------------------------------------------------
_worker: dict[str, Any] = {}
Bad = tuple[int, str, str]  # row, path, reason


def _init_worker(fmt: dict[str, Any], forked: bool = False) -> None:
    if forked:  # the parent's handlers (launch.py) would turn the pool's SIGTERM into tracebacks
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the pool
    _worker.clear()
    _worker.update(fmt)
    if fmt["encoding"] == "raw":
        _worker["fd"] = os.open(fmt["images"], os.O_WRONLY)


def _close_worker() -> None:
    if "fd" in _worker:
        os.close(_worker.pop("fd"))


def _decode_chunk(task: tuple[int, list[str]]) -> tuple[int, list[Bad], list[tuple[int, bytes]]]:
    """Decode images ``start..``: raw rows go straight into their place in the images file,
    JPEG blobs back to the parent (which appends them); the bad files are returned."""
    start, paths = task
    size, encoding = _worker["size"], _worker["encoding"]
    bad: list[Bad] = []
    blobs: list[tuple[int, bytes]] = []
    for i, path in enumerate(paths):
        try:
            array = decode_image(path, size)
        except BadImage as exc:
            bad.append((start + i, path, exc.reason))
            continue
        if encoding == "raw":
            offset = _worker["offset"] + (start + i) * 3 * size * size
            os.pwrite(_worker["fd"], memoryview(array).cast("B"), offset)
        else:
            buffer = io.BytesIO()
            Image.fromarray(array.transpose(1, 2, 0)).save(buffer, "JPEG",
                                                           quality=_worker["quality"])  # fmt: skip
            blobs.append((start + i, buffer.getvalue()))
    return len(paths), bad, blobs


@contextlib.contextmanager
def _build_lock(dest: Path) -> Iterator[None]:
    """Exclusive lock of one store's build (released by the kernel if the process dies)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _allocate(path: Path, shape: tuple[int, ...], shown_as: Path) -> int:
    """Create the .npy file of ``shape`` uint8 with all its space reserved; returns the data
    offset. A full disk fails here, before any decoding, with one line."""
    free = shutil.disk_usage(path.parent).free
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|u1", "fortran_order": False, "shape": shape}
        )
        offset = fh.tell()
        total = offset + int(np.prod(shape))
        try:
            os.posix_fallocate(fh.fileno(), 0, total)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise DiskFullError(disk_full_message(shown_as, total, free)) from None
    return offset


class _Progress:
    """A log line every ``every_s`` seconds: done/total, images/s, ETA."""

    def __init__(self, name: str, total: int, every_s: float) -> None:
        self.name, self.total, self.every_s = name, total, every_s
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        log.info("prepare %s: %d/%d images (%.1f%%), %.0f images/s, ETA %s", self.name, done,
                 self.total, 100 * done / self.total, rate, _duration(eta))  # fmt: skip


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _decode_all(
    paths: list[str], fmt: dict[str, Any], workers: int, on_bad_image: str,
    progress: _Progress, blob_file: IO[bytes] | None, index: np.ndarray | None,
) -> list[Bad]:  # fmt: skip
    """Decode ``paths`` over ``workers`` processes into the store being built; the bad files,
    by row. JPEG blobs are appended to ``blob_file`` and located in ``index``."""
    tasks = [(start, paths[start : start + CHUNK]) for start in range(0, len(paths), CHUNK)]
    bad: list[Bad] = []
    done = 0

    def account(result: tuple[int, list[Bad], list[tuple[int, bytes]]]) -> None:
        nonlocal done
        count, found, blobs = result
        done += count
        bad.extend(found)
        if found and on_bad_image == "fail":
            _, path, reason = min(found)
            raise BadImage(path, reason)
        if blob_file is not None and index is not None:
            for row, blob in blobs:
                index[row] = (blob_file.tell(), len(blob))
                blob_file.write(blob)
        progress.update(done)

    if workers <= 1:
        _init_worker(fmt)
        try:
            for task in tasks:
                account(_decode_chunk(task))
        finally:
            _close_worker()
        return sorted(bad)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_worker,
                                     initargs=(fmt, True)) as pool:  # fmt: skip
        for result in pool.imap_unordered(_decode_chunk, tasks):
            account(result)  # leaving early (a bad file under "fail", an error) kills the pool
        pool.close()
        pool.join()
    return sorted(bad)


def build_store(
    scan: TreeScan,
    split: str,
    stored_size: int,
    dest: str | Path,
    *,
    encoding: str = "raw",
    quality: int = JPEG_QUALITY,
    on_bad_image: str = "fail",
    workers: int = 1,
    progress_every_s: float = 10.0,
) -> dict[str, Any]:
    """Decode ``scan``'s ``split`` at ``stored_size`` into a store at ``dest``; its manifest.

    ``encoding``: ``raw`` (uint8 rows) or ``jpeg`` (re-encoded at ``quality``). A complete
    store of the same tree state already at ``dest`` is kept as it is (another process built it
    meanwhile). Leftovers of killed builds are removed; once the new store is in place, stores
    of an older state of the same tree (same split, size and encoding) are deleted.
    """
    dest = Path(dest)
    with _build_lock(dest):
        existing = read_manifest(dest)
        if existing is not None and existing.get("fingerprint") == scan.fingerprint:
            log.info("prepared data at %s is up to date", dest)
            return existing
        for leftover in dest.parent.glob(f"{dest.name}.tmp-*"):
            log.info("removing %s, left by a build that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        tmp.mkdir()
        try:
            manifest = _build(scan, split, stored_size, tmp, dest, encoding, quality,
                              on_bad_image, workers, progress_every_s)  # fmt: skip
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(tmp, dest)
            _fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("prepared %s: %d images (%s) in %.1f s, %.0f images/s over %d worker(s); "
             "%d skipped, %d non-image files ignored", dest, manifest["num_images"],
             human_bytes(manifest["images"]["bytes"]), manifest["build"]["seconds"],
             manifest["build"]["images_per_s"], workers, len(manifest["skipped"]),
             manifest["ignored"]["count"])  # fmt: skip
    _remove_older_builds(dest, manifest)
    return manifest


def _build(
    scan: TreeScan, split: str, size: int, tmp: Path, dest: Path, encoding: str, quality: int,
    on_bad_image: str, workers: int, progress_every_s: float,
) -> dict[str, Any]:  # fmt: skip
    files = scan.splits[split]
    n = len(files.paths)
    shape = (n, 3, size, size)
    start = time.perf_counter()
    progress = _Progress(f"{dest.parent.name}/{dest.name}", n, progress_every_s)
    paths = [str(p) for p in files.paths]
    free = shutil.disk_usage(tmp).free
    if encoding == "raw":
        offset = _allocate(tmp / IMAGES, shape, dest / IMAGES)
        fmt = {"encoding": "raw", "size": size, "images": str(tmp / IMAGES), "offset": offset}
        images = {"encoding": "raw", "file": IMAGES, "shape": list(shape), "dtype": "uint8",
                  "bytes": offset + n * 3 * size * size}  # fmt: skip
        written: Path = tmp / IMAGES
    else:
        fmt = {"encoding": "jpeg", "size": size, "quality": quality}
        written = tmp / JPEG_BLOBS
    index = np.zeros((n, 2), dtype=np.int64) if encoding == "jpeg" else None
    try:
        with open(tmp / JPEG_BLOBS, "wb") if index is not None else contextlib.nullcontext() as fh:
            bad = _decode_all(paths, fmt, workers, on_bad_image, progress, fh, index)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fitted = written.stat().st_size if written.exists() else 0
            needed = (offset + n * 3 * size * size) if encoding == "raw" else None
            raise DiskFullError(
                disk_full_message(dest / written.name, needed, free, fitted)
            ) from None
        raise
    if index is not None:
        np.save(tmp / JPEG_INDEX, index)
        blob_bytes = int(index[:, 1].sum())
        images = {"encoding": "jpeg", "quality": quality, "file": JPEG_BLOBS, "index": JPEG_INDEX,
                  "shape": list(shape), "bytes": blob_bytes,
                  "bytes_per_image": round(blob_bytes / max(1, n - len(bad)))}  # fmt: skip
    bad_rows = {row for row, _, _ in bad}
    rows = np.array([i for i in range(n) if i not in bad_rows], dtype=np.int64)
    if not len(rows):
        raise DataError(f"no decodable images among the {n} files of '{scan.root}' ({split})")
    np.save(tmp / ROWS, rows)
    np.save(tmp / LABELS, np.asarray(files.labels, dtype=np.int64)[rows])
    for path in tmp.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    seconds = time.perf_counter() - start
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source_root": str(scan.root.resolve()),
        "layout": scan.layout,
        "val_fraction": scan.val_fraction,
        "split": split,
        "stored_size": size,
        "resize": RESIZE_RULE.format(s=size),
        "fingerprint": scan.fingerprint,
        "classes": scan.classes,
        "num_files": n,
        "num_images": len(rows),
        "images": images,
        "skipped": [{"path": path, "reason": reason} for _, path, reason in bad],
        "ignored": {
            "count": len(scan.ignored),
            "examples": [str(p) for p in scan.ignored[:20]],
        },
        "decoders": _decoder_versions(),
        "build": {
            "seconds": round(seconds, 2),
            "images_per_s": round(n / max(seconds, 1e-9), 1),
            "workers": workers,
            "on_bad_image": on_bad_image,
            "host": platform.node(),
            "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "alexnet_bench": __version__,
        },
    }
    write_json(tmp / MANIFEST, manifest)
    return manifest


def _decoder_versions() -> dict[str, str | None]:
    import PIL
    import torchvision
    from PIL import features

    return {
        "pillow": PIL.__version__,
        "torchvision": torchvision.__version__,
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
        "numpy": np.__version__,
    }


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_older_builds(dest: Path, manifest: dict[str, Any]) -> None:
    """Delete stores of an older state of the same tree (same root, split and size)."""
    cache_dir = dest.parent.parent
    for other_tree in cache_dir.iterdir():
        if other_tree == dest.parent or not other_tree.is_dir():
            continue
        other = other_tree / dest.name
        old = read_manifest(other)
        if old is None or old.get("source_root") != manifest["source_root"]:
            continue
        log.warning("removing %s: built from an older state of %s", other, old["source_root"])
        shutil.rmtree(other, ignore_errors=True)
        with contextlib.suppress(OSError):
            other_tree.rmdir()  # only if no other split or size is left in it


def describe(path: str | Path) -> str:
    """What a store (or every store of a tree directory) holds, for ``alexnet-bench data-info``."""
    path = Path(path)
    if read_manifest(path) is not None:
        stores = [path]
    elif path.is_dir():
        stores = sorted(p for p in path.iterdir() if p.is_dir() and read_manifest(p) is not None)
    else:
        stores = []
    if not stores:
        raise DataError(
            f"'{path}' holds no prepared data (no manifest.json of a complete build); "
            "pass a store (<cache>/<tree>/<split>-<S>px) or its tree directory"
        )
    return "\n\n".join(_describe_one(p, read_manifest(p) or {}) for p in stores)


def _describe_one(path: Path, m: dict[str, Any]) -> str:
    build, skipped = m["build"], m["skipped"]
    lines = [
        f"{path}",
        f"  source      {m['source_root']} ({m['layout']}"
        + (f", val_fraction {m['val_fraction']}" if m["val_fraction"] is not None else "")
        + f"), split {m['split']}",
        f"  images      {m['num_images']:,} of {m['num_files']:,} files, {len(m['classes'])} "
        f"classes, {m['stored_size']} px ({m['resize']})",
        f"  on disk     {human_bytes(m['images']['bytes'])} ({m['images']['file']}: "
        + (
            "uint8 "
            if m["images"]["encoding"] == "raw"
            else f"JPEG quality {m['images']['quality']}, "
        )
        + f"{' x '.join(map(str, m['images']['shape']))})",
        f"  built       {build['finished_utc']} on {build['host']}: {build['seconds']} s, "
        f"{build['images_per_s']:,} images/s over {build['workers']} worker(s)",
        "  decoders    " + ", ".join(f"{k} {v}" for k, v in m["decoders"].items() if v),
        f"  fingerprint {m['fingerprint']}",
        f"  skipped     {len(skipped)} bad file(s)"
        + "".join(f"\n    {s['path']}: {s['reason']}" for s in skipped[:10])
        + (f"\n    ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""),
        f"  ignored     {m['ignored']['count']} non-image file(s) in the tree",
    ]
    return "\n".join(lines)
