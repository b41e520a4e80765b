"""ImageFolder trees without decoding: which files are images, the train/val split, a fingerprint.

``root/<class>/**/<image>`` (one tree, split by ``val_fraction``) or ``root/train/<class>/...``
plus ``root/val/<class>/...``. A file is an image by its extension, as torchvision's
``ImageFolder`` decides (:data:`IMAGE_EXTENSIONS`, any case); anything else (a README.txt, a
.DS_Store, macOS ``._`` files) is *ignored* and counted, never decoded.

The fingerprint hashes the layout, the split rule and every image's relative path, size and
modification time: it changes when an image is added, removed, renamed or rewritten (or merely
touched), and nothing else changes it; moving the tree elsewhere leaves it as it is. It decides
when the prepared-data cache (:mod:`alexnet_bench.data.store`) must rebuild a store. The *key*
hashes the layout, the split rule, the class names, the relative paths and the sizes, not the
times: it names the tree's data in a study (the workflow's prepared-data tokens) wherever the
tree lies and whatever its files' times.

Torch-free, and PIL only to read the decoders' versions (a store's name carries them): the
Snakemake workflow imports this module to plan the cache before any job starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

#: torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")


@dataclass
class FolderSplit:
    """File paths and integer labels of one split of an ImageFolder tree."""

    paths: list[str]
    labels: list[int]
    classes: list[str] = field(default_factory=list)


@dataclass
class TreeScan:
    """One listing of a tree: its splits, the files it ignored and its fingerprint."""

    root: Path
    layout: str  # "train_val" (root/train + root/val) or "single" (split by val_fraction)
    val_fraction: float | None  # the split rule of a single tree; None for train_val
    classes: list[str]
    splits: dict[str, FolderSplit]
    ignored: list[str]
    fingerprint: str
    key: str = ""  # layout, split rule, class names, relative paths and sizes (no times)

    @property
    def train(self) -> FolderSplit:
        return self.splits["train"]

    @property
    def val(self) -> FolderSplit:
        return self.splits["val"]


def is_image_name(name: str) -> bool:
    """Whether a file name is an image by torchvision's rule (and not a hidden/dot file)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(directory: str) -> Iterator[os.DirEntry[str]]:
    """Every file under ``directory`` (symbolic links to directories and files followed)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from _walk(entry.path)
            elif entry.is_file():
                yield entry


def _path_order(item: tuple[str, int, int]) -> list[str]:
    """Sort key giving pathlib's order (component by component), without Path objects: a
    listing of ImageNet's 1.28 M files in plain strings takes seconds, in Paths a minute."""
    return item[0].split(os.sep)


@dataclass
class _ClassFiles:
    classes: list[str]
    files: list[list[tuple[str, int, int]]]  # per class: (path, size, mtime_ns), sorted
    ignored: list[str]


def _scan_classes(top: str) -> _ClassFiles:
    with os.scandir(top) as entries:
        listed = list(entries)
    names = sorted(e.name for e in listed if e.is_dir() and not e.name.startswith("."))
    ignored = sorted(e.path for e in listed if e.is_file())
    files: list[list[tuple[str, int, int]]] = []
    for name in names:
        kept: list[tuple[str, int, int]] = []
        for entry in _walk(os.path.join(top, name)):
            if is_image_name(entry.name):
                st = entry.stat()
                kept.append((entry.path, st.st_size, st.st_mtime_ns))
            else:
                ignored.append(entry.path)
        kept.sort(key=_path_order)
        files.append(kept)
    return _ClassFiles(names, files, ignored)


def _check_classes(top: str, found: _ClassFiles) -> None:
    if sum(len(f) for f in found.files) == 0:
        extra = f" ({len(found.ignored)} non-image file(s) ignored)" if found.ignored else ""
        raise DataError(
            f"data directory '{top}' holds no images{extra}; expected root/<class>/<image> files "
            f"with an image extension ({', '.join(IMAGE_EXTENSIONS)})"
        )
    non_empty = sum(1 for f in found.files if f)
    if non_empty < 2:
        raise DataError(
            f"data directory '{top}' has {non_empty} non-empty class folder(s); "
            "a classifier needs at least 2 (root/<class>/<image>)"
        )


def _split_of(found: _ClassFiles, classes: Sequence[str]) -> FolderSplit:
    return FolderSplit(
        [f[0] for per_class in found.files for f in per_class],
        [label for label, per_class in enumerate(found.files) for _ in per_class],
        list(classes),
    )


def _hold_out(found: _ClassFiles, val_fraction: float, seed: int) -> dict[str, FolderSplit]:
    """A deterministic stratified ``val_fraction`` of every class (at least one image of a class
    with two or more) for validation."""
    import numpy as np  # only a single-tree layout needs it

    rng = np.random.Generator(np.random.PCG64(seed))
    train = FolderSplit([], [], list(found.classes))
    val = FolderSplit([], [], list(found.classes))
    for label, class_files in enumerate(found.files):
        order = rng.permutation(len(class_files))
        n_val = max(1, round(len(class_files) * val_fraction)) if len(class_files) > 1 else 0
        for rank, idx in enumerate(order):
            split = val if rank < n_val else train
            split.paths.append(class_files[idx][0])
            split.labels.append(label)
    return {"train": train, "val": val}


def _fingerprint(root: str, header: str, parts: Sequence[_ClassFiles], times: bool = True) -> str:
    """sha256 of the header and every image's relative path and size (with ``times``: and its
    modification time)."""
    digest = hashlib.sha256(header.encode())
    skip = len(root.rstrip(os.sep)) + 1
    for found in parts:
        for name, per_class in zip(found.classes, found.files, strict=True):
            digest.update(f"class\0{name}\n".encode())
            lines = (
                f"{path[skip:]}\0{size}\0{mtime}\n" if times else f"{path[skip:]}\0{size}\n"
                for path, size, mtime in per_class
            )
            digest.update("".join(lines).replace(os.sep, "/").encode(errors="surrogateescape"))
    return digest.hexdigest()


def scan_tree(root: str | Path, val_fraction: float, seed: int = 0) -> TreeScan:
    """List an ImageFolder tree once: its splits, the ignored files and its fingerprint.

    Raises :class:`DataError` (one line, with the fix) for a missing directory, a tree without
    images, one with fewer than two non-empty classes, or ``val/`` classes differing from
    ``train/``'s.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"data directory '{base}' does not exist; set data.root to an ImageFolder tree"
        )
    top = os.fspath(base)
    train_dir, val_dir = os.path.join(top, "train"), os.path.join(top, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):
        train, val = _scan_classes(train_dir), _scan_classes(val_dir)
        if val.classes != train.classes:
            raise DataError(
                f"'{base}/val' classes differ from '{base}/train' classes; make them match"
            )
        _check_classes(train_dir, train)
        splits = {"train": _split_of(train, train.classes), "val": _split_of(val, val.classes)}
        header = "layout=train_val\n"
        return TreeScan(
            base,
            "train_val",
            None,
            train.classes,
            splits,
            train.ignored + val.ignored,
            _fingerprint(top, header, (train, val)),
            _fingerprint(top, header, (train, val), False),
        )
    found = _scan_classes(top)
    _check_classes(top, found)
    header = f"layout=single\nval_fraction={val_fraction!r}\nseed={seed}\n"
    return TreeScan(
        base,
        "single",
        val_fraction,
        found.classes,
        _hold_out(found, val_fraction, seed),
        found.ignored,
        _fingerprint(top, header, (found,)),
        _fingerprint(top, header, (found,), False),
    )


# -- where the prepared-data cache keeps a tree (alexnet_bench.data.store writes it) ----------
#: the store format version (alexnet_bench.data.store.manifest; 2: the content digest and the
#: reader lease). Here so that planning reads it without importing torch.
STORE_VERSION = 2
#: the mark a build touches whenever it finds (or makes) a store current (manifest.CURRENT)
CURRENT = ".current"


def decoder_versions() -> dict[str, str | None]:
    """The libraries that decide a store's decoded pixels (and a JPEG store's bytes)."""
    import PIL
    from PIL import features

    return {
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
    }


def tree_dir(cache_dir: str | Path, scan: TreeScan) -> Path:
    """The directory of a tree state's stores: the cache's ``*-<fingerprint[:12]>`` directory
    if there is one (the tree may have been moved or renamed since it was built: the
    fingerprint has no location in it), else ``<cache dir>/<tree name>-<fingerprint[:12]>``."""
    suffix = f"-{scan.fingerprint[:12]}"
    with contextlib.suppress(OSError):
        existing = sorted(
            e.path for e in os.scandir(cache_dir) if e.name.endswith(suffix) and e.is_dir()
        )
        if existing:
            return Path(existing[0])
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", scan.root.name) or "tree"
    return Path(cache_dir) / f"{name}{suffix}"


CACHE_FORMAT = re.compile(r"raw|jpeg([1-9][0-9]?|100)")


def parse_cache_format(text: str) -> tuple[str, int | None]:
    """``raw`` -> ("raw", None); ``jpeg90`` -> ("jpeg", 90)."""
    match = CACHE_FORMAT.fullmatch(text)
    if match is None:
        raise ValueError(f"cache format '{text}' is neither raw nor jpeg<quality 1-100>")
    return ("raw", None) if text == "raw" else ("jpeg", int(match.group(1)))


def decoder_tag(version: object, decoders: dict[str, Any]) -> str:
    """``v<format version>-<8 hex digits of the decoders' versions>``: what a store's pixels
    depend on beyond the tree, in its directory name, so that environments with other decoders
    (another Pillow or libjpeg) sharing a cache keep a store each instead of rebuilding one
    store in place under each other's readers."""
    text = json.dumps(decoders, sort_keys=True, separators=(",", ":"))
    return f"v{version}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def store_name(
    split: str, stored_size: int, cache_format: str, version: object, decoders: dict[str, Any]
) -> str:
    """A store's directory name: ``<split>-<S>px[-jpeg<quality>]-<decoder tag>``."""
    suffix = "" if cache_format == "raw" else f"-{cache_format}"
    return f"{split}-{stored_size}px{suffix}-{decoder_tag(version, decoders)}"


#: the decoder tag at the end of a store's name (:func:`decoder_tag`)
DECODER_TAG = re.compile(r"-v[0-9]+-[0-9a-f]{8}$")


def store_dir(tree: str | Path, split: str, stored_size: int, cache_format: str = "raw") -> Path:
    """The store this environment reads for one split at one stored size and format:
    ``<tree dir>/<split>-<S>px-v2-1a2b3c4d`` (raw uint8) or ``...px-jpeg<quality>-v2-...``
    (:func:`store_name` with this alexnet-bench's format version and decoders)."""
    name = store_name(split, stored_size, cache_format, STORE_VERSION, decoder_versions())
    return Path(tree) / name


def store_candidates(
    tree: str | Path,
    split: str,
    stored_size: int,
    cache_format: str = "raw",
    digest: str | None = None,
) -> list[Path]:
    """Every complete store of one split, stored size and format in ``tree`` of this format
    version (with ``digest``: of that digest), in the order a reader prefers them: this
    environment's (:func:`store_dir`), the one named as before names carried the decoders,
    then other environments' (most recently confirmed first). Whichever a job reads, its
    digest is the data identity it checks."""
    own = store_dir(tree, split, stored_size, cache_format)
    base = DECODER_TAG.sub("", own.name)
    others = [p for p in Path(tree).glob(f"{base}-v{STORE_VERSION}-*") if p != own]
    others.sort(key=confirmed_at, reverse=True)
    found = [p for p in (own, Path(tree) / base, *others) if DECODER_TAG.sub("", p.name) == base]
    digests = [(p, read_store_digest(p)) for p in found]
    return [p for p, d in digests if d and (digest is None or d == digest)]


def confirmed_at(store: Path) -> float:
    """When a build last found the store current (its :data:`CURRENT` mark; epoch seconds), 0
    if never."""
    try:
        return (store / CURRENT).stat().st_mtime
    except OSError:
        return 0.0


def find_store(
    tree: str | Path,
    split: str,
    stored_size: int,
    cache_format: str = "raw",
    digest: str | None = None,
) -> Path:
    """The store a reader of ``tree`` opens: the first of :func:`store_candidates` (a store
    made by an older alexnet-bench, or by another environment, is read as it is rather than
    planned again), or with ``digest`` (the one its job was planned for) the first of that
    digest; else :func:`store_dir` (absent: the reader's error names it, or it is built;
    present with another digest: the job's data check refuses it)."""
    found = store_candidates(tree, split, stored_size, cache_format, digest)
    return found[0] if found else store_dir(tree, split, stored_size, cache_format)


def read_store_digest(store: Path) -> str | None:
    """The content digest a complete store's manifest records (None: no such store, or one
    of format version 1). Torch- and NumPy-free, for planning."""
    import json

    try:
        manifest = json.loads((Path(store) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    digest = manifest.get("digest") if isinstance(manifest, dict) else None
    return digest if isinstance(digest, str) else None
