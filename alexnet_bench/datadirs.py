"""Data-directory layout checks that need neither torch nor image decoding.

Imported by the Snakemake workflow (via :mod:`alexnet_bench.study`) to fail before any job
starts, so it must stay light: no torch, NumPy or PIL.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .imagefolder import is_image_name

CIFAR_DIRNAME = "cifar-10-batches-py"


def find_cifar_dir(root: Path) -> Path:
    """The directory holding ``data_batch_1`` and ``test_batch``: ``root`` or its CIFAR subfolder."""
    for candidate in (root, root / CIFAR_DIRNAME):
        if (candidate / "data_batch_1").is_file() and (candidate / "test_batch").is_file():
            return candidate
    raise DataError(
        f"no CIFAR-10 batches under '{root}'; set data.root to the directory holding "
        f"'{CIFAR_DIRNAME}' (data_batch_1..5, test_batch) extracted from cifar-10-python.tar.gz"
    )


def _has_file(directory: Path) -> bool:
    """Whether ``directory`` holds an image file (stops at the first one found)."""
    return any(is_image_name(p.name) and p.is_file() for p in directory.rglob("*"))


def check_data_root(source: str, root: str | Path) -> None:
    """Quick structural check of a data directory, without listing or decoding every file.

    Raises :class:`DataError` when ``root`` is missing, is not a CIFAR-10 batch directory
    (``cifar10``), or is an ImageFolder tree (``root/<class>/<image>``, or ``root/train`` +
    ``root/val``) without at least two non-empty class folders (``imagefolder``). Corrupt images
    are found later, by the job that decodes them (``data.on_bad_image``).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"data directory '{base}' does not exist; set data.root to an existing directory"
        )
    if source == "cifar10":
        find_cifar_dir(base)
        return
    if source != "imagefolder":
        return
    split = base / "train" if (base / "train").is_dir() and (base / "val").is_dir() else base
    classes = [d for d in sorted(split.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    non_empty = 0
    for directory in classes:
        non_empty += _has_file(directory)
        if non_empty >= 2:
            return
    if non_empty == 0:
        raise DataError(
            f"data directory '{split}' holds no images; expected root/<class>/<image> files"
        )
    raise DataError(
        f"data directory '{split}' has 1 non-empty class folder; a classifier needs at least 2 "
        "(root/<class>/<image>)"
    )
