"""How well ``plan`` predicts a study: plan it, run it, compare, from a clean clone.

In a fresh ``git clone`` of this repository's HEAD (a fresh data cache too: nothing measured
before is reused) the script runs, timing each with the wall clock::

    python -m snakemake --cores N [--resources gpu=G] plan [--config ...]
    python -m snakemake --cores N [--resources gpu=G] [--config ...]

and records the predicted wall time (``reports/plan/plan.json``: peak-FLOP/s job, training,
report) against Snakemake's measured wall time, the training phase (first job's start to the
last cell's end, from the job files and Snakemake's benchmark files) against the plan's, and
every cell's predicted and actual job time (:func:`alexnet_bench.plan.actual.compare`), into
``benchmarks/results/plan_accuracy_<preset>_<host>_<UTC time>.json``. The clone uses this
environment's interpreter (its own code first on ``PYTHONPATH``). Run it on an otherwise idle
machine; the load average before and after is recorded.

Run (the default study takes about 10 minutes on 2 cores)::

    uv run python benchmarks/plan_accuracy.py --cores 2
    uv run python benchmarks/plan_accuracy.py --cores 2 --config preset=tiny   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alexnet_bench.io import write_json
from alexnet_bench.plan.actual import compare
from alexnet_bench.plan.recorded import read_benchmark_s

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def _snakemake(clone: Path, env: dict[str, str], args: list[str], log: Path) -> float:
    """Run Snakemake in ``clone``; its wall seconds (raises on failure, naming the log)."""
    start = time.monotonic()
    with open(log, "w") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=clone,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    seconds = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed (status {code}); see {log}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gpus", type=int, help="Snakemake's --resources gpu=N")
    parser.add_argument("--config", nargs="*", default=[], help="snakemake --config KEY=VALUE")
    parser.add_argument("--workdir", help="where to clone (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="plan-accuracy-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(clone)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ALEXNET_BENCH_CACHE"] = str(work / "data-cache")
    common = ["--cores", str(args.cores)]
    if args.gpus is not None:
        common += ["--resources", f"gpu={args.gpus}"]
    config = ["--config", *args.config] if args.config else []

    load_before = os.getloadavg()
    plan_s = _snakemake(clone, env, ["plan", *common, *config], work / "plan.log")
    plan = json.loads((clone / "reports" / "plan" / "plan.json").read_text())
    study_s = _snakemake(clone, env, [*common, *config], work / "study.log")
    load_after = os.getloadavg()

    results = clone / plan["results_dir"]
    result = compare(plan, results)
    peak_wall = read_benchmark_s(clone / "logs/benchmark/peak_flops" / f"{plan['preset']}.tsv")
    report_wall = read_benchmark_s(clone / "logs/benchmark/report.tsv")
    predicted = plan["totals"]["wall_s"]
    html = clone / "reports" / "index.html"
    first = result["totals"]["first_start_unix"]
    jobs_span = html.stat().st_mtime - first if html.is_file() and first else None
    record: dict[str, Any] = {
        "what": "alexnet-bench plan's predicted wall time against the study's measured one",
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes_not_in_clone": bool(_git("status", "--porcelain")),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cores": args.cores,
        "gpu_resource": args.gpus,
        "config": args.config,
        "preset": plan["preset"],
        "plan_command_s": plan_s,
        "plan_probe_s": plan["host_rates"].get("probe_wall_s"),
        "predicted_wall_s": predicted,
        "snakemake_wall_s": study_s,
        "ratio_snakemake_over_predicted": study_s / predicted if predicted else None,
        "jobs_span_s": jobs_span,  # the first job's start to the report's end
        "workflow_overhead_s": study_s - jobs_span if jobs_span else None,  # Snakemake's own
        "predicted_train_wall_s": plan["totals"]["train_wall_s"],
        "actual_train_wall_s": result["totals"]["actual_wall_s"],
        "train_wall_ratio": result["totals"]["wall_ratio"],
        "job_time_ratio": result["totals"]["job_ratio"],
        "peak_flops_job": {"predicted_s": _job(plan, "peak_flops"), "actual_s": peak_wall},
        "report_job": {"predicted_s": _job(plan, "report"), "actual_s": report_wall},
        "parts": result["parts"],
        "notes": result["notes"] + plan["notes"],
        "cells": result["rows"],
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out) / f"plan_accuracy_{plan['preset']}_{socket.gethostname()}_{stamp}.json"
    write_json(out, record)
    print(
        f"predicted {predicted:.0f} s, Snakemake took {study_s:.0f} s "
        f"(ratio {record['ratio_snakemake_over_predicted']:.2f}); training phase ratio "
        f"{record['train_wall_ratio'] or float('nan'):.2f}; wrote {out}"
    )
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _job(plan: dict[str, Any], rule: str) -> float | None:
    return next((j["job_s"] for j in plan["jobs"] if j["rule"] == rule), None)


if __name__ == "__main__":
    sys.exit(main())
