"""A store's on-disk format: file names, the manifest, the content digest, and when a store of a
tree state can still be used.

A *store* holds one split of an image folder at one stored size, decoded exactly as the direct
path decodes it (:func:`~alexnet_bench.data.sources.decode_image`), in one of two encodings:

* ``raw``: ``images.npy``, N x 3 x S x S uint8 (memory-mapped by readers): the pixels exactly.
* ``jpeg``: ``images.jpg.bin`` (every decoded image re-encoded as a JPEG at ``quality``) and
  ``index.npy`` (offset, length per row); decoded again by the loader's threads. Lossy.

Beside the images: ``rows.npy`` (the row of every image kept: a bad file skipped under
``on_bad_image: skip`` keeps its unused row), ``labels.npy``, ``.lease`` (readers hold a shared
lock on it, :mod:`.locks`) and ``manifest.json``, written last.

Two identities, two jobs:

* the tree's *fingerprint* (relative paths, sizes and mtimes of every image, and the split rule;
  :func:`alexnet_bench.imagefolder.scan_tree`) decides whether a store must be rebuilt;
* the store's *digest* (:class:`ContentDigest`) is what training reads: the stored bytes of every
  kept image in order, the labels and the class names. A rebuild that reads the same pixels
  (a touched file, a restored backup) has the same digest, and retrains nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ... import imagefolder
from ...imagefolder import STORE_VERSION

FORMAT = "alexnet-bench-image-store"
VERSION = STORE_VERSION  # 2: the content digest and the reader lease
MANIFEST, IMAGES, ROWS, LABELS = "manifest.json", "images.npy", "rows.npy", "labels.npy"
JPEG_BLOBS, JPEG_INDEX = "images.jpg.bin", "index.npy"
LEASE = ".lease"  # readers hold a shared lock on it; removal needs the exclusive one
SUPERSEDED = ".superseded"  # a newer build replaced this store while a reader held it
CURRENT = imagefolder.CURRENT  # touched whenever a build finds (or makes) this store current
DIGEST_VERSION = "alexnet-bench-data-digest/1"
JPEG_QUALITY = 90
RESIZE_RULE = "RGB; shorter side to {s} (Pillow bilinear, antialiased); centre crop {s} x {s}"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a complete store at ``path``, or None (absent, unfinished, foreign)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest


def cache_format_of(manifest: dict[str, Any]) -> str:
    """A store's ``data.cache_format``: ``raw`` or ``jpeg<quality>``."""
    images = manifest.get("images") or {}
    return "raw" if images.get("encoding") == "raw" else f"jpeg{images.get('quality')}"


def stale_reason(manifest: dict[str, Any], fingerprint: str) -> str | None:
    """Why the store of ``manifest`` cannot stand for the tree state ``fingerprint`` (None: it
    can): another state of the tree, another format version, or other decoders."""
    if manifest.get("fingerprint") != fingerprint:
        return "it was built from another state of the tree"
    return other_environment(manifest)


def other_environment(manifest: dict[str, Any]) -> str | None:
    """How the store of ``manifest`` was made otherwise than this environment makes one (None:
    the same way): another format version, or other decoders."""
    if manifest.get("version") != VERSION:
        return (
            f"it has format version {manifest.get('version')}, this alexnet-bench writes {VERSION}"
        )
    built = manifest.get("decoders") or {}
    changed = [
        f"{name} {built.get(name)} -> {now}"
        for name, now in imagefolder.decoder_versions().items()
        if built.get(name) != now
    ]
    if changed:
        return "it was decoded by other library versions (" + ", ".join(changed) + ")"
    return None


def image_digest(data: bytes | memoryview | np.ndarray) -> bytes:
    """sha256 of one stored image (its raw CHW bytes, or its JPEG blob)."""
    view = memoryview(np.ascontiguousarray(data)) if isinstance(data, np.ndarray) else data
    return hashlib.sha256(view).digest()


class ContentDigest:
    """The digest of what training reads from a store, built row by row in any order.

    sha256 over: the digest version; the class names, stored size and encoding; the labels of
    the kept rows (int64, in order); then, for every kept row in order, its row number and the
    sha256 of its stored bytes. Independent of how the build was parallelised.
    """

    def __init__(
        self,
        classes: list[str],
        stored_size: int,
        encoding: str,
        quality: int | None,
        num_rows: int,
    ) -> None:
        self.header = json.dumps(
            {
                "classes": list(classes),
                "stored_size": stored_size,
                "encoding": encoding,
                "quality": quality,
            },
            sort_keys=True,
        )
        self.rows: list[bytes | None] = [None] * num_rows

    def add(self, row: int, digest: bytes) -> None:
        self.rows[row] = digest

    def hexdigest(self, kept: np.ndarray, labels: np.ndarray) -> str:
        """The digest of the kept rows (every one of them added) with their labels."""
        h = hashlib.sha256(f"{DIGEST_VERSION}\n{self.header}\n".encode())
        h.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
        for row in kept.tolist():
            digest = self.rows[row]
            if digest is None:
                raise ValueError(f"row {row} was kept but never digested")
            h.update(int(row).to_bytes(8, "little") + digest)
        return h.hexdigest()
