"""A plan as the terminal shows it and as ``reports/plan/plan.md`` / ``plan.json`` hold it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..io import human_bytes, write_json, write_text
from ..numbers import fmt_duration


def _energy(joules: float | None) -> str:
    if joules is None:
        return "n/a"
    return f"{joules / 3.6e6:.2f} kWh" if joules >= 3.6e5 else f"{joules / 1e3:.1f} kJ"


def _unit_hours(plan: dict[str, Any]) -> str:
    units = {r["device_unit"] for r in plan["cells"] if r["job_s"] and r["state"] != "skip"}
    return "GPU-h" if units == {"GPU-s"} else "core-h" if units <= {"core-s"} else "device-h"


def summary_lines(plan: dict[str, Any]) -> list[str]:
    """The plan in a few sentences (the head of both views)."""
    t, host = plan["totals"], plan["host"]
    gpu = plan["gpu_resource"]
    lines = [
        f"Plan for preset '{plan['preset']}' on {host['name'] or 'this host'} "
        f"({host['gpus']} GPU(s), {host['cpus']} CPU(s)), --cores {plan['cores']}, "
        f"gpu resource {gpu if gpu is not None else 'not set'}; rates {plan['source']}"
        + (
            f" (probe: {fmt_duration(plan['host_rates']['probe_wall_s'])})"
            if plan["host_rates"].get("probe_wall_s")
            else ""
        )
        + ".",
        f"Cells: {t['cells']} ({t['cells_to_train']} to train, {t['cells_done']} done, "
        f"{t['cells_skipped']} recorded as skipped, {t['cells_failing']} failing); "
        f"{t['epochs']} epochs, {t['images'] / 1e6:.2f} M training images.",
        f"Predicted: {fmt_duration(t['wall_s'])} of wall time ("
        + (
            f"Snakemake's start-up {fmt_duration(t['workflow_startup_s'])}, then "
            if t.get("workflow_startup_s") is not None and t["wall_s"]
            else ""
        )
        + f"training done after {fmt_duration(t['train_wall_s'])}), "
        f"{t['device_s'] / 3600:.2f} {_unit_hours(plan)} of "
        f"device time, energy {_energy(t['energy_j'])} ({plan['energy_source']}).",
    ]
    d = plan.get("disk")
    if d:
        lines.append(
            f"Disk: {human_bytes(d['total_bytes'])} written (data cache "
            f"{human_bytes(d['cache_bytes'])}, results {human_bytes(d['results_bytes'])}, "
            f"checkpoints kept {human_bytes(d['checkpoints_kept_bytes'])}); up to "
            f"{human_bytes(d['checkpoints_peak_bytes'])} of checkpoints while jobs run."
        )
    return lines


CELL_COLUMNS = ["cell", "state", "epochs", "images", "job time", "device time", "start", "end"]


def cell_rows(plan: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in plan["cells"]:
        unit = r["device_unit"].removesuffix("-s")
        rows.append(
            [
                r["cell"],
                r["state"],
                str(r["epochs"]),
                str(r["images"]),
                fmt_duration(r["job_s"]),
                f"{r['device_s']:.0f} {unit}-s" if r["job_s"] else "0",
                fmt_duration(r["start_s"]) if r["start_s"] is not None else "",
                fmt_duration(r["end_s"]) if r["end_s"] is not None else "",
            ]
        )
    return rows


GROUP_COLUMNS = [
    "ablations",
    "step",
    "train img/s",
    "eval img/s",
    "data img/s",
    "set-up",
    "rest per epoch",
    "source",
]


def group_rows(plan: dict[str, Any]) -> list[list[str]]:
    def rate(x: float | None) -> str:
        return f"{x:.0f}" if x else "n/a"

    rows = []
    for g in plan["groups"]:
        probed = g["source"].startswith("probed")
        rest = g["other_s_per_epoch"]
        rows.append(
            [
                ", ".join(g["ablations"]),
                f"{g['step_s'] * 1e3:.1f} ms",
                rate(g["images_per_s"]),
                rate(g["eval_images_per_s"]),
                rate(g["data_images_per_s"]),
                f"{g['setup_s']:.2f} s" if probed else "in the rest",
                f"{rest:.2f} s" if rest else "measured apart",
                g["source"],
            ]
        )
    return rows


POWER_COLUMNS = [
    "claim / ablation",
    "comparison",
    "pilot",
    "sd",
    "detectable with seeds",
    "target",
    "seeds needed",
    "their cost",
]


def power_rows(plan: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in plan.get("power", []):
        ratio = p["ratio"]

        def eff(x: float | None, ratio: bool = ratio) -> str:
            if x is None:
                return "n/a"
            return f"{x:.2f}×" if ratio else f"{x:+.2f} pts"

        sd = (
            "n/a"
            if p["sd"] is None
            else (f"×/÷ {math.exp(p['sd']):.2f}" if ratio else f"{p['sd']:.2f} pts")
        )
        detect = (
            "n/a"
            if p["detectable"] is None
            else (f"×/÷ {p['detectable']:.2f}" if ratio else f"{p['detectable']:.2f} pts")
        )
        cost = "n/a"
        if p["cost_device_s"] is not None:
            unit = p["device_unit"].removesuffix("-s")
            cost = (
                f"{p['cost_device_s'] / 3600:.2f} {unit}-h, {fmt_duration(p['cost_wall_s'])} wall"
            )
        rows.append(
            [
                p["name"],
                p["label"],
                f"{eff(p['observed'])} (n={p['pilot_seeds']})",
                sd,
                f"{detect} (n={p['seeds']})",
                f"{eff(p['target'])} ({p['target_source']})",
                str(p["seeds_needed"]) if p["seeds_needed"] else (p["note"] or "n/a"),
                cost,
            ]
        )
    return rows


def _text_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [
        fmt.format(*columns),
        fmt.format(*("-" * w for w in widths)),
        *(fmt.format(*r) for r in rows),
    ]


def terminal(plan: dict[str, Any]) -> str:
    """The plan as the terminal shows it."""
    out = [*summary_lines(plan), ""]
    out += _text_table(CELL_COLUMNS, cell_rows(plan))
    if plan["jobs"]:
        out += [
            "",
            "Other jobs: "
            + "; ".join(f"{j['job']} {fmt_duration(j['job_s'])}" for j in plan["jobs"]),
        ]
    if plan["groups"]:
        out += ["", "Measured rates per group of cells:"]
        out += _text_table(GROUP_COLUMNS, group_rows(plan))
    if plan.get("power"):
        out += ["", f"Power from the pilot {plan['pilot']} (80% power, paired two-sided 5% test):"]
        out += _text_table(POWER_COLUMNS, power_rows(plan))
    out += ["", *(f"note: {n}" for n in plan["notes"])]
    return "\n".join(out) + "\n"


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|")

    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(x) for x in r) + " |" for r in rows),
        "",
    ]


def markdown(plan: dict[str, Any]) -> str:
    """``plan.md``: the same content, every cell, and how it was measured."""
    out = [f"# Plan: preset '{plan['preset']}'", "", f"Made {plan['created']}.", ""]
    out += [*summary_lines(plan), ""]
    out += ["## Cells", "", *_md_table(CELL_COLUMNS, cell_rows(plan))]
    if plan["jobs"]:
        out += ["## Other jobs", ""]
        out += _md_table(
            ["job", "threads", "time", "parts"],
            [
                [
                    j["job"],
                    str(j["threads"]),
                    fmt_duration(j["job_s"]),
                    ", ".join(f"{k} {fmt_duration(v)}" for k, v in j["parts"].items()),
                ]
                for j in plan["jobs"]
            ],
        )
    if plan["groups"]:
        out += ["## Measured rates", "", *_md_table(GROUP_COLUMNS, group_rows(plan))]
    if plan.get("power"):
        out += [
            "## Power from the pilot",
            "",
            f"Pilot: `{plan['pilot']}`; 80% power, paired two-sided test at 5% (exact "
            "noncentral t). sd: per-seed spread of the paired difference.",
            "",
        ]
        out += _md_table(POWER_COLUMNS, power_rows(plan))
    out += ["## Notes", "", *(f"- {n}" for n in plan["notes"]), ""]
    return "\n".join(out)


def write(plan: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``plan.json`` and ``plan.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    paths = [out_dir / "plan.json", out_dir / "plan.md"]
    write_json(paths[0], plan)
    write_text(paths[1], markdown(plan))
    return paths
