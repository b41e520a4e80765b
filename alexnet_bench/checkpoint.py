"""Epoch checkpoints: atomic, checksummed, with one previous generation kept for fallback."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from .io import atomic_path, write_text

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``out_dir/checkpoint.pt`` atomically; the old one becomes ``.prev``."""
    path = out_dir / CHECKPOINT
    with atomic_path(path.with_suffix(".pt.new")) as tmp:
        torch.save(state, tmp)
    new = path.with_suffix(".pt.new")
    checksum = _sha256(new)
    if path.exists():
        path.replace(out_dir / PREVIOUS)
        sidecar = out_dir / (CHECKPOINT + ".sha256")
        if sidecar.exists():
            sidecar.replace(out_dir / (PREVIOUS + ".sha256"))
    write_text(out_dir / (CHECKPOINT + ".sha256"), checksum + "\n")
    new.replace(path)
    return path


def _load_verified(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists() and sidecar.read_text().strip() != _sha256(path):
        log.warning("checkpoint %s fails its checksum (truncated or corrupt); ignoring it", path)
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip error means an unusable file
        log.warning("checkpoint %s cannot be loaded (%s); ignoring it", path, type(exc).__name__)
        return None


def load_latest(out_dir: Path, config_hash: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest loadable checkpoint for ``config_hash``, and notes on any skipped file.

    Falls back from ``checkpoint.pt`` to ``checkpoint.prev.pt``; a checkpoint written under a
    different configuration is not resumed (training restarts cleanly).
    """
    notes: list[str] = []
    for name in (CHECKPOINT, PREVIOUS):
        path = out_dir / name
        if not path.exists():
            continue
        state = _load_verified(path)
        if state is None:
            notes.append(f"unusable checkpoint {path} (corrupt or truncated) skipped")
            continue
        if state.get("config_hash") != config_hash:
            notes.append(f"checkpoint {path} is from a different config; starting fresh")
            return None, notes
        return state, notes
    return None, notes
