"""A run's identity: what it computes, not where its files lie.

Two parts make it up:

* the *config hash* (:func:`alexnet_bench.config.config_hash`): the run settings whose
  schema class is ``result``;
* the *data identity* (:func:`data_identity`): the content of the data it reads, by source:

  ======================  ===========================================================
  data                    identity
  ======================  ===========================================================
  synthetic (shapes10)    none: the config determines it
  CIFAR-10 (a local copy) sha256 of the batch files' bytes
  image folder, cached    the prepared stores' content digests (decoded pixels, labels,
                          class names, order), one per split
  image folder, direct    the tree's fingerprint (relative paths, sizes, mtimes): without
                          the cache the content is known only after decoding it all
  ======================  ===========================================================

The run identity hash (:func:`run_identity`) keys resumable checkpoints; the workflow's rerun
rule tracks the same two parts (``workflow/rules/common.smk``). Locations (``data.root``,
``data.cache``, the cache directory, the working directory) are provenance: recorded in
metrics.json, never part of any of these. Torch-free: the workflow imports it to plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .datadirs import find_cifar_dir
from .errors import DataError

DataIdentity = dict[str, Any] | None


def files_sha256(paths: list[Path]) -> str:
    """sha256 over the names and bytes of ``paths`` (in the order given)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.name}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def cifar10_files(root: str | Path) -> list[Path]:
    """The CIFAR-10 batch files a run reads, in a fixed order."""
    base = find_cifar_dir(Path(root).expanduser())
    return [*sorted(base.glob("data_batch_*")), base / "test_batch"]


def cifar10_identity(root: str | Path) -> dict[str, Any]:
    return {"kind": "files", "sha256": files_sha256(cifar10_files(root))}


def tree_identity(fingerprint: str) -> dict[str, Any]:
    return {"kind": "tree", "fingerprint": fingerprint}


def store_identity(digests: dict[str, str]) -> dict[str, Any]:
    """The data identity of a run reading prepared stores: ``split -> content digest``."""
    return {"kind": "store", **{split: digests[split] for split in sorted(digests)}}


def run_identity(cfg_hash: str, data: DataIdentity) -> str:
    """The identity hash of a run: its config hash and its data identity."""
    canonical = json.dumps({"config": cfg_hash, "data": data}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def identity_record(cfg: Any, data: DataIdentity) -> dict[str, Any]:
    """metrics.json's ``identity``: config hash, data identity and the run identity hash."""
    return {"config_hash": cfg.hash, "data": data, "hash": run_identity(cfg.hash, data)}


def provenance_record(cfg: Any, prepared: dict[str, str] | None = None) -> dict[str, Any]:
    """metrics.json's ``provenance``: where the run's files lay (never part of its identity)."""
    from .config import split_identity

    return {
        "workdir": os.getcwd(),
        "settings": split_identity(cfg.to_dict())[1],
        "prepared_stores": prepared or {},
    }


def check_data(actual: DataIdentity, expected: DataIdentity) -> None:
    """A one-line :class:`DataError` when the data a job reads is not what it was planned for."""
    if expected is None or actual == expected:
        return
    differs = sorted(
        k for k in set(actual or {}) | set(expected) if (actual or {}).get(k) != expected.get(k)
    )
    shown = ", ".join(
        f"{k} {str((actual or {}).get(k))[:12]} (planned {str(expected.get(k))[:12]})"
        for k in differs
    )
    raise DataError(
        f"the data this run reads is not the data it was planned for ({shown}): it changed "
        "since snakemake planned the job; rerun snakemake to plan it again"
    )


def direct_identity(source: str, root: str | None, val_fraction: float) -> DataIdentity:
    """The data identity of a run that reads its source directly (no prepared stores)."""
    if source == "cifar10" and root:
        return cifar10_identity(root)
    if source == "imagefolder" and root:
        from .imagefolder import scan_tree

        return tree_identity(scan_tree(root, val_fraction).fingerprint)
    return None
