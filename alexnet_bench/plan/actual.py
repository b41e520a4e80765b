"""The plan against reality: what each cell then took, and the study as a whole.

A cell's actual time is its job's wall time from Snakemake's benchmark file
(``logs/benchmark/<preset>/<ablation>/seed<n>.tsv``: process start-up included), else the
record's ``total_time_s`` (in-process only, labelled so). Only cells whose ``metrics.json`` was
written after the plan and under the planned config hash count. The study's wall time runs from
the first job's start (the peak-FLOP/s job when it ran, else the first cell; start = the file's
time minus the job's wall time) to the last cell's end, against the plan's time to the end of
training (the report job is still running when this is read).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..numbers import fmt_duration
from .recorded import benchmark_dir, read_benchmark_s

PLAN_FILE = Path("plan") / "plan.json"


def load_plan(path: Path) -> dict[str, Any] | None:
    """A plan.json, or None when absent or unreadable."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and "cells" in plan else None


def _record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def compare(plan: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """Per cell and in total: predicted and actual seconds and their ratio (actual/predicted)."""
    results_dir = Path(results_dir)
    bench = benchmark_dir(results_dir)
    created = float(plan["created_unix"])
    rows, notes, starts, ends = [], [], [], []
    startup_pairs, inside_pairs = [], []
    pending = changed = 0
    for cell in plan["cells"]:
        if cell["state"] == "done" or not cell["job_s"]:
            continue
        metrics = results_dir / cell["ablation"] / f"seed{cell['seed']}" / "metrics.json"
        record = _record(metrics) if metrics.is_file() else None
        if record is None or metrics.stat().st_mtime < created:
            pending += 1
            continue
        if record.get("config_hash") != cell["config_hash"]:
            changed += 1
            continue
        wall = read_benchmark_s(bench / cell["ablation"] / f"seed{cell['seed']}.tsv")
        total = record.get("total_time_s")
        actual, source = (wall, "job") if wall is not None else (total, "in-process")
        predicted = (
            cell["job_s"] if source == "job" else cell["job_s"] - cell["parts"].get("start-up", 0.0)
        )
        if not isinstance(actual, int | float):
            pending += 1
            continue
        end = metrics.stat().st_mtime
        starts.append(end - float(actual))
        ends.append(end)
        if wall is not None and isinstance(total, int | float):
            startup_pairs.append((cell["parts"].get("start-up", 0.0), wall - total))
            inside_pairs.append((cell["job_s"] - cell["parts"].get("start-up", 0.0), total))
        rows.append(
            {
                "cell": cell["cell"],
                "state": record.get("status"),
                "predicted_s": predicted,
                "actual_s": float(actual),
                "ratio": float(actual) / predicted if predicted else None,
                "source": source,
            }
        )
    peak = results_dir / "peak_flops.json"
    peak_wall = read_benchmark_s(bench.parent / "peak_flops" / f"{results_dir.name}.tsv")
    if rows and peak.is_file() and peak.stat().st_mtime >= created and peak_wall is not None:
        starts.append(peak.stat().st_mtime - peak_wall)
    if pending:
        notes.append(f"{pending} planned cell(s) have not run since the plan: left out")
    if changed:
        notes.append(f"{changed} cell(s) ran under another config than planned: left out")
    if any(r["source"] == "in-process" for r in rows):
        notes.append(
            "cells without a Snakemake benchmark file are compared in-process (start-up excluded)"
        )
    predicted_sum = sum(r["predicted_s"] for r in rows)
    actual_sum = sum(r["actual_s"] for r in rows)
    complete = not pending and not changed and bool(rows)
    totals = {
        "cells": len(rows),
        "predicted_job_s": predicted_sum,
        "actual_job_s": actual_sum,
        "job_ratio": actual_sum / predicted_sum if predicted_sum else None,
        "predicted_wall_s": plan["totals"]["train_wall_s"] if complete else None,
        "actual_wall_s": max(ends) - min(starts) if complete else None,
        "first_start_unix": min(starts) if starts else None,
        "last_end_unix": max(ends) if ends else None,
    }
    if totals["predicted_wall_s"] and totals["actual_wall_s"] is not None:
        totals["wall_ratio"] = totals["actual_wall_s"] / totals["predicted_wall_s"]
    else:
        totals["wall_ratio"] = None
    parts = {}
    for name, pairs in (("start-up", startup_pairs), ("in-job", inside_pairs)):
        if pairs:
            parts[name] = {
                "predicted_median_s": statistics.median(p for p, _ in pairs),
                "actual_median_s": statistics.median(a for _, a in pairs),
            }
    return {"rows": rows, "totals": totals, "parts": parts, "notes": notes}


def _ratio(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "n/a"


def explain(plan: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Where the prediction missed, and what the plan knew about why."""
    notes = list(result["notes"])
    for name, p in result["parts"].items():
        notes.append(
            f"{name} per job: predicted {fmt_duration(p['predicted_median_s'])}, took "
            f"{fmt_duration(p['actual_median_s'])} (medians)"
        )
    ratios = sorted((r for r in result["rows"] if r["ratio"]), key=lambda r: r["ratio"])
    if len(ratios) >= 2:
        lo, hi = ratios[0], ratios[-1]
        notes.append(
            f"per-cell ratios range from {lo['ratio']:.2f} ({lo['cell']}) to "
            f"{hi['ratio']:.2f} ({hi['cell']})"
        )
    hr = plan.get("host_rates", {})
    if hr.get("contention_note"):
        notes.append(
            f"contention was modelled from the probe: {hr['contention_note']}; other load on "
            "the machine during the study (or the probe) is not"
        )
    notes += [n for n in plan.get("notes", []) if "not measured" in n or "not probed" in n]
    notes.append(f"plan made {plan.get('created')} with rates {plan.get('source')}")
    return notes


def report_section(plan_path: Path, results_dir: Path) -> dict[str, Any] | None:
    """What the report's "Predicted vs actual time" section says (a lead sentence, one row per
    cell, notes), or None without a plan of this results directory. The report renders it."""
    plan = load_plan(plan_path)
    if plan is None or Path(plan.get("results_dir", "")).resolve() != Path(results_dir).resolve():
        return None
    result = compare(plan, results_dir)
    t = result["totals"]
    if t["actual_wall_s"] is not None:
        lead = (
            f"Training wall time: predicted {fmt_duration(t['predicted_wall_s'])}, took "
            f"{fmt_duration(t['actual_wall_s'])} (actual/predicted {_ratio(t['wall_ratio'])}); "
            f"job time summed over {t['cells']} cells: ratio {_ratio(t['job_ratio'])}."
        )
    else:
        lead = (
            f"{t['cells']} cell(s) ran since the plan: job time predicted "
            f"{fmt_duration(t['predicted_job_s'])}, took {fmt_duration(t['actual_job_s'])} "
            f"(ratio {_ratio(t['job_ratio'])})."
        )
    rows = [
        [
            r["cell"],
            str(r["state"]),
            fmt_duration(r["predicted_s"]),
            fmt_duration(r["actual_s"]),
            _ratio(r["ratio"]),
            "job wall time" if r["source"] == "job" else "in-process",
        ]
        for r in result["rows"]
    ]
    return {
        "lead": lead,
        "columns": ["cell", "status", "predicted", "actual", "actual / predicted", "measured as"],
        "rows": rows,
        "note": f"Plan: {plan_path}. Ratio above 1: the cell took longer than predicted.",
        "notes": explain(plan, result),
    }
