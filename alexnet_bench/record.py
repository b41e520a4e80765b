"""The run record (``metrics.json``): what a trained, failed or skipped run writes.

One module assembles every record the package writes: :func:`training_record` (from the
:class:`~.train_result.TrainResult` that ``Trainer.fit`` returns), :func:`finish_record` (the
job's labels, config, telemetry, host and environment) and :func:`write_not_trained` (a failed
or skipped cell). Every record is checked against ``schemas/metrics.schema.yaml`` before it is
written; the reading side is :mod:`.collect` (typed by :mod:`.runrecord`).
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import torch
import yaml

from .history import write_history
from .io import write_json
from .metrics import summarise_history, time_to_target
from .runtime import AMP_DTYPES
from .telemetry.flops import device_peak_flops, mfu
from .telemetry.peak import cpu_peak_for
from .train_result import TrainResult, TrainSetup

log = logging.getLogger(__name__)
#: bumped when the record changes shape
SCHEMA_VERSION = 2  # 2: status "collapsed", health, host.job_cpu_s; parallel.scaling removed (the report computes it)

if TYPE_CHECKING:
    from .config import RunConfig


def training_record(result: TrainResult) -> dict[str, Any]:
    """The record of a training run: status, errors, time to target, speed, FLOPs/MFU, model,
    health, device, runtime switches and data."""
    setup = result.setup
    summary = summarise_history(result.history)
    summary["final"].update(
        result.ten_crop or {"val_top1_error_10crop": None, "val_top5_error_10crop": None}
    )
    step = result.step_time
    ips = step.get("images_per_s_median")
    epoch_ips = [r["images_per_s"] for r in result.history if r.get("images_per_s")]
    world = setup.world_size
    global_ips = ips * world if ips else None
    return {
        "status": result.status,
        "reason": result.reason,
        "epochs_completed": result.epochs_completed,
        "diverged_epoch": result.diverged_epoch,
        "resumed_from_epoch": result.resumed_from,
        "notes": result.notes,
        **summary,
        "time_to_target": time_to_target(
            result.history, setup.cfg.train.target_train_error, result.target_column
        ),
        "train_time_s": round(result.train_time_s, 4),
        "throughput": {
            "images_per_s_median": global_ips,
            "images_per_s_mean": (sum(epoch_ips) / len(epoch_ips)) if epoch_ips else None,
            "scope": f"global over {world} process(es), median over timed steps",
        },
        "step_time": step,
        "flops": flops_record(setup, global_ips),
        "model": result.model,
        "health": result.health,
        "device": device_record(setup),
        "runtime": runtime_record(setup),
        "data": {
            **{k: v for k, v in setup.data_info.items() if k != "skipped_at_load"},
            "skipped_files": len(setup.skipped_files),
            "skipped_examples": setup.skipped_files[:10],
        },
    }


def flops_record(setup: TrainSetup, images_per_s: float | None) -> dict[str, Any]:
    """FLOPs per image, achieved FLOP/s and MFU against the study's once-measured CPU peak
    (or the device's); an MFU above 1 (a disturbed peak probe) is withheld with a note."""
    per_image = setup.flops_per_image
    dtype = AMP_DTYPES.get(setup.cfg.runtime.amp, torch.float32)
    study_peak = None
    if setup.device.type == "cpu":
        study_peak = cpu_peak_for(setup.peak_flops_file, torch.get_num_threads())
    if study_peak is not None:
        peak = {
            "peak_flops": study_peak[0],
            "source": "measured-matmul-once",
            "note": study_peak[1],
        }
    else:
        peak = device_peak_flops(setup.device, dtype)
        if peak["source"] == "measured-matmul":
            peak["note"] += " in this job (other jobs running beside it may disturb it)"
    # every process (DDP rank) has the same device and threads: the job's peak is the sum
    peak_total = peak["peak_flops"] * setup.world_size
    achieved = per_image * images_per_s if images_per_s else None
    value = mfu(achieved, peak_total) if achieved else None
    note = peak.get("note")
    if value is not None and value > 1.0:  # impossible: the peak was underestimated
        note = (
            f"MFU {value:.2f} > 1 means the peak probe was disturbed; not reported. {note or ''}"
        ).strip()
        value = None
    return {
        "train_flops_per_image": per_image,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak_total,
        "peak_source": peak["source"],
        "peak_note": note,
        "mfu": value,
    }


def device_record(setup: TrainSetup) -> dict[str, Any]:
    return {"type": setup.device.type, "name": setup.device_name, "count": setup.device_count}


def parallel_record(setup: TrainSetup) -> dict[str, Any]:
    """How the job uses its devices, labelled honestly on CPU."""
    mode = "ddp" if setup.distributed else ("model" if setup.model_parallel else "none")
    cpu_standin = setup.device.type == "cpu" and setup.device_count > 1
    return {
        "mode": mode,
        "world_size": setup.world_size,
        "devices": setup.device_count,
        "backend": setup.backend,
        "device_type": setup.device.type,
        "note": "CPU stand-in for several GPUs: same code path, no speed-up expected"
        if cpu_standin
        else None,
    }


def runtime_record(setup: TrainSetup) -> dict[str, Any]:
    """The fast-path switches as they took effect on this device (for metrics.json)."""
    rt, cuda = setup.cfg.runtime, setup.device.type == "cuda"
    return {
        "compile": setup.compile_status,
        "cuda_graphs": (
            "on"
            if setup.compile_mode == "reduce-overhead" and setup.compile_status.startswith("on")
            else "off"
            if not rt.cuda_graphs
            else "n/a (needs CUDA)"
        ),
        "amp": rt.amp,
        "channels_last": rt.channels_last,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "fused_optimizer": setup.fused_optimizer,
        "tf32": cuda,
        "data_on_device": bool(setup.data_info.get("in_memory")),
        "pinned_memory_copies": cuda and not setup.data_info.get("in_memory"),
        "deterministic": setup.cfg.train.deterministic,
    }


@cache
def _metrics_schema() -> dict[str, Any]:
    with resources.files("alexnet_bench").joinpath("schemas/metrics.schema.yaml").open() as fh:
        return yaml.safe_load(fh)


def check_record(record: dict[str, Any]) -> str | None:
    """Why ``record`` breaks schemas/metrics.schema.yaml (one line), or None when it holds."""
    try:
        jsonschema.validate(json.loads(json.dumps(record, default=str)), _metrics_schema())
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        return f"{where}: {exc.message}"
    return None


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Atomically write ``metrics.json`` (with the schema version first), checked against the
    record schema. A record that breaks it is a bug of this package: the test suite
    (ALEXNET_BENCH_STRICT_RECORD=1) fails on it; a user's run logs a warning and keeps its
    results rather than losing them."""
    record = {"schema_version": SCHEMA_VERSION, **metrics}
    problem = check_record(record)
    if problem is not None:
        if os.environ.get("ALEXNET_BENCH_STRICT_RECORD") == "1":
            raise ValueError(f"{path}: the record breaks metrics.schema.yaml at {problem}")
        log.warning("%s breaks metrics.schema.yaml at %s (written anyway)", path, problem)
    write_json(path, record)


def finish_record(
    metrics: dict[str, Any],
    cfg: RunConfig,
    labels: dict[str, Any],
    *,
    total_time_s: float,
    gpu: dict[str, Any],
    host: dict[str, Any],
    parallel: dict[str, Any],
    environment: dict[str, Any],
    identity: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """``metrics`` (a :func:`training_record`) with the job's side: cell labels, config and its
    hash, the run's identity (config and data) and provenance (where its files lay), wall
    time, GPU telemetry, host statistics, device use and environment."""
    return {
        **metrics,
        "run": labels,
        "config": cfg.to_dict(),
        "config_hash": cfg.hash,
        "identity": identity,
        "provenance": provenance,
        "total_time_s": round(total_time_s, 4),
        "gpu": gpu,
        "host": host,
        "parallel": parallel,
        "environment": environment,
    }


def write_not_trained(
    out: Path, status: str, reason: str, cfg: RunConfig | None, labels: dict[str, Any]
) -> None:
    """Write the record of a cell that did not train (``failed`` or ``skipped``), atomically,
    with an empty history beside it."""
    write_metrics(
        out / "metrics.json",
        {
            "status": status,
            "reason": reason,
            "run": labels,
            "config": cfg.to_dict() if cfg else None,
            "config_hash": cfg.hash if cfg else None,
            "identity": {"config_hash": cfg.hash, "data": None, "hash": None} if cfg else None,
            "epochs_completed": 0,
        },
    )
    if not (out / "history.csv").exists():
        write_history(out / "history.csv", [])
