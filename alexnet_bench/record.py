"""The run record (``metrics.json``): what a trained, failed or skipped run writes.

One module assembles every record the package writes: :func:`training_record` (the trainer's
results), :func:`finish_record` (the job's labels, config, telemetry, host and environment) and
:func:`write_not_trained` (a failed or skipped cell). ``reports/collect.py`` is the reading
side (``READ_KEYS``); ``tests/test_record_contract.py`` checks that the two agree.
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

from .io import write_json
from .metrics import summarise_history, time_to_target, write_history
from .model import count_parameters
from .runtime import AMP_DTYPES
from .telemetry.flops import device_peak_flops, mfu, train_flops_per_image
from .telemetry.peak import cpu_peak_for

log = logging.getLogger(__name__)
#: bumped when the record changes shape
SCHEMA_VERSION = 2  # 2: status "collapsed", health, host.job_cpu_s; parallel.scaling removed (the report computes it)

if TYPE_CHECKING:
    from .config import RunConfig
    from .train import RunState, Trainer


def training_record(
    trainer: Trainer,
    state: RunState,
    status: str,
    diverged_epoch: int | None,
    ten_crop: dict[str, float] | None,
) -> dict[str, Any]:
    """The record of a training run as the trainer leaves it: status, errors, time to target,
    speed, FLOPs/MFU, model, health, device, runtime switches and data."""
    summary = summarise_history(state.history)
    summary["final"].update(
        ten_crop or {"val_top1_error_10crop": None, "val_top5_error_10crop": None}
    )
    step = trainer.timer.summary()
    ips = step.get("images_per_s_median")
    epoch_ips = [r["images_per_s"] for r in state.history if r.get("images_per_s")]
    world = trainer.dist.world_size
    global_ips = ips * world if ips else None
    flops = flops_record(trainer, global_ips)
    reason = (
        f"loss became non-finite in epoch {diverged_epoch}"
        if diverged_epoch
        else state.status_reason
    )
    return {
        "status": status,
        "reason": reason,
        "epochs_completed": state.epoch,
        "diverged_epoch": diverged_epoch,
        "resumed_from_epoch": state.resumed_from,
        "notes": state.notes,
        **summary,
        "time_to_target": time_to_target(state.history, trainer.cfg.train.target_train_error,
                                         trainer.data.num_classes, trainer.target_column),
        "train_time_s": round(state.elapsed_s, 4),
        "throughput": {
            "images_per_s_median": global_ips,
            "images_per_s_mean": (sum(epoch_ips) / len(epoch_ips)) if epoch_ips else None,
            "scope": f"global over {world} process(es), median over timed steps",
        },
        "step_time": step,
        "flops": flops,
        "model": {"num_params": count_parameters(trainer.model), **getattr(trainer.model, "config", {})},
        "health": trainer.health(),
        "device": device_record(trainer),
        "runtime": runtime_record(trainer),
        "data": {**{k: v for k, v in trainer.data.info.items() if k != "skipped_at_load"},
                 "skipped_files": len(trainer.data.skipped_files),
                 "skipped_examples": trainer.data.skipped_files[:10]},
    }  # fmt: skip


def flops_record(trainer: Trainer, images_per_s: float | None) -> dict[str, Any]:
    """FLOPs per image, achieved FLOP/s and MFU against the study's once-measured CPU peak
    (or the device's); an MFU above 1 (a disturbed peak probe) is withheld with a note."""
    per_image = train_flops_per_image(trainer.model, trainer.cfg.data.image_size, trainer.device)
    dtype = AMP_DTYPES.get(trainer.cfg.runtime.amp, torch.float32)
    study_peak = None
    if trainer.device.type == "cpu":
        study_peak = cpu_peak_for(trainer.peak_flops_file, torch.get_num_threads())
    if study_peak is not None:
        peak = {"peak_flops": study_peak[0], "source": "measured-matmul-once",
                "note": study_peak[1]}  # fmt: skip
    else:
        peak = device_peak_flops(trainer.device, dtype)
        if peak["source"] == "measured-matmul":
            peak["note"] += " in this job (other jobs running beside it may disturb it)"
    # every process (DDP rank) has the same device and threads: the job's peak is the sum
    peak_total = peak["peak_flops"] * trainer.dist.world_size
    achieved = per_image * images_per_s if images_per_s else None
    value = mfu(achieved, peak_total) if achieved else None
    note = peak.get("note")
    if value is not None and value > 1.0:  # impossible: the peak was underestimated
        note = (f"MFU {value:.2f} > 1 means the peak probe was disturbed; not reported. "
                f"{note or ''}").strip()  # fmt: skip
        value = None
    return {
        "train_flops_per_image": per_image,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak_total,
        "peak_source": peak["source"],
        "peak_note": note,
        "mfu": value,
    }


def device_record(trainer: Trainer) -> dict[str, Any]:
    if trainer.device.type == "cuda":
        name = torch.cuda.get_device_name(trainer.device)
        return {"type": "cuda", "name": name, "count": trainer.device_count}
    return {"type": "cpu", "name": "cpu", "count": trainer.device_count}


def parallel_record(trainer: Trainer) -> dict[str, Any]:
    """How the job uses its devices, labelled honestly on CPU."""
    mode = "ddp" if trainer.dist.distributed else ("model" if trainer.model_parallel else "none")
    cpu_standin = trainer.device.type == "cpu" and trainer.device_count > 1
    return {
        "mode": mode,
        "world_size": trainer.dist.world_size,
        "devices": trainer.device_count,
        "backend": trainer.dist.backend,
        "device_type": trainer.device.type,
        "note": "CPU stand-in for several GPUs: same code path, no speed-up expected"
        if cpu_standin
        else None,
    }


def runtime_record(trainer: Trainer) -> dict[str, Any]:
    """The fast-path switches as they took effect on this device (for metrics.json)."""
    rt, cuda = trainer.cfg.runtime, trainer.device.type == "cuda"
    return {
        "compile": trainer.compile_status,
        "cuda_graphs": ("on" if trainer.compile_mode == "reduce-overhead" and
                        trainer.compile_status.startswith("on") else
                        "off" if not rt.cuda_graphs else "n/a (needs CUDA)"),
        "amp": rt.amp,
        "channels_last": rt.channels_last,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if cuda else None,
        "fused_optimizer": bool(trainer.optimizer.defaults.get("fused")),
        "tf32": cuda,
        "data_on_device": bool(trainer.data.info.get("in_memory")),
        "pinned_memory_copies": cuda and not trainer.data.info.get("in_memory"),
        "deterministic": trainer.cfg.train.deterministic,
    }  # fmt: skip


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
) -> dict[str, Any]:
    """``metrics`` (a :func:`training_record`) with the job's side: cell labels, config and its
    hash, wall time, GPU telemetry, host statistics, device use and environment."""
    return {
        **metrics,
        "run": labels,
        "config": cfg.to_dict(),
        "config_hash": cfg.hash,
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
            "epochs_completed": 0,
        },
    )
    if not (out / "history.csv").exists():
        write_history(out / "history.csv", [])
