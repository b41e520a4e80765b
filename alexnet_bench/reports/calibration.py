"""The calibration verdict as a table (``calibration.csv``), Markdown and a figure: a view of
:mod:`alexnet_bench.calibration`, which measures the criteria and chooses the candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..calibration import TIE_POINTS, CandidateResult, history, load_candidates
from ..collect import percent
from ..io import write_text
from ..numbers import fmt_number
from .markdown import frame_md


def _scaled(value: float | None, digits: int = 1) -> float | None:
    """A CSV number: rounded; None (a blank cell, as in the report's CSV files) when not measured."""
    return None if value is None else round(value, digits)


def _knobs(results: list[CandidateResult]) -> list[str]:
    """Every knob any candidate sets, in the order first seen."""
    return list(dict.fromkeys(k for r in results for k in r.knobs))


def table(results: list[CandidateResult]) -> pd.DataFrame:
    """One row per candidate: its knobs, the measured criteria, pass/fail and the choice."""
    knob_names = _knobs(results)
    rows = []
    for r in results:
        row: dict[str, Any] = {"candidate": r.name}
        row.update({k: r.knobs.get(k) for k in knob_names})
        row.update(
            {
                "arms_learned": r.learned,
                "worst_val_top1_pct": _scaled(percent(r.worst_val_error)),
                "baseline_val_top1_pct": _scaled(percent(r.baseline_val_error)),
                "baseline_val_top1_sd_pct": _scaled(percent(r.baseline_val_sd)),
                "baseline_last_epoch_gain_pct": _scaled(percent(r.baseline_last_gain)),
                "target_reached": r.target_reached,
                "job_cpu_s": _scaled(r.job_cpu_s),
                "projected_study_min": _scaled(r.projected_minutes),
                **{f"pass_{k.replace(' ', '_')}": v for k, v in r.passes.items()},
                "passes": r.passed,
                "chosen": r.chosen,
                "not_learned": "; ".join(r.not_learned),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(results: list[CandidateResult], study: dict[str, Any], command: str) -> str:
    """The calibration table as Markdown, with the criteria and the choice spelled out."""
    block = study["calibration"]
    c = block["criteria"]
    chosen = next((r for r in results if r.chosen), None)
    lines = [
        "# Calibration of the default preset",
        "",
        f"Made by `{command}`. Arms: {', '.join(block['arms'])}; calibration seeds: "
        f"{', '.join(map(str, block['seeds']))} (the study uses "
        f"{', '.join(map(str, study['seeds']))}).",
        "",
        "Criteria, fixed before any ablation effect was looked at:",
        "",
        f"1. **arms learn**: every arm in every seed completes (not collapsed or diverged) with "
        f"final val top-1 error ≤ {100 * c['learned_max_val_error']:.0f}%;",
        f"2. **baseline converges**: mean final val top-1 error ≤ "
        f"{100 * c['baseline_max_val_error']:.0f}% and the last epoch lowered it by ≤ "
        f"{100 * c['baseline_max_last_epoch_gain']:.0f} points;",
        f"3. **target reached**: {', '.join(c['target_arms'])} reach "
        f"{100 * c['target_train_error']:.0f}% training error in every seed;",
        f"4. **fits budget**: the whole default study ({len(study['ablations'])} ablations × "
        f"{len(study['seeds'])} seeds) is projected to take ≤ {c['max_study_minutes']} min on "
        f"{c['cores']} cores (measured CPU time per job + {c['fixed_overhead_s']:.0f} s).",
        "",
        "Choice: the passing candidate with the lowest baseline val top-1 error (ties within "
        f"{TIE_POINTS} points: the shorter study).",
        "",
    ]
    knob_names = _knobs(results)
    rows = []
    for r in results:
        failed = [k for k, ok in r.passes.items() if not ok]
        sd = fmt_number(percent(r.baseline_val_sd), 1)
        rows.append(
            [
                f"`{r.name}`" + (" **(chosen)**" if r.chosen else ""),
                *[str(r.knobs.get(k, "")) for k in knob_names],
                r.learned,
                f"{fmt_number(percent(r.baseline_val_error), 1)} ({sd})",
                fmt_number(percent(r.baseline_last_gain), 1),
                r.target_reached,
                fmt_number(r.job_cpu_s, 0),
                fmt_number(r.projected_minutes, 1),
                "yes" if r.passed else "no: " + ", ".join(failed),
            ]
        )
    head = ["candidate", *[k.split(".")[-1] for k in knob_names], "arms learn"]
    head += ["baseline val top-1 % (sd)", "last-epoch gain", "target reached", "CPU s/job"]
    lines.append(frame_md(pd.DataFrame(rows, columns=[*head, "study min", "passes"])))
    lines.append("")
    problems = [(r.name, x) for r in results for x in r.not_learned]
    if problems:
        lines += ["Runs that did not learn:", ""]
        lines += [f"- `{name}`: {what}" for name, what in problems]
        lines.append("")
    if chosen is None:
        lines.append("**No candidate passes every criterion**: widen the candidates.")
    else:
        lines.append(f"**Chosen: `{chosen.name}`** (its settings are the default preset's).")
    return "\n".join(lines) + "\n"


def figure(results: list[CandidateResult], study: dict[str, Any], path: Path) -> None:
    """Baseline validation curves per candidate (mean over seeds) and projected cost vs error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crit = study["calibration"]["criteria"]
    baseline = study["baseline"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(results):
        curves = [history(run, "val_top1_error") for run in r.runs.get(baseline, [])]
        curves = [c for c in curves if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        mean = [100 * sum(c[e] for c in curves) / len(curves) for e in range(n)]
        style = "-" if r.passed else ":"
        width = 2.6 if r.chosen else 1.3
        ax.plot(range(1, n + 1), mean, style, lw=width, color=colors(i % 10), label=r.name)
        if r.baseline_val_error is not None and r.projected_minutes is not None:
            bx.scatter(
                r.projected_minutes,
                100 * r.baseline_val_error,
                s=90 if r.chosen else 40,
                marker="o" if r.passed else "x",
                color=colors(i % 10),
            )
            bx.annotate(
                r.name,
                (r.projected_minutes, 100 * r.baseline_val_error),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.axhline(100 * crit["baseline_max_val_error"], color="grey", ls="--", lw=1)
    ax.set(
        xlabel="epoch",
        ylabel="baseline val top-1 error (%), mean over seeds",
        title="Baseline learning curves (dotted: candidate fails a criterion)",
    )
    ax.legend(fontsize=7)
    bx.axvline(crit["max_study_minutes"], color="grey", ls="--", lw=1)
    bx.axhline(100 * crit["baseline_max_val_error"], color="grey", ls="--", lw=1)
    bx.set(
        xlabel="projected default-study wall time (min)",
        ylabel="baseline final val top-1 error (%)",
        title="Cost vs convergence (o passes, x fails; large = chosen)",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_calibration(results_dir: Path, out_dir: Path, study: dict[str, Any]) -> dict[str, Any]:
    """Write calibration.csv, calibration.md and calibration.png into ``out_dir``."""
    results = load_candidates(Path(results_dir), study)
    out_dir = Path(out_dir)
    frame = table(results)
    write_text(out_dir / "calibration.csv", frame.to_csv(index=False))
    command = "snakemake --cores all calibrate"
    write_text(out_dir / "calibration.md", markdown(results, study, command))
    figure(results, study, out_dir / "calibration.png")
    chosen = next((r.name for r in results if r.chosen), None)
    return {"chosen": chosen, "passing": [r.name for r in results if r.passed]}
