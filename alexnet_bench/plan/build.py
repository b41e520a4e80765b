"""Assemble a plan: the study's cells, their rates, the schedule, the totals and the power.

The result is one JSON-able dict (written as ``reports/plan/plan.json``), the single source of
the terminal table, the Markdown file and the report's predicted-vs-actual section.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .cells import Cell, Host, missing_stores, plan_cells, usable_threads
from .cost import JobCost, device_seconds, disk, train_job
from .probe import ProbeGroup, ProbeSettings, default_window, probe, worker_count
from .rates import GroupRates, HostRates
from .schedule import Job, Placed, contention, simulate

PLAN_VERSION = 1


@dataclass(frozen=True)
class Options:
    cores: int
    gpu_limit: int | None  # Snakemake's --resources gpu=N (None: not limited)
    host: Host
    results_dir: Path
    reports_dir: Path = Path("reports")
    from_results: Path | None = None
    pilot: Path | None = None
    window_s: float | None = None  # None: as the probe budget allows
    repeats: int = 3
    probe_budget_s: float = 30.0


def _probe_config(cell: Cell) -> dict[str, Any]:
    """The run config one probe process trains for ``cell``: a DDP job's rank (one process,
    its share of the global batch); anything else as configured."""
    raw = cell.cfg.to_dict()
    rt = cell.cfg.runtime
    if rt.gpus > 1 and rt.parallel == "ddp":
        raw["runtime"]["gpus"] = 1
        raw["train"]["batch_size"] = cell.cfg.train.batch_size // rt.gpus
    return raw


def _peak_threads(study: dict[str, Any], cells: list[Cell]) -> tuple[int, ...]:
    """The thread counts the peak-flops job measures (PEAK_THREADS in rules/common.smk)."""
    per_job = usable_threads(study)
    return tuple(sorted({per_job * d for d in {1} | {c.cfg.runtime.gpus for c in cells}}))


def _store_jobs(study: dict[str, Any], cells: list[Cell]) -> list[dict[str, Any]]:
    """The prepared-data stores still to build: their directory, images and stored size."""
    from ..imagefolder import scan_tree
    from ..study import prepared_stores

    by_store: dict[str, Cell] = {}
    for c in cells:
        if c.trains:
            for store in prepared_stores(c.cfg):
                by_store.setdefault(store, c)
    out = []
    for store in missing_stores(study, cells):
        d = by_store[store].cfg.data
        split = Path(store).name.split("-", 1)[0]
        images = len(scan_tree(d.root, d.val_fraction, seed=0).splits[split].paths)
        size = int(Path(store).name.split("-", 1)[1].split("px", 1)[0])
        out.append({"store": store, "images": images, "size": size})
    return out


def _rates(
    study: dict[str, Any], cells: list[Cell], opts: Options, jobs: int, need: dict[str, Any]
) -> tuple[dict[str, GroupRates], HostRates]:
    wanted = [
        c for c in cells if c.state in ("train", "resume") or (opts.pilot and c.state == "done")
    ]
    if opts.from_results is not None:
        from .recorded import recorded_rates

        return recorded_rates(
            opts.from_results,
            [dataclasses.replace(c, state="train") if c.state == "done" else c for c in wanted],
        )
    groups: dict[str, ProbeGroup] = {}
    for c in wanted:
        groups.setdefault(c.group, ProbeGroup(c.group, _probe_config(c)))
    threads = usable_threads(study)
    workers = worker_count(opts.cores, threads, opts.host.cpus, jobs)
    if opts.host.gpus and any(c.devices for c in wanted):
        workers = max(1, min(workers, opts.host.gpus, opts.gpu_limit or opts.host.gpus))
    window = opts.window_s or default_window(len(groups), workers, opts.probe_budget_s)
    settings = ProbeSettings(
        workers=workers,
        threads=threads,
        host_gpus=opts.host.gpus,
        window_s=window,
        repeats=opts.repeats,
        peak_threads=need["peak_threads"],
        report=need["report"],
    )
    rates, host = probe(list(groups.values()), settings)
    metrics = sorted(opts.results_dir.glob("*/seed*/metrics.json"))
    if metrics:
        host.metrics_bytes = float(metrics[-1].stat().st_size)
    return rates, host


#: parts of a job the probe measured with the machine to itself (the rest: side by side)
SOLO_PARTS = ("matmul probe", "decode")


def _schedule_jobs(costs: list[JobCost], host: HostRates) -> list[Job]:
    """The jobs with their work in seconds alone: parts measured side by side over the
    contention factor, the ones measured alone as they are."""
    factor = max(1.0, host.contention)
    jobs = []
    for c in costs:
        solo = sum(v for k, v in c.parts.items() if k in SOLO_PARTS)
        work = solo + (c.seconds - solo) / factor
        jobs.append(Job(c.name, work, c.threads, c.gpu, c.devices, c.deps))
    return jobs


def _simulate(costs: list[JobCost], host: HostRates, opts: Options) -> dict[str, Placed]:
    slowdown = contention(host.contention, host.workers, opts.host.cpus)
    return simulate(
        _schedule_jobs(costs, host), opts.cores, opts.gpu_limit, opts.host.gpus, slowdown
    )


def build_plan(
    study: dict[str, Any], opts: Options, workflow_startup_s: float | None = None
) -> dict[str, Any]:
    """The plan of ``study`` on ``opts.host`` (see the module docstring). ``workflow_startup_s``:
    Snakemake's own start-up, measured when the plan runs as the workflow's job; the jobs start
    after it."""
    started = time.time()
    cells = plan_cells(study, opts.host, opts.results_dir)
    preset = study["preset"]
    to_run = [c for c in cells if c.state != "done"]
    need_peak = bool(to_run) and not (opts.results_dir / "peak_flops.json").is_file()
    reports_missing = not all(
        (opts.reports_dir / n).is_file() for n in ("index.html", "summary.md")
    )
    need_report = bool(to_run) or reports_missing
    stores = _store_jobs(study, cells)
    need = {
        "peak_threads": _peak_threads(study, cells) if need_peak else (),
        "report": need_report,
        "stores": stores,
    }
    if to_run or need_report or opts.pilot is not None:
        rates, host = _rates(study, cells, opts, len(to_run), need)
    else:  # nothing to run: nothing to measure
        rates, host = {}, HostRates("nothing to measure: every cell is done", 0.0, 0.0)
    costs: list[JobCost] = []
    if need_peak:
        peak_s = host.peak_flops_s or 0.0
        costs.append(
            JobCost(
                f"peak_flops/{preset}",
                "peak_flops",
                min(max(need["peak_threads"]), opts.cores),
                host.startup_cli_s + peak_s,
                {"start-up": host.startup_cli_s, "matmul probe": peak_s},
            )
        )
    unmeasured = [s["store"] for s in stores if s["store"] not in host.prepare]
    if unmeasured:
        host.notes.append(
            f"{len(unmeasured)} prepared-data build(s) without a measured decoding rate "
            "(recorded results hold none): start-up only"
        )
    store_bytes: dict[str, int] = {}
    prepare_threads = min(int(study.get("prepare_threads", 1)), opts.cores)
    for s in stores:
        measured = host.prepare.get(s["store"], {})
        per_image = measured.get("s_per_image") or 0.0
        work = s["images"] * per_image / max(1, min(prepare_threads, opts.host.cpus))
        costs.append(
            JobCost(
                f"prepare_data/{Path(s['store']).name}",
                "prepare_data",
                prepare_threads,
                host.startup_cli_s + work,
                {"start-up": host.startup_cli_s, "decode": work},
            )
        )
        per = measured.get("bytes_per_image") or 3 * s["size"] ** 2
        store_bytes[s["store"]] = int(s["images"] * per)
    upstream = tuple(c.name for c in costs)
    for cell in to_run:
        job = train_job(cell, rates.get(cell.group), host)
        job.deps = upstream
        costs.append(job)
    train_names = tuple(c.name for c in costs if c.rule == "train")
    if need_report:
        report_s = host.report_s or 0.0
        costs.append(
            JobCost(
                "report",
                "report",
                1,
                host.startup_cli_s + report_s,
                {"start-up": host.startup_cli_s, "report": report_s},
                deps=train_names,
            )
        )
    placed = _simulate(costs, host, opts) if costs else {}
    plan = _document(study, opts, cells, rates, host, costs, placed)
    plan["totals"]["workflow_startup_s"] = workflow_startup_s
    if workflow_startup_s is not None and costs:
        plan["totals"]["wall_s"] += workflow_startup_s
        plan["notes"].append(
            f"Snakemake's own start-up ({workflow_startup_s:.1f} s, measured before this plan "
            "job in the same workflow) is in the wall time; job start and end times are after it"
        )
    else:
        plan["notes"].append(
            "Snakemake's own start-up is not in the wall time (run `snakemake plan` to measure it)"
        )
    plan["disk"] = disk(cells, rates, host, host.workers, store_bytes)
    if opts.pilot is not None:
        from .power import pilot_power

        plan["power"] = [
            r.to_dict() for r in pilot_power(opts.pilot, study, _arm_cost(cells, rates, host, opts))
        ]
        plan["pilot"] = str(opts.pilot)
    plan["plan_s"] = time.time() - started
    return plan


def _arm_cost(cells: list[Cell], rates: dict[str, GroupRates], host: HostRates, opts: Options):
    """cost(arms): device-seconds, wall seconds and unit of training [(ablation, seeds)] afresh."""
    by_ablation = {c.ablation: c for c in cells}

    def cost(arms: list[tuple[str, int]]) -> tuple[float, float, str] | None:
        jobs: list[JobCost] = []
        for ablation, seeds in arms:
            cell = by_ablation.get(ablation)
            if cell is None or cell.state in ("skip", "fail") or cell.group not in rates:
                return None
            fresh = dataclasses.replace(cell, state="train", done_epochs=0)
            for s in range(seeds):
                job = train_job(fresh, rates[cell.group], host)
                job.name = f"{ablation}/{s}"
                jobs.append(job)
        placed = _simulate(jobs, host, opts)
        dev = sum(device_seconds(j, placed[j.name].seconds) for j in jobs)
        unit = "GPU-s" if any(j.devices for j in jobs) else "core-s"
        return dev, max(p.end for p in placed.values()), unit

    return cost


def _document(study, opts, cells, rates, host, costs, placed) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    by_name = {c.name: c for c in costs}
    rows = []
    for cell in cells:
        job, p = by_name.get(cell.name), placed.get(cell.name)
        seconds = p.seconds if p else 0.0
        rows.append(
            {
                "cell": cell.name,
                "ablation": cell.ablation,
                "seed": cell.seed,
                "state": cell.state,
                "reason": cell.reason,
                "epochs": cell.epochs,
                "done_epochs": cell.done_epochs,
                "planned_epochs": cell.cfg.train.epochs,
                "images": cell.images,
                "group": cell.group,
                "config_hash": cell.cfg.hash,
                "threads": cell.threads,
                "gpu": cell.gpu,
                "devices": cell.devices,
                "start_s": p.start if p else None,
                "end_s": p.end if p else None,
                "job_s": seconds,
                "work_s": job.seconds if job else 0.0,
                "parts": job.parts if job else {},
                "device_s": device_seconds(job, seconds) if job else 0.0,
                "device_unit": ("GPU-s" if cell.devices else "core-s"),
                "energy_j": job.energy_j if job else None,
            }
        )
    others = [
        {
            "job": c.name,
            "rule": c.rule,
            "threads": c.threads,
            "work_s": c.seconds,
            "parts": c.parts,
            "start_s": placed[c.name].start,
            "end_s": placed[c.name].end,
            "job_s": placed[c.name].seconds,
        }
        for c in costs
        if c.rule != "train"
    ]
    trains = [c for c in costs if c.rule == "train"]
    energies = [c.energy_j for c in trains if c.cell is not None and c.cell.trains]
    train_end = max((placed[c.name].end for c in trains), default=0.0)
    return {
        "version": PLAN_VERSION,
        "created_unix": time.time(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "preset": study["preset"],
        "results_dir": str(opts.results_dir),
        "cores": opts.cores,
        "gpu_resource": opts.gpu_limit,
        "host": dataclasses.asdict(opts.host),
        "source": host.source,
        "cells": rows,
        "jobs": others,
        "groups": [
            {**r.to_dict(), "ablations": sorted({c.ablation for c in cells if c.group == k})}
            for k, r in rates.items()
        ],
        "host_rates": host.to_dict(),
        "totals": {
            "cells": len(cells),
            "cells_to_train": sum(c.trains for c in cells),
            "cells_done": sum(c.state == "done" for c in cells),
            "cells_skipped": sum(c.state == "skip" for c in cells),
            "cells_failing": sum(c.state == "fail" for c in cells),
            "epochs": sum(c.epochs for c in cells),
            "images": sum(c.images for c in cells),
            "device_s": sum(r["device_s"] for r in rows)
            + sum(o["job_s"] * o["threads"] for o in others),
            "job_s": sum(r["job_s"] for r in rows),
            "wall_s": max((p.end for p in placed.values()), default=0.0),
            "train_wall_s": train_end,
            "energy_j": (
                sum(e for e in energies if e is not None)
                if energies and all(e is not None for e in energies)
                else None
            ),
        },
        "energy_source": next(
            (r.energy_source for r in rates.values()), "nothing to train: no energy"
        ),
        "notes": _notes(study, cells, host, opts),
    }


def _notes(study: dict[str, Any], cells: list[Cell], host: HostRates, opts: Options) -> list[str]:
    notes = list(host.notes)
    if host.contention_note:
        notes.append(f"contention: {host.contention_note}")
    if host.report_note:
        notes.append(f"report job: {host.report_note}")
    if any(c.cfg.runtime.gpus > 1 and c.cfg.runtime.parallel == "ddp" and c.trains for c in cells):
        notes.append(
            "DDP cells are timed as one rank at its share of the batch: gradient communication "
            "is not measured"
        )
    notes.append("Snakemake's per-job scheduling is not measured")
    if opts.gpu_limit is None and opts.host.gpus:
        notes.append("no --resources gpu: GPU jobs queue on the GPU locks, holding their cores")
    if not opts.cores:
        raise ConfigError("--cores must be at least 1")
    return notes
