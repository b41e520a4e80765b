"""The study's cells as the target host would run them, and what each one still needs.

Every cell's run config comes from :func:`alexnet_bench.study.resolve_run`, so the plan and the
workflow train the same thing. A cell is *done* when its ``metrics.json`` and ``history.csv``
exist, the record's status is a final one, its ``config_hash`` is the planned config's
(:attr:`RunConfig.hash`, result keys only) and its data identity the planned data's where both
are known; a cell with a usable checkpoint of the same run identity (config and data) resumes
after that epoch (:func:`alexnet_bench.checkpoint.resumable_epoch`); a multi-device
cell the host cannot give its devices is recorded as skipped (or fails), as ``launch.py``
decides.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..checkpoint import resumable_epoch
from ..collect import KNOWN_STATUSES
from ..config import RunConfig, deep_merge, load_yaml
from ..errors import ConfigError
from ..identity import DataIdentity, run_identity
from ..study import cells, check_study, planned_data_identity, prepared_stores, resolve_run

#: keys that change what a run learns but not how long a step, an evaluation or a set-up takes
TIMING_FREE = {
    "train": {
        "seed",
        "epochs",
        "lr",
        "lr_step_epochs",
        "lr_gamma",
        "lr_patience",
        "lr_schedule",
        "target_train_error",
        "keep_checkpoint",
        "collapse_check",
        "target_error_on",
        "stop_at_target",
    },
    "data": {"root", "cache"},
    "telemetry": {"progress_interval_s"},
}
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_study(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    study_json: str | None = None,
) -> dict[str, Any]:
    """The study config: ``study_json`` (the workflow passes its merged config), else the YAML
    file with ``KEY=VALUE`` overrides (values parsed as YAML, merged like ``snakemake
    --config``), validated and completed by the workflow's schema, then checked like the
    workflow checks it (:func:`alexnet_bench.study.check_study`)."""
    import yaml

    if study_json is not None:
        try:
            study = json.loads(study_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--study-json is not valid JSON ({exc.msg}); pass a JSON object"
            ) from None
    else:
        study_path = Path(path or "config.yaml")
        study = load_yaml(study_path) or {}
        for text in overrides or []:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--config '{text}' must look like KEY=VALUE, e.g. preset=tiny")
            try:
                study = deep_merge(study, {key.strip(): yaml.safe_load(value)})
            except yaml.YAMLError:
                raise ConfigError(f"--config '{text}': the value is not valid YAML") from None
    if not isinstance(study, dict) or "presets" not in study or "ablation_defs" not in study:
        raise ConfigError(
            "the study config needs 'presets' and 'ablation_defs'; pass --study config.yaml"
        )
    if SCHEMA.is_file():
        from snakemake.exceptions import WorkflowError
        from snakemake.utils import validate

        try:
            validate(study, str(SCHEMA))  # also fills in the schema's defaults
        except WorkflowError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"config.yaml does not match its schema: {first}") from None
    check_study(study, base_dir=Path.cwd())
    return study


@dataclass(frozen=True)
class Host:
    """The machine the study will run on."""

    gpus: int  # NVIDIA devices it has
    cpus: int  # CPUs the jobs may use
    name: str = ""


def this_host() -> Host:
    """This machine: its GPUs (NVML) and the CPUs this process may use."""
    import socket

    from ..gpu_lock import physical_gpu_count
    from ..telemetry.host import usable_cpus

    return Host(physical_gpu_count(), usable_cpus() or 1, socket.gethostname())


@dataclass(frozen=True)
class Cell:
    """One cell of the study on the target host, and what it still needs."""

    ablation: str
    seed: int
    cfg: RunConfig
    out_dir: Path
    state: str  # train | resume | done | skip | fail
    reason: str
    done_epochs: int  # epochs a rerun resumes after (0: none)
    threads: int  # the job's CPU threads (job_threads in workflow/rules/common.smk)
    gpu: int  # its Snakemake `gpu` resource
    devices: int  # GPUs it trains on (0: CPU)
    n_train: int
    n_val: int
    group: str  # cells with the same group take equally long per step (timing_key)

    @property
    def name(self) -> str:
        return f"{self.ablation}/seed{self.seed}"

    @property
    def epochs(self) -> int:
        """Epochs still to train."""
        if self.state not in ("train", "resume"):
            return 0
        return max(0, self.cfg.train.epochs - self.done_epochs)

    @property
    def steps_per_epoch(self) -> int:
        return self.n_train // self.cfg.train.batch_size  # drop_last: global batches

    @property
    def images(self) -> int:
        """Training images still to process."""
        return self.epochs * self.steps_per_epoch * self.cfg.train.batch_size

    @property
    def trains(self) -> bool:
        return self.state in ("train", "resume") and self.epochs > 0


def timing_key(cfg: RunConfig) -> str:
    """What a step's, an evaluation's and a set-up's time depend on: the run config without
    the keys that only change what is learned (:data:`TIMING_FREE`), as a short hash."""
    raw = cfg.to_dict()
    kept = {
        section: {k: v for k, v in values.items() if k not in TIMING_FREE.get(section, ())}
        for section, values in raw.items()
    }
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@cache
def _folder_counts(root: str, val_fraction: float) -> tuple[int, int]:
    from ..imagefolder import scan_tree

    scan = scan_tree(root, val_fraction, seed=0)
    return len(scan.train.paths), len(scan.val.paths)


#: the splits of CIFAR-10 (the data set's definition)
CIFAR10_SPLITS = (50000, 10000)


def dataset_sizes(cfg: RunConfig) -> tuple[int, int]:
    """Training and validation images a run reads (before ``max_train``/``max_val`` caps)."""
    d = cfg.data
    if d.source == "synthetic":
        n_train, n_val = d.num_train, d.num_val
    elif d.source == "cifar10":
        n_train, n_val = CIFAR10_SPLITS
    else:
        n_train, n_val = _folder_counts(str(Path(d.root).expanduser()), d.val_fraction)
    if d.max_train:
        n_train = min(n_train, d.max_train)
    if d.max_val:
        n_val = min(n_val, d.max_val)
    return int(n_train), int(n_val)


def _finished(out_dir: Path, config_hash: str, data: DataIdentity) -> str | None:
    """The status of a finished cell whose record is for ``config_hash`` and the data
    ``data`` (when both it and the record know their data), else None."""
    metrics = out_dir / "metrics.json"
    if not metrics.is_file() or not (out_dir / "history.csv").is_file():
        return None
    try:
        record = json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("config_hash") != config_hash:
        return None
    recorded = (record.get("identity") or {}).get("data")
    if data is not None and recorded is not None and recorded != data:
        return None  # the data changed since: the workflow retrains the cell
    status = record.get("status")
    return status if status in KNOWN_STATUSES else None


def _device_state(cfg: RunConfig, study: dict[str, Any], host: Host) -> tuple[str, str, int]:
    """(train | skip | fail, why, GPUs it trains on) as launch.py decides on ``host``."""
    rt = cfg.runtime
    kind = ("cuda" if host.gpus else "cpu") if rt.device == "auto" else rt.device
    if kind == "cuda" and rt.gpus > host.gpus:
        why = f"needs {rt.gpus} GPU(s), the host has {host.gpus}"
        if study.get("on_insufficient_gpus", "skip") == "skip":
            return "skip", f"recorded as skipped: {why}", 0
        return "fail", f"fails: {why} (on_insufficient_gpus: fail)", 0
    if kind == "cpu" and rt.gpus > 1 and study.get("cpu_standins", "skip") == "skip":
        return "skip", f"recorded as skipped: {rt.gpus}-device cell on a host without GPUs", 0
    return "train", "", rt.gpus if kind == "cuda" else 0


def plan_cells(study: dict[str, Any], host: Host, results_dir: Path | None = None) -> list[Cell]:
    """Every cell of the study in config order, with its state on ``host``."""
    preset = study["preset"]
    results_dir = Path(results_dir) if results_dir is not None else Path("results") / preset
    per_job = int(study.get("threads_per_job", 1))
    standins_skipped = study.get("cpu_standins", "skip") == "skip" and host.gpus == 0
    gpu_jobs = study.get("gpu_jobs", "auto")
    use_gpu_resource = gpu_jobs == "yes" or (gpu_jobs == "auto" and host.gpus > 0)
    out: list[Cell] = []
    for ablation, seed in cells(study):
        cfg = resolve_run(study, preset, ablation, seed)
        out_dir = results_dir / ablation / f"seed{seed}"
        state, reason, devices = _device_state(cfg, study, host)
        done = 0
        data = planned_data_identity(cfg)
        finished = _finished(out_dir, cfg.hash, data)
        if finished is not None:
            state, reason = "done", f"{finished} (metrics.json of this config and data)"
        elif state == "train":
            resumable = resumable_epoch(out_dir, run_identity(cfg.hash, data))
            done = min(resumable, cfg.train.epochs)
            if done:
                state, reason = "resume", f"resumes after epoch {done} (checkpoint.pt)"
        n_train, n_val = dataset_sizes(cfg) if state in ("train", "resume") else (0, 0)
        out.append(
            Cell(
                ablation=ablation,
                seed=seed,
                cfg=cfg,
                out_dir=out_dir,
                state=state,
                reason=reason,
                done_epochs=done,
                threads=per_job * (1 if standins_skipped else cfg.runtime.gpus),
                gpu=cfg.runtime.gpus if use_gpu_resource else 0,
                devices=devices,
                n_train=n_train,
                n_val=n_val,
                group=timing_key(cfg),
            )
        )
    return out


def missing_stores(study: dict[str, Any], planned: list[Cell]) -> list[str]:
    """The prepared-data stores (directories) a training cell reads that are not built yet."""
    stores = {s for c in planned if c.trains for s in prepared_stores(c.cfg)}
    return sorted(s for s in stores if not (Path(s) / "manifest.json").is_file())


def usable_threads(study: dict[str, Any]) -> int:
    """threads_per_job (the CPU threads of a one-device job)."""
    return int(study.get("threads_per_job", 1)) or 1


def default_cores() -> int:
    """``--cores all``: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
