"""File locks of the prepared-data cache: a store's build lock and its readers' lease.

Both are ``flock`` locks, released by the kernel when a process dies (NFSv4 and Lustre with
``-o flock`` carry them across nodes). A lock file may be removed by whoever holds its lock
exclusively, so every acquisition checks, once it holds the lock, that the path still names the
file it locked, and otherwise starts again: a waiter never ends up holding the lock of a file
nobody else can see.
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


def acquire(
    path: Path, *, exclusive: bool, blocking: bool = True, create: bool = True
) -> int | None:
    """An open file descriptor holding ``path``'s lock, or None when ``blocking`` is off and
    another process holds it (or when ``create`` is off and the file does not exist)."""
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
        except FileNotFoundError:
            if create:  # the directory itself went away
                raise
            return None
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
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
