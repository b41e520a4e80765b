"""On-disk cache for generated data: build once per machine, then read it back in milliseconds.

Generating the default preset's shapes10 splits takes about 2 s of CPU per process, which every
training job of a study would otherwise repeat. The generator is deterministic, so a cached copy
is the same data; entries are keyed by everything that determines them (including a generator
version) and written atomically, so concurrent jobs can share the cache safely. An unreadable
entry is rebuilt; a cache that cannot be written is simply not used.

Location: ``$ALEXNET_BENCH_CACHE``, else ``$XDG_CACHE_HOME/alexnet-bench``, else
``~/.cache/alexnet-bench``; ``ALEXNET_BENCH_CACHE=off`` disables it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..io import atomic_path

CACHE_ENV = "ALEXNET_BENCH_CACHE"
log = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """The cache directory, or ``None`` when caching is switched off."""
    configured = os.environ.get(CACHE_ENV, "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet-bench"


def cached_tensors(
    key: str, build: Callable[[], tuple[torch.Tensor, ...]]
) -> tuple[torch.Tensor, ...]:
    """``build()``'s tensors, read from the cache entry ``key`` when it exists and is readable."""
    root = cache_dir()
    if root is None:
        return build()
    path = root / f"{key}.pt"
    if path.exists():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(loaded, list) and all(isinstance(t, torch.Tensor) for t in loaded):
                return tuple(loaded)
        except Exception as exc:  # truncated or foreign file: rebuild it
            log.warning("data cache entry %s is unreadable (%s); rebuilding it", path, exc)
    tensors = build()
    try:
        with atomic_path(path) as tmp:
            torch.save(list(tensors), tmp)
    except OSError as exc:  # read-only home, full disk: train without the cache
        log.info("data cache not written (%s): %s", path, exc)
    return tensors
