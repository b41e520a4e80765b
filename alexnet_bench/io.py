"""Atomic file writes: a reader sees either the old file or the complete new one.

A write that fails because the file system is full raises :class:`~.errors.DiskFullError`, one
line naming the file and the space it needs, instead of whatever the writer raised (torch's
serialiser says only ``RuntimeError: [enforce fail at inline_container.cc:671] unexpected pos``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DiskFullError

#: a failed write with less than this left free on its file system is taken for a full disk
FULL_BELOW_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], size_hint: int | None = None, shown_as: Path | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync and rename it over ``path``.

    If the write fails on a full disk, the partial file is removed and :class:`DiskFullError`
    names ``shown_as`` (default ``path``), the space needed (``size_hint`` bytes when the caller
    knows them, else more than what fitted) and the space that was free when the write began.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    free_before = _free_bytes(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual umask mode
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, DiskFullError) or not _disk_full(exc, target.parent):
            raise
        fitted = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        message = disk_full_message(shown_as or target, size_hint, free_before, fitted)
        raise DiskFullError(message) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _disk_full(exc: BaseException, directory: Path) -> bool:
    """Whether ``exc`` (or an exception it chains) is a full disk on ``directory``'s file system.

    ENOSPC/EDQUOT where the errno survives; otherwise (torch's C++ writer raises a RuntimeError
    without one) a file system with less than :data:`FULL_BELOW_BYTES` left.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    free = _free_bytes(directory)
    return free is not None and free < FULL_BELOW_BYTES


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def human_bytes(n: float) -> str:
    """``28.5 MB`` (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def disk_full_message(path: Path, size_hint: int | None, free: int | None, fitted: int = 0) -> str:
    """``disk full: cannot write PATH (needs about 7.2 MB, 2.8 MB was free on /mnt); free ...``.

    ``free``: bytes free when the write began (afterwards the failed writer may still hold the
    blocks of its partial file); ``fitted``: bytes written before it failed.
    """
    where = _mount_point(path.parent)
    free_text = f"{human_bytes(free)} was free" if free is not None else "free space unknown"
    if size_hint:
        needed = f"needs about {human_bytes(size_hint)}"
        short = size_hint - (free or 0)
        more = f"at least {human_bytes(short)} more" if short > 0 else "space"
    else:
        needed = f"needs more than {human_bytes(max(fitted, free or 0))}"
        more = "space"
    return (
        f"disk full: cannot write {path} ({needed}, {free_text} on {where}); "
        f"free {more} there and rerun"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_with(
    path: str | os.PathLike[str],
    mode: str,
    writer: Callable[[IO[Any]], None],
    size_hint: int | None = None,
) -> None:
    with atomic_path(path, size_hint) as tmp, open(tmp, mode) as fh:
        writer(fh)


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as pretty JSON (NaN/inf become null)."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False, default=str) + "\n"
    write_text(path, text)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    _write_with(path, "w", lambda fh: fh.write(text), len(text.encode()))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write a binary file."""
    _write_with(path, "wb", lambda fh: fh.write(data), len(data))
