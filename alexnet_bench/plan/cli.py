"""``alexnet-bench plan``: predict the configured study's cost (and power) before running it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .cells import Host


def cmd_plan(args: argparse.Namespace) -> int:
    from .build import Options, build_plan
    from .cells import Host, default_cores, load_study, this_host
    from .render import terminal, write

    study = load_study(args.study, args.config, args.study_json)
    host = this_host()
    from_results = Path(args.from_results) if args.from_results else None
    if from_results is not None:
        host = _recorded_host(from_results, host)
    if args.host_gpus is not None:
        host = Host(args.host_gpus, host.cpus, host.name)
    if args.host_cpus is not None:
        host = Host(host.gpus, args.host_cpus, host.name)
    cores = args.cores or (host.cpus if from_results else default_cores())
    if cores < 1:
        raise ConfigError(f"--cores {cores}: give at least 1")
    results = Path(args.results) if args.results else Path("results") / study["preset"]
    options = Options(
        cores=cores,
        gpu_limit=args.gpu_resource,
        host=host,
        results_dir=results,
        reports_dir=Path(args.reports),
        from_results=from_results,
        pilot=Path(args.pilot) if args.pilot else None,
        window_s=args.window_s,
        repeats=args.repeats,
    )
    if options.pilot is not None and not options.pilot.is_dir():
        raise ConfigError(f"--pilot '{options.pilot}' is not a directory; pass results/<preset>")
    plan = build_plan(study, options, workflow_startup_s=_snakemake_startup())
    sys.stdout.write(terminal(plan))
    if not args.no_write:
        paths = write(plan, Path(args.out))
        print(f"wrote {', '.join(map(str, paths))}")
    return 0


def _snakemake_startup() -> float | None:
    """When this runs as the workflow's ``plan`` job: the seconds Snakemake took from its start
    to starting this job (parsing the workflow, checking the cells, building the DAG), from
    the outermost Snakemake ancestor's process start time; else None."""
    import psutil

    try:
        me = psutil.Process()
        ancestors = [p for p in me.parents() if "snakemake" in " ".join(p.cmdline()[:3])]
        return me.create_time() - ancestors[-1].create_time() if ancestors else None
    except (psutil.Error, OSError):
        return None


def _recorded_host(results: Path, here: Host) -> Host:
    """The host an earlier results directory ran on: its GPUs and CPUs, as recorded."""
    import json
    import statistics

    from ..collect import discover
    from .cells import Host

    gpus, cpus, names = [], [], []
    for path in discover(results):
        try:
            env = json.loads(path.read_text()).get("environment") or {}
        except (OSError, ValueError):
            continue
        gpus.append(len(env.get("cuda_gpus") or env.get("nvml_gpus") or []))
        if env.get("logical_cpus"):
            cpus.append(int(env["logical_cpus"]))
        names.append(env.get("hostname") or "")
    if not gpus:
        return here
    return Host(
        max(gpus),
        int(statistics.median(cpus)) if cpus else 1,
        next((n for n in names if n), "recorded host"),
    )


def add_plan_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``plan`` subcommand."""
    p = sub.add_parser(
        "plan",
        help="predict the configured study's time, device-hours, energy and disk (and, from a "
        "pilot, the seeds each claim needs) before running it",
        description=(
            "Plan the study of config.yaml (+ --config overrides) on this host: per cell and in "
            "total the epochs, images, job time, device time and energy still to spend, and the "
            "wall time under --cores and the gpu resource, from timings measured here in a few "
            "seconds (or recorded in an earlier results directory: --from-results). Completed "
            "cells cost nothing, killed ones their remaining epochs. Writes "
            "reports/plan/plan.json and plan.md; the study report compares it with what the "
            "study then took. See docs/plan.md."
        ),
    )
    p.add_argument("--study", default="config.yaml", help="the study config (default: config.yaml)")
    p.add_argument(
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="override a top-level key as `snakemake --config` does (value parsed as "
        "YAML; repeatable), e.g. --config preset=tiny --config 'seeds=[0,1]'",
    )
    p.add_argument("--study-json", help="the whole study config as JSON (the workflow's rule)")
    p.add_argument("--cores", type=int, help="Snakemake's --cores (default: this host's CPUs)")
    p.add_argument(
        "--gpu-resource",
        type=int,
        metavar="N",
        help="Snakemake's --resources gpu=N (default: not set)",
    )
    p.add_argument(
        "--host-gpus",
        type=int,
        metavar="N",
        help="GPUs of the host the study runs on (default: this host's, or the "
        "recorded host's with --from-results)",
    )
    p.add_argument("--host-cpus", type=int, metavar="N", help="its CPUs (default: as above)")
    p.add_argument(
        "--results", metavar="DIR", help="the study's results directory (default: results/<preset>)"
    )
    p.add_argument("--reports", default="reports", help="the report's directory (default: reports)")
    p.add_argument(
        "--from-results",
        metavar="DIR",
        help="take the rates from an earlier results directory instead of probing",
    )
    p.add_argument(
        "--pilot",
        metavar="DIR",
        help="an earlier results directory of the same preset: the seeds each claim "
        "and ablation needs, from its per-seed spread",
    )
    p.add_argument(
        "--window-s",
        type=float,
        help="seconds per timed window of the probe (default: 1, less where many "
        "groups of cells must fit the probe's budget)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed windows per measurement")
    p.add_argument("--out", default="reports/plan", help="where plan.json and plan.md go")
    p.add_argument("--no-write", action="store_true", help="print the plan only")
    p.set_defaults(func=cmd_plan)
