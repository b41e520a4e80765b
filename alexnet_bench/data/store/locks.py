"""File locks of the prepared-data cache: a store's build lock and its readers' lease.

Both are ``flock`` locks, released by the kernel when a process dies (NFSv4 and Lustre with
``-o flock`` carry them across nodes). A lock file may be removed by whoever holds its lock
exclusively, so every acquisition checks, once it holds the lock, that the path still names the
file it locked, and otherwise starts again: a waiter never ends up holding the lock of a file
nobody else can see. Lock files are opened read-only and created world-writable (0666), so the
studies of other users sharing a cache can take them too. A file system without working
``flock`` raises :class:`LockUnsupported`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


class LockUnsupported(OSError):
    """The file system of the cache does not support ``flock``."""


def _open(path: Path, create: bool) -> int:
    """A read-only descriptor of ``path`` (created 0666 if asked: other users lock it too)."""
    if not create:
        return os.open(path, os.O_RDONLY)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # whatever the umask
    return fd


def acquire(
    path: Path, *, exclusive: bool, blocking: bool = True, create: bool = True
) -> int | None:
    """An open file descriptor holding ``path``'s lock, or None when ``blocking`` is off and
    another process holds it (or when ``create`` is off and the file does not exist)."""
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        try:
            fd = _open(path, create)
        except FileNotFoundError:
            if create:  # the directory went away (a tidy-up removed an empty one): recreate it
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            return None
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:  # ENOLCK, ENOSYS, EINVAL: no flock on this file system
            os.close(fd)
            raise LockUnsupported(exc.errno, f"cannot lock {path}: {exc.strerror}") from None
        if _same_file(path, fd):
            return fd
        os.close(fd)  # removed (or replaced) while we waited for it: try the current one
        if not create and not path.exists():
            return None


def release(fd: int) -> None:
    os.close(fd)  # closing the last descriptor drops the flock


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path``'s exclusive lock (created if needed) for the block, then remove the lock
    file: a build lock leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = acquire(path, exclusive=True)
    assert fd is not None
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        release(fd)


def try_exclusive(path: Path) -> int | None:
    """The exclusive lock of an existing lock file if nobody holds it, else None."""
    return acquire(path, exclusive=True, blocking=False, create=False)


def is_held(path: Path) -> bool:
    """Whether some process holds a lock on ``path`` (False when it does not exist)."""
    if not path.exists():
        return False
    fd = acquire(path, exclusive=True, blocking=False, create=False)
    if fd is None:
        return path.exists()
    release(fd)
    return False
