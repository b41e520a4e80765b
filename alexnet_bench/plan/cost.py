"""From measured rates to what each job costs: seconds (by part), energy and disk.

A training job's seconds: process start-up, set-up (data, model, initialisation), the first
step's extra, then per remaining epoch the steps, the evaluation (validation images plus
``eval.train_images``), a checkpoint save; once at the end the health pass and the record's
FLOP count and environment (and a 10-crop evaluation where configured); a resumed job also
loads its checkpoint. A skipped cell costs its process start-up. Seconds are loaded seconds
(see :mod:`.rates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cells import Cell
from .rates import GroupRates, HostRates


@dataclass
class JobCost:
    """One job of the workflow and its predicted loaded seconds."""

    name: str
    rule: str  # train | peak_flops | prepare_data | report
    threads: int
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    gpu: int = 0
    devices: int = 0
    deps: tuple[str, ...] = ()
    cell: Cell | None = None
    energy_j: float | None = None
    energy_source: str = ""
    unmeasured: list[str] = field(default_factory=list)  # parts no measurement covers


def train_job(cell: Cell, rates: GroupRates | None, host: HostRates) -> JobCost:
    """The job of one cell that is not done (train, resume, skip or fail)."""
    base = dict(
        name=cell.name,
        rule="train",
        threads=cell.threads,
        gpu=cell.gpu,
        devices=cell.devices,
        cell=cell,
    )
    if cell.state in ("skip", "fail"):
        return JobCost(seconds=host.startup_cli_s, parts={"start-up": host.startup_cli_s}, **base)
    assert rates is not None, cell.name
    cfg, epochs = cell.cfg, cell.epochs
    n_eval = cell.n_val + min(cfg.eval.train_images, cell.n_train)
    parts = {
        "start-up": host.startup_train_s,
        "set-up": host.first_setup_s + rates.setup_s + rates.first_step_extra_s,
        "train steps": epochs * cell.steps_per_epoch * rates.step_s,
        "evaluation": epochs * n_eval / rates.eval_images_per_s if rates.eval_images_per_s else 0.0,
        "checkpoints": epochs * rates.checkpoint_s if cfg.train.checkpoint else 0.0,
        "other (recorded)": epochs * rates.other_s_per_epoch,
        "resume": rates.resume_load_s if cell.done_epochs else 0.0,
        "finish": rates.health_s + host.environment_s,
    }
    if cfg.eval.ten_crop and rates.ten_crop_images_per_s:
        parts["10-crop"] = cell.n_val / rates.ten_crop_images_per_s
    parts = {k: v for k, v in parts.items() if v}
    seconds = sum(parts.values())
    job = JobCost(seconds=seconds, parts=parts, **base)
    if rates.power_w is not None:
        job.energy_j = rates.power_w * seconds
        job.energy_source = rates.energy_source
    elif rates.energy_per_image_j is not None:
        job.energy_j = rates.energy_per_image_j * cell.images
        job.energy_source = rates.energy_source
    else:
        job.energy_source = rates.energy_source
    return job


def device_seconds(job: JobCost, seconds: float) -> float:
    """GPU-seconds (devices x seconds) for a GPU job, else core-seconds (threads x seconds)."""
    return seconds * (job.devices if job.devices else job.threads)


def disk(
    cells: list[Cell],
    rates: dict[str, GroupRates],
    host: HostRates,
    concurrent: int,
    stores: dict[str, int],
) -> dict[str, Any]:
    """Bytes the study writes: prepared-data stores, results, checkpoints (kept, and at peak
    while ``concurrent`` jobs run). ``stores``: bytes of each store still to build."""
    results = 0.0
    kept = 0.0
    running = []
    unknown: list[str] = []
    for c in cells:
        if not (c.trains or c.state == "resume"):
            continue
        r = rates.get(c.group)
        if r is None:
            continue
        if r.history_row_bytes is not None:
            results += (r.history_header_bytes or 0) + r.history_row_bytes * c.cfg.train.epochs
        if host.metrics_bytes is not None:
            results += host.metrics_bytes
        ckpt = r.checkpoint_bytes
        if ckpt is None:
            unknown.append(c.name)
            continue
        pair = 2 * ckpt if c.cfg.train.checkpoint else 0
        running.append(pair)
        keep = c.cfg.train.keep_checkpoint
        kept += pair if keep == "all" else (r.final_weights_bytes or 0) if keep == "final" else 0
    running.sort(reverse=True)
    cache = float(sum(stores.values()))
    return {
        "cache_bytes": cache,
        "results_bytes": results,
        "checkpoints_kept_bytes": kept,
        "checkpoints_peak_bytes": kept + sum(running[:concurrent]),
        "total_bytes": cache + results + kept,
        "metrics_json_counted": host.metrics_bytes is not None,
        "unknown_cells": unknown,
    }
