"""Building a store: decode a split over worker processes into a temporary directory, digest what
it holds, and rename it into place only when complete.

A build runs under the store's build lock, so two studies asking for the same store build it
once (the second finds it up to date); a killed or disk-full build leaves no directory with a
manifest, and a store without one is never read. A store is up to date for a tree state when
its fingerprint, format version and decoder versions all match (:func:`.manifest.stale_reason`);
otherwise it is rebuilt, with one log line saying why. The decoders are in a store's name too
(:func:`~alexnet_bench.imagefolder.store_name`), so environments with other decoders sharing a
cache each keep their own store; a store of the same tree state, format and decoders built before
names carried them is renamed into place, not rebuilt. Once a new store is in place, the stores
it supersedes are removed unless a job still reads them (:mod:`.maintenance`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import multiprocessing as mp
import os
import platform
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from ... import __version__, imagefolder
from ...errors import DataError, DiskFullError
from ...imagefolder import DECODER_TAG, TreeScan, parse_cache_format, scan_tree, store_dir, tree_dir
from ...io import disk_full_message, human_bytes, write_json
from ...progress import CountProgress
from ..sources import BadImage, decode_image
from . import locks
from .manifest import (
    FORMAT,
    IMAGES,
    JPEG_BLOBS,
    JPEG_INDEX,
    JPEG_QUALITY,
    LABELS,
    LEASE,
    MANIFEST,
    RESIZE_RULE,
    ROWS,
    VERSION,
    ContentDigest,
    image_digest,
    read_manifest,
    stale_reason,
)

log = logging.getLogger(__name__)

CHUNK = 32  # images per worker task
Bad = tuple[int, str, str]  # row, path, reason
Chunk = tuple[int, list[Bad], list[tuple[int, bytes]], list[tuple[int, bytes]]]
_worker: dict[str, Any] = {}


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


def _decode_chunk(task: tuple[int, list[str]]) -> Chunk:
    """Decode images ``start..``: raw rows go straight into their place in the images file,
    JPEG blobs back to the parent (which appends them); the bad files and the digest of every
    stored image are returned."""
    start, paths = task
    size, encoding = _worker["size"], _worker["encoding"]
    bad: list[Bad] = []
    blobs: list[tuple[int, bytes]] = []
    digests: list[tuple[int, bytes]] = []
    for i, path in enumerate(paths):
        row = start + i
        try:
            array = decode_image(path, size)
        except BadImage as exc:
            bad.append((row, path, exc.reason))
            continue
        if encoding == "raw":
            offset = _worker["offset"] + row * 3 * size * size
            data = memoryview(array).cast("B")
            while data:  # pwrite may write less than asked
                written = os.pwrite(_worker["fd"], data, offset)
                data, offset = data[written:], offset + written
            digests.append((row, image_digest(array)))
        else:
            buffer = io.BytesIO()
            image = Image.fromarray(array.transpose(1, 2, 0))
            image.save(buffer, "JPEG", quality=_worker["quality"])
            blobs.append((row, buffer.getvalue()))
            digests.append((row, image_digest(buffer.getbuffer())))
    return len(paths), bad, blobs, digests


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


class _Sink:
    """Where the parent puts what the workers return: bad files, JPEG blobs, digests."""

    def __init__(
        self,
        on_bad_image: str,
        progress: CountProgress,
        digest: ContentDigest,
        blob_file: IO[bytes] | None,
        index: np.ndarray | None,
    ) -> None:
        self.on_bad_image, self.progress, self.digest = on_bad_image, progress, digest
        self.blob_file, self.index = blob_file, index
        self.bad: list[Bad] = []
        self.done = 0

    def take(self, result: Chunk) -> None:
        count, found, blobs, digests = result
        self.done += count
        self.bad.extend(found)
        if found and self.on_bad_image == "fail":
            _, path, reason = min(found)
            raise BadImage(path, reason)
        if self.blob_file is not None and self.index is not None:
            for row, blob in blobs:
                self.index[row] = (self.blob_file.tell(), len(blob))
                self.blob_file.write(blob)
        for row, value in digests:
            self.digest.add(row, value)
        self.progress.update(self.done)


def _decode_all(paths: list[str], fmt: dict[str, Any], workers: int, sink: _Sink) -> list[Bad]:
    """Decode ``paths`` over ``workers`` processes into the store being built; the bad files,
    by row."""
    tasks = [(start, paths[start : start + CHUNK]) for start in range(0, len(paths), CHUNK)]
    if workers <= 1:
        _init_worker(fmt)
        try:
            for task in tasks:
                sink.take(_decode_chunk(task))
        finally:
            _close_worker()
        return sorted(sink.bad)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.get_context(method)
    with context.Pool(workers, initializer=_init_worker, initargs=(fmt, True)) as pool:
        for result in pool.imap_unordered(_decode_chunk, tasks):
            sink.take(result)  # leaving early (a bad file under "fail", an error) kills the pool
        pool.close()
        pool.join()
    return sorted(sink.bad)


def _kept_if_current(dest: Path, scan: TreeScan) -> dict[str, Any] | None:
    """The manifest of the store at ``dest`` when it is up to date for ``scan`` (marked current,
    the stores it supersedes removed: the tree may have come back to it), else None."""
    existing = read_manifest(dest)
    if existing is None or stale_reason(existing, scan.fingerprint) is not None:
        return None
    log.info("prepared data at %s is up to date", dest)
    from .maintenance import remove_superseded_by

    remove_superseded_by(dest, existing)
    return existing


def _adopt_untagged(dest: Path, scan: TreeScan) -> dict[str, Any] | None:
    """The store of ``dest``'s split, size and format under the name alexnet-bench gave it
    before names carried the decoder tag (``train-36px``), renamed to ``dest`` when it is up to
    date for ``scan`` (same tree state, format version and decoders): an upgrade rebuilds
    nothing. A job already reading it keeps its open files and its lease; one opening it at
    that moment looks for it again (``data.opening._open_store``)."""
    untagged = dest.with_name(DECODER_TAG.sub("", dest.name))
    if untagged == dest or read_manifest(dest) is not None:
        return None
    with locks.exclusive(untagged.parent / f".{untagged.name}.build.lock"):  # the old builder's
        manifest = read_manifest(untagged)
        if manifest is None or stale_reason(manifest, scan.fingerprint) is not None:
            return None
        try:
            os.rename(untagged, dest)  # (over an empty directory left at dest, too)
        except OSError:  # removed meanwhile (data-gc), or dest is not empty: build instead
            return None
        _fsync_dir(dest.parent)
    log.info("prepared data at %s is up to date (renamed from %s)", dest, untagged.name)
    from .maintenance import remove_superseded_by

    remove_superseded_by(dest, manifest)
    return manifest


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

    ``encoding``: ``raw`` (uint8 rows) or ``jpeg`` (re-encoded at ``quality``). A store at
    ``dest`` that is up to date for this tree state is kept as it is (another process may have
    built it meanwhile); a stale one is rebuilt, saying why. Leftovers of killed builds are
    removed; once the new store is in place, the stores it supersedes (same tree, split rule,
    split, size and encoding, older state) are removed unless a job still reads them.
    """
    dest = Path(dest)
    # Up to date needs no lock (a manifest is written last, inside the finished build, before
    # it is renamed into place), so a user who may not create the lock file in another user's
    # tree directory can still use the store that user built.
    existing = _kept_if_current(dest, scan)
    if existing is not None:
        return existing
    with locks.exclusive(dest.parent / f".{dest.name}.build.lock"):
        existing = _kept_if_current(dest, scan)  # another process may have built it meanwhile
        if existing is None:
            existing = _adopt_untagged(dest, scan)
        if existing is not None:
            return existing
        existing = read_manifest(dest)
        if existing is not None:
            log.info("rebuilding %s: %s", dest, stale_reason(existing, scan.fingerprint))
        for leftover in dest.parent.glob(f"{dest.name}.tmp-*"):
            log.info("removing %s, left by a build that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        tmp.mkdir()
        try:
            manifest = _build(
                scan,
                split,
                stored_size,
                tmp,
                dest,
                encoding,
                quality,
                on_bad_image,
                workers,
                progress_every_s,
            )
            _move_into_place(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info(
        "prepared %s: %d images (%s) in %.1f s, %.0f images/s over %d worker(s); %d skipped, "
        "%d non-image files ignored; digest %s",
        dest,
        manifest["num_images"],
        human_bytes(manifest["images"]["bytes"]),
        manifest["build"]["seconds"],
        manifest["build"]["images_per_s"],
        workers,
        len(manifest["skipped"]),
        manifest["ignored"]["count"],
        manifest["digest"][:16],
    )
    from .maintenance import remove_superseded_by

    remove_superseded_by(dest, manifest)
    return manifest


def _move_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished build to ``dest``; a stale store there is moved aside first and
    removed unless a job still reads it."""
    from .maintenance import tidy

    replaced = None
    if dest.exists():
        replaced = dest.with_name(f".{dest.name}.replaced-{os.getpid()}")
        os.rename(dest, replaced)
    os.rename(tmp, dest)
    _fsync_dir(dest.parent)
    if replaced is not None:
        tidy(replaced)


def _build(
    scan: TreeScan,
    split: str,
    size: int,
    tmp: Path,
    dest: Path,
    encoding: str,
    quality: int,
    on_bad_image: str,
    workers: int,
    progress_every_s: float,
) -> dict[str, Any]:
    files = scan.splits[split]
    n = len(files.paths)
    shape = (n, 3, size, size)
    start = time.perf_counter()
    progress = CountProgress(
        f"prepare {dest.parent.name}/{dest.name}", n, progress_every_s, logger=log
    )
    digest = ContentDigest(scan.classes, size, encoding, quality if encoding == "jpeg" else None, n)
    paths = [str(p) for p in files.paths]
    free = shutil.disk_usage(tmp).free
    offset = 0
    if encoding == "raw":
        offset = _allocate(tmp / IMAGES, shape, dest / IMAGES)
        fmt = {"encoding": "raw", "size": size, "images": str(tmp / IMAGES), "offset": offset}
        written: Path = tmp / IMAGES
    else:
        fmt = {"encoding": "jpeg", "size": size, "quality": quality}
        written = tmp / JPEG_BLOBS
    index = np.zeros((n, 2), dtype=np.int64) if encoding == "jpeg" else None
    try:
        with open(tmp / JPEG_BLOBS, "wb") if index is not None else contextlib.nullcontext() as fh:
            sink = _Sink(on_bad_image, progress, digest, fh, index)
            bad = _decode_all(paths, fmt, workers, sink)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fitted = written.stat().st_size if written.exists() else 0
            needed = (offset + n * 3 * size * size) if encoding == "raw" else None
            raise DiskFullError(
                disk_full_message(dest / written.name, needed, free, fitted)
            ) from None
        raise
    bad_rows = {row for row, _, _ in bad}
    rows = np.array([i for i in range(n) if i not in bad_rows], dtype=np.int64)
    if not len(rows):
        raise DataError(f"no decodable images among the {n} files of '{scan.root}' ({split})")
    labels = np.asarray(files.labels, dtype=np.int64)[rows]
    if index is not None:
        np.save(tmp / JPEG_INDEX, index)
        blob_bytes = int(index[:, 1].sum())
        images = {
            "encoding": "jpeg",
            "quality": quality,
            "file": JPEG_BLOBS,
            "index": JPEG_INDEX,
            "shape": list(shape),
            "bytes": blob_bytes,
            "bytes_per_image": round(blob_bytes / max(1, len(rows))),
        }
    else:
        images = {
            "encoding": "raw",
            "file": IMAGES,
            "shape": list(shape),
            "dtype": "uint8",
            "bytes": offset + n * 3 * size * size,
        }
    np.save(tmp / ROWS, rows)
    np.save(tmp / LABELS, labels)
    (tmp / LEASE).touch()
    for path in tmp.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    seconds = time.perf_counter() - start
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "digest": digest.hexdigest(rows, labels),
        "source_root": str(scan.root.resolve()),
        "layout": scan.layout,
        "val_fraction": scan.val_fraction,
        "split": split,
        "stored_size": size,
        "resize": RESIZE_RULE.format(s=size),
        "fingerprint": scan.fingerprint,
        "key": scan.key,
        "classes": scan.classes,
        "num_files": n,
        "num_images": len(rows),
        "images": images,
        "skipped": [{"path": path, "reason": reason} for _, path, reason in bad],
        "ignored": {"count": len(scan.ignored), "examples": [str(p) for p in scan.ignored[:20]]},
        "decoders": imagefolder.decoder_versions(),
        "build": {
            "seconds": round(seconds, 2),
            "images_per_s": round(n / max(seconds, 1e-9), 1),
            "workers": workers,
            "on_bad_image": on_bad_image,
            "host": platform.node(),
            "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "alexnet_bench": __version__,
        },
    }
    write_json(tmp / MANIFEST, manifest)
    return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_store(
    root: str | Path,
    val_fraction: float,
    split: str,
    stored_size: int,
    cache_format: str,
    cache_dir: str | Path,
    *,
    fingerprint: str | None = None,
    on_bad_image: str = "fail",
    workers: int = 1,
    progress_every_s: float = 10.0,
) -> tuple[Path, dict[str, Any]]:
    """The store of ``root``'s current state in ``cache_dir`` (found wherever it lies in the
    cache, or built): its path and manifest. ``fingerprint``: the state the caller planned
    for; a tree that has changed since is a one-line :class:`DataError`."""
    scan = scan_tree(root, val_fraction)
    if fingerprint is not None and scan.fingerprint != fingerprint:
        raise DataError(
            f"the tree '{root}' changed since this job was planned (fingerprint "
            f"{scan.fingerprint[:12]}, planned {fingerprint[:12]}); rerun snakemake to plan it again"
        )
    encoding, quality = parse_cache_format(cache_format)
    dest = store_dir(tree_dir(cache_dir, scan), split, stored_size, cache_format)
    manifest = build_store(
        scan,
        split,
        stored_size,
        dest,
        encoding=encoding,
        quality=quality or JPEG_QUALITY,
        on_bad_image=on_bad_image,
        workers=workers,
        progress_every_s=progress_every_s,
    )
    return dest, manifest
