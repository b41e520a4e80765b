"""The study: presets x ablations x seeds -> one validated run config per cell.

``config.yaml`` (validated by ``workflow/schemas/config.schema.yaml``) names a preset (scale:
data source, image size, epochs, ...), the ablations to run (each a difference from the
baseline, i.e. the paper's settings) and the seeds. This module turns it into run configs;
the Snakemake workflow only calls these functions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .config import RunConfig, deep_merge, effective_stored_size, split_identity
from .datadirs import check_data_root
from .errors import ConfigError, DataError
from .identity import DataIdentity, direct_identity
from .imagefolder import SPLITS, find_store, scan_tree, tree_dir


def _preset(study: dict[str, Any], name: str) -> dict[str, Any]:
    presets = study.get("presets", {})
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(sorted(presets))}")
    return presets[name]


def ablation_def(study: dict[str, Any], name: str) -> dict[str, Any]:
    """The definition (family, description, overrides) of ablation ``name``."""
    defs = study.get("ablation_defs", {})
    if name not in defs:
        raise ConfigError(
            f"unknown ablation '{name}'; choose from ablation_defs: {', '.join(sorted(defs))}"
        )
    return defs[name]


def resolve_run(study: dict[str, Any], preset: str, ablation: str, seed: int) -> RunConfig:
    """Validated run config of one cell: preset.run <- study.run <- ablation overrides <- seed,
    reading an image folder from the study's prepared-data cache (:func:`prepared_cache`)."""
    cfg = deep_merge(_preset(study, preset).get("run", {}), study.get("run", {}) or {})
    cfg = deep_merge(cfg, ablation_def(study, ablation).get("overrides", {}))
    cfg = deep_merge(cfg, {"train": {"seed": int(seed)}})
    try:
        run = RunConfig(cfg)
        cache = prepared_cache(study, run)
        if cache is None:
            return run
        data: dict[str, Any] = {"cache": cache}
        if study.get("data_cache_format", "raw") != "raw":
            data["cache_format"] = study["data_cache_format"]
        return RunConfig(deep_merge(cfg, {"data": data}))
    except ConfigError as exc:
        raise ConfigError(f"preset '{preset}', ablation '{ablation}': {exc}") from None


@dataclass(frozen=True)
class PreparedTree:
    """An image folder a study reads through its prepared-data cache, as it is now."""

    key: str  # the tree's data in the study, wherever it lies (imagefolder.TreeScan.key)
    root: str
    val_fraction: float
    fingerprint: str  # its state: a new one rebuilds the stores
    tree_dir: str  # where its stores lie in the cache (found by fingerprint, else built there)


@cache
def _prepared_tree(cache_dir: str, root: str, val_fraction: float) -> PreparedTree:
    """``root`` as it is now (one scan per process)."""
    scan = scan_tree(root, val_fraction)
    return PreparedTree(
        scan.key[:16], root, val_fraction, scan.fingerprint, str(tree_dir(cache_dir, scan))
    )


def prepared_tree(study: dict[str, Any], cfg: RunConfig) -> PreparedTree | None:
    """The tree a run reads through the study's prepared-data cache (``data_cache_dir``; the
    run's ``data.cache`` is absent, or the one :func:`resolve_run` set). None when the run
    reads no image folder, sets another ``data.cache`` itself, the study has no cache
    (``data_cache_dir: null``) or the root does not exist (``check_study`` and the job report
    that)."""
    d = cfg.data
    cache_dir = study.get("data_cache_dir")
    if d.source != "imagefolder" or not cache_dir or not Path(d.root).expanduser().is_dir():
        return None
    tree = _prepared_tree(str(cache_dir), str(Path(d.root).expanduser()), d.val_fraction)
    own = cfg.raw["data"].get("cache")
    return tree if own is None or own == tree.tree_dir else None


def prepared_cache(study: dict[str, Any], cfg: RunConfig) -> str | None:
    """The tree directory of the study's prepared-data cache a run reading an image folder
    uses as ``data.cache`` (provenance: where the stores of the tree's current state lie)."""
    tree = prepared_tree(study, cfg)
    return tree.tree_dir if tree is not None else None


@cache
def _direct_identity(source: str, root: str, val_fraction: float) -> DataIdentity:
    return direct_identity(source, root, val_fraction)


def planned_data_identity(cfg: RunConfig) -> DataIdentity:
    """The data identity of a run that reads none of the study's prepared stores, as planned
    now: the digests of the stores of a ``data.cache`` the run sets itself, a CIFAR-10 copy's
    bytes, an image folder's fingerprint; None for generated data (or data not there yet: the
    job reports it)."""
    d = cfg.data
    if cfg.raw["data"].get("cache"):
        from .identity import store_identity
        from .imagefolder import read_store_digest

        digests = {split: read_store_digest(Path(path)) for split, path in _stores(cfg)}
        return store_identity(digests) if all(digests.values()) else None  # type: ignore[arg-type]
    if d.source == "synthetic" or not d.root or not Path(d.root).expanduser().exists():
        return None
    return _direct_identity(d.source, str(Path(d.root).expanduser()), d.val_fraction)


#: study-level settings that only say where things are (never a reason to redo a job)
STUDY_LOCATIONS = ("data_cache_dir", "gpu_lock_dir")


def study_identity(study: dict[str, Any]) -> dict[str, Any]:
    """The study config without its locations: the run overrides' provenance keys (data.root,
    ...) and the study-level locations (:data:`STUDY_LOCATIONS`) left out."""
    out = {k: copy.deepcopy(v) for k, v in study.items() if k not in STUDY_LOCATIONS}
    if isinstance(out.get("run"), dict):
        out["run"] = split_identity(out["run"])[0]
    for preset in (out.get("presets") or {}).values():
        if isinstance(preset, dict) and isinstance(preset.get("run"), dict):
            preset["run"] = split_identity(preset["run"])[0]
    return out


def _stores(cfg: RunConfig) -> list[tuple[str, str]]:
    """(split, store) of every store a run with ``data.cache`` reads, at its stored size."""
    data = cfg.raw["data"]
    if not data.get("cache"):
        return []
    stored = effective_stored_size(cfg.data.image_size, cfg.data.stored_size)
    fmt = data.get("cache_format") or "raw"
    return [(split, str(find_store(data["cache"], split, stored, fmt))) for split in SPLITS]


def prepared_stores(cfg: RunConfig) -> list[str]:
    """The stores (one per split) a run with ``data.cache`` reads, at its stored size."""
    return [path for _, path in _stores(cfg)]


def cells(study: dict[str, Any]) -> list[tuple[str, int]]:
    """(ablation, seed) pairs of the study, in config order."""
    return [(a, int(s)) for a in study["ablations"] for s in study["seeds"]]


def check_study(study: dict[str, Any], base_dir: Path | None = None) -> None:
    """Fail fast (before any job starts) on unknown ablations/presets, bad run configs, missing data.

    Data directories get a quick structural check (:func:`check_data_root`): missing, empty,
    one class only, no CIFAR-10 batches.
    """
    preset = study["preset"]
    _preset(study, preset)
    if study["baseline"] not in study["ablation_defs"]:
        raise ConfigError(f"baseline '{study['baseline']}' is not defined in ablation_defs")
    check_calibration(study)
    from .claims import study_claims

    study_claims(study)  # the claims: block parses (a one-line ConfigError otherwise)
    roots: set[tuple[str, str]] = set()
    for ablation, seed in cells(study):
        cfg = resolve_run(study, preset, ablation, seed)
        if cfg.data.source != "synthetic":
            if not cfg.data.root:
                raise DataError(
                    f"preset '{preset}' uses data.source={cfg.data.source} without data.root; set "
                    f"presets.{preset}.run.data.root"
                )
            roots.add((cfg.data.source, cfg.data.root))
    for source, root in sorted(roots):
        path = Path(root).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.exists():
            raise DataError(
                f"data directory '{root}' (preset '{preset}') does not exist; put the data there "
                f"or pass --config 'run={{data: {{root: /path/to/data}}}}'"
            )
        check_data_root(source, path)


def family_ablations(study: dict[str, Any], family: str) -> list[str]:
    """The baseline plus the study's ablations of one family (e.g. 'lrn')."""
    chosen = [a for a in study["ablations"] if study["ablation_defs"][a].get("family") == family]
    return [study["baseline"], *[a for a in chosen if a != study["baseline"]]]


# -- calibration: candidate settings of a preset's free knobs --------------------------------
def resolve_calibration_run(
    study: dict[str, Any], candidate: str, ablation: str, seed: int
) -> RunConfig:
    """Run config of one calibration cell: calibration.preset's run <- the candidate's settings
    <- study.run <- the ablation's overrides <- seed."""
    block = study.get("calibration") or {}
    candidates = block.get("candidates") or {}
    if candidate not in candidates:
        raise ConfigError(
            f"unknown calibration candidate '{candidate}'; choose from: "
            f"{', '.join(sorted(candidates))}"
        )
    preset = block.get("preset", study["preset"])
    cfg = deep_merge(_preset(study, preset).get("run", {}), candidates[candidate] or {})
    cfg = deep_merge(cfg, study.get("run", {}) or {})
    cfg = deep_merge(cfg, ablation_def(study, ablation).get("overrides", {}))
    cfg = deep_merge(cfg, {"train": {"seed": int(seed)}})
    try:
        return RunConfig(cfg)
    except ConfigError as exc:
        raise ConfigError(
            f"calibration candidate '{candidate}', ablation '{ablation}': {exc}"
        ) from None


def calibration_cells(study: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(candidate, ablation, seed) triples of the calibration sweep, in config order."""
    block = study.get("calibration") or {}
    return [
        (c, a, int(s))
        for c in block.get("candidates", {})
        for a in block.get("arms", [])
        for s in block.get("seeds", [])
    ]


def check_calibration(study: dict[str, Any]) -> None:
    """Fail fast on a calibration block naming unknown arms or holding invalid settings."""
    block = study.get("calibration")
    if not block:
        return
    if study["baseline"] not in block.get("arms", []):
        raise ConfigError(
            f"calibration.arms must include the baseline '{study['baseline']}'; add it"
        )
    for candidate, ablation, seed in calibration_cells(study):
        resolve_calibration_run(study, candidate, ablation, seed)
