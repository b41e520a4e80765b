"""Judge the calibration sweep: which candidate setting of the preset's knobs the study uses.

Every candidate was trained on the baseline and the fragile arms with calibration seeds
(``results/calibration/<candidate>/<arm>/seed<N>/``). A candidate passes when all four
criteria of ``config.yaml``'s ``calibration.criteria`` hold (they are fixed before looking at
any ablation effect, and none of them compares arms with each other):

1. every arm learns in every seed (status ``completed`` and final val top-1 error at most
   ``learned_max_val_error``);
2. the baseline converges (mean final val top-1 error at most ``baseline_max_val_error``, and
   the last epoch lowered it by at most ``baseline_max_last_epoch_gain``);
3. every ``target_arm`` reaches ``target_train_error`` (training error) in every seed;
4. the projected wall time of the whole default study is at most ``max_study_minutes``.

The projection sums, over the study's cells, the CPU time a job of that arm took here (all of
its processes, start-up included: ``host.job_cpu_s``; an arm not calibrated takes the
baseline's, once per device it uses; a multi-device cell that a host without GPUs records as
skipped (``cpu_standins: skip``) costs its start-up), divides by ``cores`` and adds
``fixed_overhead_s``. CPU time, not wall time, so a busy machine does not distort it.

The chosen candidate is the passing one with the lowest baseline mean val top-1 error (ties
within 0.5 points: the shorter projected study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..collect import Run, load_run, run_value
from ..effects import summarize, time_to_target
from ..io import write_text
from ..study import resolve_calibration_run, resolve_run

TIE_POINTS = 0.5
SKIPPED_CELL_CPU_S = 3.5  # a 2-device cell recorded as skipped (measured: 3.3 s, imports mostly)


@dataclass
class CandidateResult:
    """The criteria of one candidate, measured."""

    name: str
    knobs: dict[str, Any]
    runs: dict[str, list[Run]]
    learned: str = ""
    worst_val_error: float | None = None
    not_learned: list[str] = field(default_factory=list)
    baseline_val_error: float | None = None
    baseline_val_sd: float | None = None
    baseline_last_gain: float | None = None
    target_reached: str = ""
    projected_minutes: float | None = None
    job_cpu_s: float | None = None
    passes: dict[str, bool] = field(default_factory=dict)
    chosen: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.passes) and all(self.passes.values())


def _flatten(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(name, value))
        else:
            out[name] = value
    return out


def _history(run: Run, column: str) -> list[float]:
    return run.history.finite_values(column) if run.history is not None else []


def _reached(run: Run, target: float) -> bool:
    """The run's training error (the column its time to target reads) fell below ``target``
    (the shared time-to-target definition; left-censored counts as reached)."""
    crossing = time_to_target(_history(run, run.target_column), target)
    return crossing.kind in ("reached", "left-censored")


def _job_cpu(runs: list[Run]) -> float | None:
    """Mean CPU seconds of a job (all its processes, start-up included)."""
    values = [v for r in runs if (v := run_value(r, "job_cpu_s")) is not None]
    return sum(values) / len(values) if values else None


def _projected_minutes(
    study: dict[str, Any], candidate: CandidateResult, criteria: dict[str, Any]
) -> float | None:
    """Wall minutes the study's cells would take on ``cores`` cores, from measured CPU time."""
    baseline = study["baseline"]
    base_cost = _job_cpu(candidate.runs.get(baseline, []))
    if base_cost is None:
        return None
    total = 0.0
    preset = study["preset"]
    skip_standins = study.get("cpu_standins", "skip") == "skip"
    for ablation in study["ablations"]:
        measured = _job_cpu(candidate.runs.get(ablation, []))
        for seed in study["seeds"]:
            devices = resolve_run(study, preset, ablation, int(seed)).runtime.gpus
            if devices > 1 and skip_standins:  # recorded as skipped on a host without GPUs
                total += SKIPPED_CELL_CPU_S
            else:  # not calibrated: the baseline's cost, once per device (an upper bound)
                total += measured if measured is not None else base_cost * devices
    return (total / criteria["cores"] + criteria["fixed_overhead_s"]) / 60.0


def evaluate_candidate(
    study: dict[str, Any], name: str, runs: dict[str, list[Run]]
) -> CandidateResult:
    """Measure the four criteria of one candidate from its runs."""
    block = study["calibration"]
    crit = block["criteria"]
    baseline = study["baseline"]
    result = CandidateResult(name, _flatten("", block["candidates"][name] or {}), runs)

    # 1. every arm learns in every seed
    total = learned = 0
    worst = None
    for arm in block["arms"]:
        for run in runs.get(arm, []):
            total += 1
            err = run.record.final.val_top1_error
            ok = run.completed and err is not None and err <= crit["learned_max_val_error"]
            learned += ok
            if err is not None and run.status != "missing":
                worst = err if worst is None else max(worst, err)
            if not ok:
                why = run.status if not run.completed else f"val error {err:.3f}"
                result.not_learned.append(f"{arm}/seed{run.seed}: {why}")
    expected = len(block["arms"]) * len(block["seeds"])
    result.learned = f"{learned}/{expected}"
    result.worst_val_error = worst
    result.passes["arms learn"] = learned == expected

    # 2. the baseline converges
    base_runs = [r for r in runs.get(baseline, []) if r.completed]
    finals = summarize(r.record.final.val_top1_error for r in base_runs)
    gains = []
    for run in base_runs:
        val = _history(run, "val_top1_error")
        if len(val) >= 2:
            gains.append(val[-2] - val[-1])
    result.baseline_val_error = finals.mean if finals.n else None
    result.baseline_val_sd = finals.std if finals.n > 1 else None
    result.baseline_last_gain = sum(gains) / len(gains) if gains else None
    result.passes["baseline converges"] = (
        finals.n == len(block["seeds"])
        and finals.mean <= crit["baseline_max_val_error"]
        and result.baseline_last_gain is not None
        and result.baseline_last_gain <= crit["baseline_max_last_epoch_gain"]
    )

    # 3. the Figure 1 criterion is measurable
    reached = want = 0
    for arm in crit["target_arms"]:
        for run in runs.get(arm, []):
            want += 1
            reached += run.completed and _reached(run, crit["target_train_error"])
    want = max(want, len(crit["target_arms"]) * len(block["seeds"]))
    result.target_reached = f"{reached}/{want}"
    result.passes["target reached"] = reached == want

    # 4. the study fits the time budget
    result.job_cpu_s = _job_cpu(runs.get(baseline, []))
    result.projected_minutes = _projected_minutes(study, result, crit)
    result.passes["fits budget"] = (
        result.projected_minutes is not None
        and result.projected_minutes <= crit["max_study_minutes"]
    )
    return result


def choose(results: list[CandidateResult]) -> CandidateResult | None:
    """The passing candidate with the lowest baseline error (ties: the shorter study)."""
    passing = [r for r in results if r.passed and r.baseline_val_error is not None]
    if not passing:
        return None
    best = min(r.baseline_val_error for r in passing if r.baseline_val_error is not None)
    tied = [
        r
        for r in passing
        if r.baseline_val_error is not None
        and 100 * (r.baseline_val_error - best) <= TIE_POINTS + 1e-9
    ]
    return min(tied, key=lambda r: (r.projected_minutes or math.inf, r.name))


def load_candidates(results_dir: Path, study: dict[str, Any]) -> list[CandidateResult]:
    """Load every cell of the sweep and evaluate each candidate."""
    block = study["calibration"]
    out = []
    for name in block["candidates"]:
        runs: dict[str, list[Run]] = {}
        for arm in block["arms"]:
            for seed in block["seeds"]:
                resolve_calibration_run(study, name, arm, seed)  # a bad block fails loudly
                path = results_dir / name / arm / f"seed{seed}" / "metrics.json"
                runs.setdefault(arm, []).append(load_run(path))
        out.append(evaluate_candidate(study, name, runs))
    chosen = choose(out)
    if chosen is not None:
        chosen.chosen = True
    return out


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def table(results: list[CandidateResult]) -> pd.DataFrame:
    """One row per candidate: its knobs, the measured criteria, pass/fail and the choice."""
    knob_names: list[str] = []
    for r in results:
        knob_names += [k for k in r.knobs if k not in knob_names]
    rows = []
    for r in results:
        row: dict[str, Any] = {"candidate": r.name}
        row.update({k: r.knobs.get(k) for k in knob_names})
        row.update(
            {
                "arms_learned": r.learned,
                "worst_val_top1_pct": _fmt(r.worst_val_error, 100),
                "baseline_val_top1_pct": _fmt(r.baseline_val_error, 100),
                "baseline_val_top1_sd_pct": _fmt(r.baseline_val_sd, 100),
                "baseline_last_epoch_gain_pct": _fmt(r.baseline_last_gain, 100),
                "target_reached": r.target_reached,
                "job_cpu_s": _fmt(r.job_cpu_s),
                "projected_study_min": _fmt(r.projected_minutes),
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
    knob_names: list[str] = []
    for r in results:
        knob_names += [k for k in r.knobs if k not in knob_names]
    short = [k.split(".")[-1] for k in knob_names]
    head = [
        "candidate",
        *short,
        "arms learn",
        "baseline val top-1 % (sd)",
        "last-epoch gain",
        "target reached",
        "CPU s/job",
        "study min",
        "passes",
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        mark = " **(chosen)**" if r.chosen else ""
        failed = [k for k, ok in r.passes.items() if not ok]
        cells = [
            f"`{r.name}`{mark}",
            *[str(r.knobs.get(k, "")) for k in knob_names],
            r.learned,
            f"{_fmt(r.baseline_val_error, 100)} ({_fmt(r.baseline_val_sd, 100)})",
            _fmt(r.baseline_last_gain, 100),
            r.target_reached,
            _fmt(r.job_cpu_s, 1, 0),
            _fmt(r.projected_minutes),
            "yes" if r.passed else "no: " + ", ".join(failed),
        ]
        lines.append("| " + " | ".join(cells) + " |")
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
        curves = [_history(run, "val_top1_error") for run in r.runs.get(baseline, [])]
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
