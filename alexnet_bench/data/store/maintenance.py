"""Keeping a shared cache tidy: what is superseded or left over, and removing it safely.

A store is *superseded* when a store of the same tree (same source root), split rule, split,
stored size and encoding was built later from another state of the tree. It is removed only when
no job holds its lease (:mod:`.locks`): a build that supersedes a store in use marks it, and the
last reader removes it when it closes it; ``alexnet-bench data-gc`` finds the rest. *Leftovers*
are the temporary directories of builds that did not finish, stores moved aside by a rebuild,
lock files nobody holds and empty tree directories. ``data-gc`` also lists the stores another
environment made (another format version or other decoders, e.g. before a Pillow upgrade: the
store's name carries them, so a new environment builds its own beside it) or left under an
older alexnet-bench's name once this environment has its own store of the same data, with the
date a build last confirmed each; the only store of its data is never listed (readers here
read it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...imagefolder import confirmed_at, store_dir
from ...io import human_bytes
from . import locks
from .manifest import (
    CURRENT,
    LEASE,
    SUPERSEDED,
    cache_format_of,
    other_environment,
    read_manifest,
)

log = logging.getLogger(__name__)

_MOVED_ASIDE = (".replaced-", ".deleting-")


def _group(manifest: dict[str, Any]) -> tuple[Any, ...]:
    """What two stores must share for one to supersede the other."""
    images = manifest.get("images") or {}
    return (
        manifest.get("source_root"),
        manifest.get("layout"),
        manifest.get("val_fraction"),
        manifest.get("split"),
        manifest.get("stored_size"),
        images.get("encoding"),
        images.get("quality"),
    )


def _our_copy(store: Path, manifest: dict[str, Any]) -> Path | None:
    """This environment's store of the same tree state, split, size, format and digest as
    ``store`` when ``store`` is another one (another environment's, or named as before names
    carried the decoders): ``store`` is then a copy. None when ``store`` is the only one, which
    readers here still read (:func:`~alexnet_bench.imagefolder.find_store`)."""
    split, size = manifest.get("split"), manifest.get("stored_size")
    if not isinstance(split, str) or not isinstance(size, int):
        return None
    ours = store_dir(store.parent, split, size, cache_format_of(manifest))
    found = read_manifest(ours)
    if ours == store or found is None:
        return None
    # the same tree state, decoded to the same pixels (a format-version-1 store has no digest:
    # no reader here reads it, so the same tree state makes it a copy)
    digest = manifest.get("digest")
    same_pixels = digest is None or found.get("digest") == digest
    return ours if found.get("fingerprint") == manifest.get("fingerprint") and same_pixels else None


def remove_store(path: Path) -> bool:
    """Remove the store at ``path`` unless a job reads it (then it stays marked superseded, for
    the last reader to remove). True when it was removed."""
    lease = path / LEASE
    if lease.exists():
        with contextlib.suppress(OSError):  # the mark first: a reader closing now sees it
            (path / SUPERSEDED).touch()
    try:
        fd = locks.try_exclusive(lease)
    except locks.LockUnsupported:
        fd = None  # no flock here: nobody can hold it, remove it
    if fd is None and lease.exists() and _lockable(lease):
        return False
    try:
        aside = path.with_name(f".{path.name.lstrip('.')}.deleting-{os.getpid()}")
        try:
            os.rename(path, aside)  # new readers no longer find it
        except FileNotFoundError:
            return False
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        if fd is not None:
            locks.release(fd)
    _remove_if_empty(path.parent)
    return True


def tidy(path: Path) -> bool:
    """:func:`remove_store` where removing is tidying after work that succeeded (a reader
    closing, a build superseding): a store this process may not remove (another user's, say)
    is left for ``data-gc`` with a warning, never an error that would fail that work."""
    try:
        return remove_store(path)
    except OSError as exc:
        log.warning("left %s in place: cannot remove it (%s); data-gc can, later", path, exc)
        return False


def _lockable(lease: Path) -> bool:
    """False on a file system without flock (where a held lease cannot be told)."""
    try:
        locks.is_held(lease)
    except locks.LockUnsupported:
        return False
    return True


def remove_if_superseded(path: Path) -> None:
    """After a reader closed ``path``: remove it if a newer build marked it superseded, and the
    older stores a rebuild moved aside from its place, unless other jobs still read them."""
    if (path / SUPERSEDED).exists() and tidy(path):
        log.info("removed %s: superseded by a newer build while this job read it", path)
    for aside in path.parent.glob(f".{path.name}.replaced-*"):
        if tidy(aside):
            log.info("removed %s: replaced by a rebuild while this job read it", aside)


def mark_current(path: Path) -> None:
    """Record that the store at ``path`` stands for its tree's current state (a build, or a
    later build that found it up to date): clears a superseded mark, dates the confirmation."""
    with contextlib.suppress(OSError):  # absent, or another user's store: the mark stays
        (path / SUPERSEDED).unlink()
    with contextlib.suppress(OSError):
        (path / CURRENT).touch()


def _remove_if_empty(tree: Path) -> None:
    with contextlib.suppress(OSError):
        tree.rmdir()  # only if no store, build or lock file is left in it


def _stores(cache_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every complete store of the cache (``<cache>/<tree>/<store>``)."""
    if not cache_dir.is_dir():
        return
    for tree in sorted(p for p in cache_dir.iterdir() if p.is_dir()):
        for store in sorted(p for p in tree.iterdir() if p.is_dir()):
            if store.name.startswith(".") or ".tmp-" in store.name:
                continue  # moved aside, or a build not yet renamed into place
            manifest = read_manifest(store)
            if manifest is not None:
                yield store, manifest


def remove_superseded_by(dest: Path, manifest: dict[str, Any]) -> None:
    """After building ``dest`` (or finding it up to date): mark it current, and remove the
    stores of other states of the same tree in the same cache (those in use are marked, and
    removed by their last reader)."""
    mark_current(dest)
    group = _group(manifest)
    for store, other in _stores(dest.parent.parent):
        if store == dest or _group(other) != group:
            continue
        if other.get("fingerprint") == manifest.get("fingerprint"):
            continue
        if tidy(store):
            log.warning(
                "removed %s: superseded by %s (a newer state of %s)",
                store,
                dest,
                manifest["source_root"],
            )
        else:
            log.warning(
                "kept %s while a job reads it (superseded by %s): its last reader removes it",
                store,
                dest,
            )


@dataclass(frozen=True)
class Garbage:
    """One thing ``data-gc`` would remove."""

    path: Path
    why: str
    bytes: int
    in_use: bool = False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(base, name)).st_size
    return total


def find_garbage(cache_dir: str | Path) -> list[Garbage]:
    """Superseded stores and leftovers of the cache at ``cache_dir`` (nothing is removed).

    In a group of stores (:func:`_group`) the one a build confirmed current last stands; the
    others are superseded. A store whose tree no longer exists where it was built (moved or
    deleted) is listed too once another store of the same files (the tree's key) was built
    later: the tree moved and changed since."""
    cache = Path(cache_dir)
    found: list[Garbage] = []
    stores = [(s, m, confirmed_at(s)) for s, m in _stores(cache)]
    newest: dict[tuple[Any, ...], tuple[float, Path, dict[str, Any]]] = {}
    for store, manifest, when in stores:
        key = _group(manifest)
        if key not in newest or when > newest[key][0]:
            newest[key] = (when, store, manifest)
    for store, manifest, when in stores:
        _, winner, latest = newest[_group(manifest)]
        moved_on = [
            other
            for other, m, w in stores
            if w > when
            and m.get("key")
            and m.get("key") == manifest.get("key")
            and _group(m)[1:] == _group(manifest)[1:]
        ]
        if store != winner and manifest.get("fingerprint") != latest.get("fingerprint"):
            why = f"superseded by {winner} (a newer build of {manifest.get('source_root')})"
        elif (store / SUPERSEDED).exists():
            why = "superseded by a newer build while a job read it"
        elif moved_on and not Path(str(manifest.get("source_root"))).exists():
            why = (
                f"its tree {manifest.get('source_root')} is gone, and {moved_on[0]} holds a "
                "later build of the same files"
            )
        elif (ours := _our_copy(store, manifest)) is not None:
            other = other_environment(manifest)
            made = (
                f"made by another environment ({other.removeprefix('it ')})"
                if other
                else "under an older alexnet-bench's name"
            )
            why = (
                f"a copy of {ours}, {made}; last confirmed current {_date(when)} (another "
                "environment or alexnet-bench sharing the cache may still use it)"
            )
        else:
            continue
        found.append(Garbage(store, why, _size(store), _held(store / LEASE)))
    if cache.is_dir():
        for tree in sorted(p for p in cache.iterdir() if p.is_dir()):
            found.extend(_leftovers(tree))
    return found


def _date(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(when)) if when else "never"


def _held(lock: Path) -> bool:
    try:
        return locks.is_held(lock)
    except locks.LockUnsupported:
        return False


def _leftovers(tree: Path) -> Iterator[Garbage]:
    entries = sorted(tree.iterdir())
    for entry in entries:
        name = entry.name
        if entry.is_dir() and ".tmp-" in name:
            lock = tree / f".{name.split('.tmp-')[0]}.build.lock"
            if not _held(lock):
                yield Garbage(entry, "left by a build that did not finish", _size(entry))
        elif entry.is_dir() and any(mark in name for mark in _MOVED_ASIDE):
            held = _held(entry / LEASE)
            yield Garbage(entry, "an older store moved aside by a rebuild", _size(entry), held)
        elif entry.is_file() and name.endswith(".lock") and not _held(entry):
            yield Garbage(entry, "a lock file nobody holds", 0)
    if not entries:
        yield Garbage(tree, "an empty tree directory", 0)


def collect_garbage(cache_dir: str | Path, *, delete: bool) -> tuple[list[Garbage], int]:
    """What ``data-gc`` finds; with ``delete``, remove every item not in use. Returns the items
    and the bytes freed."""
    if not Path(cache_dir).is_dir():
        raise DataError(
            f"prepared-data cache '{cache_dir}' does not exist; pass --cache-dir (the "
            "study's data_cache_dir)"
        )
    items = find_garbage(cache_dir)
    freed = 0
    if not delete:
        return items, sum(g.bytes for g in items if not g.in_use)
    for item in items:
        if item.in_use:
            continue
        if item.path.is_file():
            fd = locks.try_exclusive(item.path)
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.path)
                locks.release(fd)
        elif item.why == "an empty tree directory":
            _remove_if_empty(item.path)
        elif not remove_store(item.path):
            continue
        freed += item.bytes
    for tree in {g.path.parent for g in items} | {g.path for g in items if g.path.is_dir()}:
        if tree.parent == Path(cache_dir):
            _remove_if_empty(tree)
    return items, freed


def garbage_report(items: list[Garbage], freed: int, *, deleted: bool) -> str:
    """The lines ``data-gc`` prints."""
    if not items:
        return "nothing to remove: no superseded store and no leftover"
    lines = [
        f"{'' if deleted else 'would remove '}{g.path}: {g.why}, {human_bytes(g.bytes)}"
        + (" (in use by a running job: kept)" if g.in_use else "")
        for g in items
    ]
    verb = "freed" if deleted else "would free"
    lines.append(f"{verb} {human_bytes(freed)}" + ("" if deleted else "; pass --delete to remove"))
    return "\n".join(lines)


def describe(path: str | Path) -> str:
    """What a store (or every store of a tree directory) holds, for ``alexnet-bench data-info``."""
    path = Path(path)
    if read_manifest(path) is not None:
        stores = [path]
    elif path.is_dir():
        stores = sorted(p for p in path.iterdir() if p.is_dir() and read_manifest(p) is not None)
    else:
        stores = []
    if not stores:
        raise DataError(
            f"'{path}' holds no prepared data (no manifest.json of a complete build); "
            "pass a store (<cache>/<tree>/<split>-<S>px-v2-<decoders>) or its tree directory"
        )
    return "\n\n".join(_describe_one(p, read_manifest(p) or {}) for p in stores)


def _describe_one(path: Path, m: dict[str, Any]) -> str:
    build, skipped = m["build"], m["skipped"]
    split_rule = f", val_fraction {m['val_fraction']}" if m["val_fraction"] is not None else ""
    encoding = (
        "uint8 " if m["images"]["encoding"] == "raw" else f"JPEG quality {m['images']['quality']}, "
    )
    lines = [
        f"{path}",
        f"  source      {m['source_root']} ({m['layout']}{split_rule}), split {m['split']}",
        f"  images      {m['num_images']:,} of {m['num_files']:,} files, {len(m['classes'])} "
        f"classes, {m['stored_size']} px ({m['resize']})",
        f"  on disk     {human_bytes(m['images']['bytes'])} ({m['images']['file']}: {encoding}"
        f"{' x '.join(map(str, m['images']['shape']))})",
        f"  built       {build['finished_utc']} on {build['host']}: {build['seconds']} s, "
        f"{build['images_per_s']:,} images/s over {build['workers']} worker(s)",
        "  decoders    " + ", ".join(f"{k} {v}" for k, v in m["decoders"].items() if v),
        f"  fingerprint {m['fingerprint']}",
        f"  digest      {m.get('digest', '(none: format version 1)')}",
        f"  skipped     {len(skipped)} bad file(s)"
        + "".join(f"\n    {s['path']}: {s['reason']}" for s in skipped[:10])
        + (f"\n    ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""),
        f"  ignored     {m['ignored']['count']} non-image file(s) in the tree",
    ]
    return "\n".join(lines)
