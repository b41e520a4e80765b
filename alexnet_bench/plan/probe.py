"""Measure this machine: start probe workers side by side and turn their timings into rates.

As many workers as the study will run jobs at once (``--cores`` over the jobs' threads, capped
by the CPUs this machine has), each with a job's thread count (``OMP_NUM_THREADS``, as
Snakemake sets it) and, on a GPU host, its own device. The groups to measure are dealt out in
turn; with fewer groups than workers a group is measured by several (the median is kept), so
the contention is the study's whatever its size. See :mod:`.probe_worker` for what each
measures and how.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchError
from .rates import GroupRates, HostRates

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: the worker fields merged as medians when several workers measured one group
NUMERIC = (
    "setup_s",
    "first_step_extra_s",
    "step_s",
    "eval_images_per_s",
    "ten_crop_images_per_s",
    "data_images_per_s",
    "health_s",
    "checkpoint_s",
    "resume_load_s",
    "history_row_bytes",
    "history_header_bytes",
    "power_w",
)


@dataclass(frozen=True)
class ProbeGroup:
    """One group to measure: its key and the run config a probe process trains."""

    key: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ProbeSettings:
    workers: int
    threads: int
    host_gpus: int = 0
    window_s: float = 1.0
    repeats: int = 3
    peak_threads: tuple[int, ...] = ()  # measure the peak-FLOP/s job for these thread counts
    report: bool = False  # measure the report job's imports
    timeout_s: float = 600.0


def _multi_device(group: ProbeGroup) -> bool:
    """A model-parallel group: one process that needs several GPUs."""
    rt = group.config.get("runtime", {})
    return int(rt.get("gpus", 1)) > 1 and rt.get("parallel") == "model"


def _deal(groups: list[ProbeGroup], workers: int, host_gpus: int = 0) -> list[list[dict[str, Any]]]:
    """Groups dealt to workers in turn; every worker gets at least one (repeating groups). On a
    GPU host a model-parallel group goes to worker 0, the one that sees every GPU."""
    assign: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    if not groups:
        return assign
    pinned = [g for g in groups if host_gpus and _multi_device(g)]
    dealt = [g for g in groups if g not in pinned]
    for g in pinned:
        assign[0].append({"key": g.key, "config": g.config})
    for i in range(max(len(dealt), workers) if dealt else 0):
        g = dealt[i % len(dealt)]
        assign[i % workers].append({"key": g.key, "config": g.config})
    return assign


def _env(threads: int, index: int, host_gpus: int) -> dict[str, str]:
    """A worker's environment: the job's threads; on a GPU host its own device (worker 0 sees
    them all and trains one-device groups on the first)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update({var: str(threads) for var in THREAD_VARS})
    if host_gpus:
        given = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = given.split(",") if given else [str(i) for i in range(host_gpus)]
        env["CUDA_VISIBLE_DEVICES"] = (
            ",".join(visible) if index == 0 else visible[index % len(visible)]
        )
    return env


def _run_workers(tmp: Path, settings: ProbeSettings) -> list[dict[str, Any]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    spec = tmp / "spec.json"
    try:
        for i in range(settings.workers):
            log = tmp / f"worker-{i}.log"
            with open(log, "wb") as fh:
                spawned = time.time()
                cmd = [
                    sys.executable,
                    "-m",
                    "alexnet_bench.plan.probe_worker",
                    str(spec),
                    str(i),
                    repr(spawned),
                ]
                procs.append(
                    (
                        subprocess.Popen(
                            cmd,
                            stdout=fh,
                            stderr=subprocess.STDOUT,
                            env=_env(settings.threads, i, settings.host_gpus),
                        ),
                        log,
                    )
                )
        deadline = time.monotonic() + settings.timeout_s
        exited: dict[int, float] = {}
        while any(p.poll() is None for p, _ in procs):
            for i, (p, log) in enumerate(procs):
                if p.returncode not in (None, 0):
                    raise BenchError(f"probe worker {i} failed: {_last_line(log)}")
                if p.returncode == 0 and i not in exited:
                    exited[i] = time.time()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the probe took longer than {settings.timeout_s:.0f} s; lower --window-s "
                    "or plan from earlier results (--from-results DIR)"
                )
            time.sleep(0.01)
        for i, (p, log) in enumerate(procs):
            if p.returncode != 0:
                raise BenchError(f"probe worker {i} failed: {_last_line(log)}")
            exited.setdefault(i, time.time())
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = [json.loads((tmp / f"result-{i}.json").read_text()) for i in range(settings.workers)]
    for i, r in enumerate(results):
        bye = tmp / f"bye-{i}"
        r["exit_s"] = max(0.0, exited[i] - float(bye.read_text())) if bye.is_file() else None
    return results


def _last_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _sample_tree(root: str, val_fraction: float, out: Path, per_split: dict[str, int]) -> Any:
    """A tree of links to evenly spaced images of each split of ``root`` (train/ and val/),
    and its scan."""
    from ..imagefolder import scan_tree

    scan = scan_tree(root, val_fraction, seed=0)
    for split, count in per_split.items():
        paths = scan.splits[split].paths
        for p in paths[:: max(1, len(paths) // max(1, count))][:count]:
            link = out / split / Path(p).parent.name / Path(p).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(p).resolve())
    return scan, scan_tree(out, val_fraction, seed=0)


def sample_stores(
    groups: list[ProbeGroup], tmp: Path
) -> tuple[list[ProbeGroup], dict[str, dict[str, Any]]]:
    """Groups that read a prepared-data store not built yet read, instead, a store built here
    (with the real builder) from a sample of the tree: same format, same in-memory choice as
    the full store. The builds' seconds per image are the prepare jobs' decoding rate, keyed
    by the full store's directory."""
    from ..config import RunConfig, deep_merge, effective_stored_size
    from ..data.opening import IN_MEMORY_LIMIT_BYTES
    from ..data.store import build_store
    from ..imagefolder import SPLITS, parse_cache_format, store_dir, tree_dir
    from ..study import prepared_stores

    logging.getLogger("alexnet_bench.data.store").setLevel(logging.WARNING)  # no build chatter
    out: list[ProbeGroup] = []
    rates: dict[str, dict[str, Any]] = {}
    built: dict[tuple[str, int, str], dict[str, Any]] = {}
    for g in groups:
        cfg = RunConfig(g.config)
        stores = prepared_stores(cfg)
        if not stores or all((Path(s) / "manifest.json").is_file() for s in stores):
            out.append(g)
            continue
        d = cfg.data
        stored = effective_stored_size(d.image_size, d.stored_size)
        fmt = cfg.raw["data"].get("cache_format") or "raw"
        key = (str(Path(d.root).expanduser()), stored, fmt)
        if key not in built:
            sample = tmp / f"sample-{len(built)}"
            per_split = {
                "train": max(16 * cfg.train.batch_size, 256),
                "val": max(2 * cfg.eval.batch_size, 64),
            }
            full, scan = _sample_tree(key[0], d.val_fraction, sample / "tree", per_split)
            cache = tree_dir(sample / "cache", scan)
            encoding, quality = parse_cache_format(fmt)
            for split, store in zip(SPLITS, stores, strict=True):
                began = time.perf_counter()
                manifest = build_store(
                    scan,
                    split,
                    stored,
                    store_dir(cache, split, stored, fmt),
                    encoding=encoding,
                    quality=quality or 0,
                    on_bad_image="skip",
                    workers=1,
                )
                n = max(1, manifest["num_images"])
                rates[store] = {
                    "s_per_image": (time.perf_counter() - began) / n,
                    "bytes_per_image": manifest["images"]["bytes"] / n,
                    "images_timed": n,
                }
            total = len(full.train.paths) + len(full.val.paths)
            fits = total * 3 * stored**2 <= IN_MEMORY_LIMIT_BYTES
            in_memory = d.in_memory if d.in_memory != "auto" else ("yes" if fits else "no")
            built[key] = {"root": str(sample / "tree"), "cache": str(cache), "in_memory": in_memory}
        out.append(ProbeGroup(g.key, deep_merge(g.config, {"data": built[key]})))
    return out, rates


def probe(
    groups: list[ProbeGroup], settings: ProbeSettings
) -> tuple[dict[str, GroupRates], HostRates]:
    """Run the workers; per-group rates (medians over the workers that measured a group) and
    the host's."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-plan-") as name:
        tmp = Path(name)
        groups, prepare = sample_stores(groups, tmp)
        spec = {
            "workers": settings.workers,
            "assign": _deal(groups, settings.workers, settings.host_gpus),
            "window_s": settings.window_s,
            "repeats": settings.repeats,
            "peak_threads": list(settings.peak_threads),
            "report": settings.report,
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        results = _run_workers(tmp, settings)
    wall = time.monotonic() - start
    host = _host_rates(results, settings, wall)
    host.prepare = prepare
    return _group_rates(results), host


def _group_rates(results: list[dict[str, Any]]) -> dict[str, GroupRates]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        for g in r["groups"]:
            by_key.setdefault(g["key"], []).append(g)
    rates: dict[str, GroupRates] = {}
    for key, measured in by_key.items():
        merged = {f: _median([m.get(f) for m in measured]) for f in NUMERIC}
        first = measured[0]
        power = merged["power_w"]
        rates[key] = GroupRates(
            key=key,
            source=f"probed on this host ({first['device']})",
            batch_size=int(first["batch_size"]),
            step_s=merged["step_s"],
            setup_s=merged["setup_s"],
            first_step_extra_s=merged["first_step_extra_s"],
            eval_images_per_s=merged["eval_images_per_s"],
            ten_crop_images_per_s=merged["ten_crop_images_per_s"],
            checkpoint_s=merged["checkpoint_s"],
            resume_load_s=merged["resume_load_s"],
            health_s=merged["health_s"],
            data_images_per_s=merged["data_images_per_s"],
            checkpoint_bytes=int(first["checkpoint_bytes"]),
            final_weights_bytes=int(first["final_weights_bytes"]),
            history_header_bytes=merged["history_header_bytes"],
            history_row_bytes=merged["history_row_bytes"],
            power_w=power,
            energy_source=(
                "NVML power during the probe's steps"
                if power is not None
                else f"no power reading ({first.get('power_reason') or 'CPU'})"
            ),
            step_windows_s=[w for m in measured for w in m["step_windows_s"]],
            runs=len(measured),
        )
    return rates


def _median(values: list[Any]) -> Any:
    xs = [float(v) for v in values if v is not None]
    return statistics.median(xs) if xs else None


def _host_rates(results: list[dict[str, Any]], settings: ProbeSettings, wall: float) -> HostRates:
    lead = results[0]
    # a worker that imported the report's modules exits like the report job, the others like
    # a training job
    plain = [r.get("exit_s") for r in results if "report_import_s" not in r]
    exit_s = _median(plain or [r.get("exit_s") for r in results]) or 0.0
    report_exit = _median([r.get("exit_s") for r in results if "report_import_s" in r])
    host = HostRates(
        source="probed on this host",
        startup_train_s=_median([r["startup_train_s"] for r in results]) + exit_s,
        startup_cli_s=_median([r["startup_cli_s"] for r in results]) + exit_s,
        environment_s=_median([r.get("environment_s") for r in results]) or 0.0,
        first_setup_s=_median([r.get("first_setup_extra_s") for r in results]) or 0.0,
        workers=settings.workers,
        peak_flops_s=lead.get("peak_flops_s"),
        probe_wall_s=wall,
    )
    solo = lead.get("solo")
    if solo:
        loaded = next(g["step_s"] for g in lead["groups"] if g["key"] == solo["key"])
        host.contention = loaded / solo["step_s"]
        host.contention_note = (
            f"a step took {host.contention:.2f}x as long with {settings.workers} probe jobs side "
            f"by side as alone ({loaded * 1e3:.1f} vs {solo['step_s'] * 1e3:.1f} ms)"
        )
    else:
        host.contention_note = "one job at a time: no contention to measure"
    if settings.report:
        host.report_s = (_median([r.get("report_import_s") for r in results]) or 0.0) + max(
            0.0, (report_exit or exit_s) - exit_s
        )
        host.report_note = (
            "the report's imports and exit (measured); rendering is not probed: it needs results"
        )
    return host


def worker_count(cores: int, threads: int, cpus: int, jobs: int) -> int:
    """Jobs the study runs side by side here: cores over threads, capped by the CPUs and the
    number of jobs (at least 1)."""
    per = max(1, threads)
    return max(1, min(cores // per, max(1, cpus // per), max(1, jobs)))


def default_window(groups: int, workers: int, budget_s: float) -> float:
    """A step window that keeps the probe within ``budget_s`` of worker time: 1 s where the
    budget allows, never below 0.25 s (about 6 s of fixed cost per group)."""
    per_worker = math.ceil(max(groups, 1) / max(workers, 1))
    return max(0.25, min(1.0, (budget_s / per_worker - 3.0) / 3.5))
