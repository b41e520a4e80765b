"""Atomic writes for report files, readable by others (``alexnet_bench.io`` uses mkstemp: 0600).

The report is meant to be shared (served, mailed, opened by other users), so the files get the
usual ``0666 & ~umask`` mode before they are renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with a world-readable (umask-respecting) mode."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
        os.chmod(tmp, 0o666 & ~_umask())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` (LF line endings kept as given)."""
    write_bytes(path, text.encode("utf-8"))
