"""Real data sources: CIFAR-10 (python-pickle layout) and ImageFolder trees, decoded to uint8."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..datadirs import find_cifar_dir
from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DataError(
            f"corrupt CIFAR-10 batch '{path}' ({exc}); re-extract the archive"
        ) from None
    return data, labels


def load_cifar10(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-10 from a local directory: ``(train_x, train_y, test_x, test_y)`` as uint8/int64."""
    base = find_cifar_dir(Path(root))
    train_files = sorted(base.glob("data_batch_*"))
    parts = [_load_cifar_batch(p) for p in train_files]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _load_cifar_batch(base / "test_batch")
    return (
        torch.from_numpy(train_x), torch.from_numpy(train_y),
        torch.from_numpy(test_x), torch.from_numpy(test_y),
    )  # fmt: skip


@dataclass
class FolderSplit:
    """File paths and integer labels of one split of an ImageFolder tree."""

    paths: list[Path]
    labels: list[int]
    classes: list[str] = field(default_factory=list)


def _scan_classes(root: Path) -> tuple[list[str], list[list[Path]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        sorted(p for p in (root / c).rglob("*") if p.is_file() and not p.name.startswith("."))
        for c in classes
    ]
    return classes, files


def scan_image_folder(
    root: str | Path, val_fraction: float, seed: int = 0
) -> tuple[FolderSplit, FolderSplit]:
    """Index an ImageFolder tree (``root/<class>/<img>``, or ``root/train`` + ``root/val``).

    Without ``val/`` a deterministic stratified ``val_fraction`` of every class is held out.
    Every file under a class directory is listed (not only known extensions), so that a
    corrupt or non-image file is detected and reported instead of silently ignored.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(
            f"data directory '{base}' does not exist; set data.root to an ImageFolder tree"
        )
    if (base / "train").is_dir() and (base / "val").is_dir():
        classes, train_files = _scan_classes(base / "train")
        val_classes, val_files = _scan_classes(base / "val")
        if val_classes != classes:
            raise DataError(
                f"'{base}/val' classes differ from '{base}/train' classes; make them match"
            )
        _check_classes(base / "train", classes, train_files)
        train = FolderSplit(
            [p for f in train_files for p in f],
            [i for i, f in enumerate(train_files) for _ in f],
            classes,
        )
        val = FolderSplit(
            [p for f in val_files for p in f],
            [i for i, f in enumerate(val_files) for _ in f],
            classes,
        )
        return train, val
    classes, files = _scan_classes(base)
    _check_classes(base, classes, files)
    rng = np.random.Generator(np.random.PCG64(seed))
    train, val = FolderSplit([], [], classes), FolderSplit([], [], classes)
    for label, class_files in enumerate(files):
        order = rng.permutation(len(class_files))
        n_val = max(1, round(len(class_files) * val_fraction)) if len(class_files) > 1 else 0
        for rank, idx in enumerate(order):
            split = val if rank < n_val else train
            split.paths.append(class_files[idx])
            split.labels.append(label)
    return train, val


def _check_classes(root: Path, classes: Sequence[str], files: Sequence[Sequence[Path]]) -> None:
    total = sum(len(f) for f in files)
    if total == 0:
        raise DataError(
            f"data directory '{root}' holds no images; expected root/<class>/<image> files"
        )
    non_empty = [c for c, f in zip(classes, files, strict=True) if f]
    if len(non_empty) < 2:
        raise DataError(
            f"data directory '{root}' has {len(non_empty)} non-empty class folder(s); "
            "a classifier needs at least 2 (root/<class>/<image>)"
        )


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode to RGB, resize the shorter side to ``size``, centre-crop ``size`` x ``size``; CHW uint8.

    Raises :class:`DataError` naming the file when it is not a readable image.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR
            )
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"cannot decode image '{path}' ({type(exc).__name__}); remove it or set data.on_bad_image: skip"
        ) from None


def decode_split(
    split: FolderSplit, size: int, on_bad_image: str = "fail", workers: int = 4
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of ``split`` into memory. Returns ``(images, labels, skipped_paths)``."""

    def load(path: Path) -> np.ndarray | None:
        try:
            return decode_image(path, size)
        except DataError:
            if on_bad_image == "skip":
                return None
            raise

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(pool.map(load, split.paths))
    kept = [i for i, a in enumerate(arrays) if a is not None]
    skipped = [str(split.paths[i]) for i, a in enumerate(arrays) if a is None]
    if not kept:
        raise DataError(f"no decodable images among {len(split.paths)} files; check data.root")
    images = torch.from_numpy(np.stack([arrays[i] for i in kept]))
    labels = torch.tensor([split.labels[i] for i in kept], dtype=torch.int64)
    return images, labels, skipped
