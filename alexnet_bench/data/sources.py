"""Real data sources: CIFAR-10 (python-pickle layout) and ImageFolder images, decoded to uint8.

Which files of a tree are images, and its split, are :mod:`alexnet_bench.imagefolder`'s job."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..datadirs import find_cifar_dir
from ..errors import DataError
from ..imagefolder import FolderSplit


class BadImage(DataError):
    """A file that is not a readable image; ``reason`` is the decoder's complaint."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(
            f"cannot decode image '{path}' ({reason.split(':')[0]}); remove it or set "
            "data.on_bad_image: skip"
        )
        self.path = path
        self.reason = reason


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
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
    )


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Decode to RGB, resize the shorter side to ``size``, centre-crop ``size`` x ``size``; CHW uint8.

    Raises :class:`BadImage` naming the file when it is not a readable image.
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
        raise BadImage(path, f"{type(exc).__name__}: {exc}") from None


def decode_split(
    split: FolderSplit, size: int, on_bad_image: str = "fail", workers: int = 4
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of ``split`` into memory. Returns ``(images, labels, skipped_paths)``."""

    def load(path: str) -> np.ndarray | None:
        try:
            return decode_image(path, size)
        except BadImage:
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
