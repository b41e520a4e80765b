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
within 0.5 points: the shorter projected study). The table, Markdown and figure of the verdict
are :mod:`.reports.calibration`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .collect import Run, load_run, run_value
from .effects import summarize, time_to_target
from .study import resolve_calibration_run, resolve_run

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


def history(run: Run, column: str) -> list[float]:
    return run.history.finite_values(column) if run.history is not None else []


def _reached(run: Run, target: float) -> bool:
    """The run's training error (the column its time to target reads) fell below ``target``
    (the shared time-to-target definition; left-censored counts as reached)."""
    crossing = time_to_target(history(run, run.target_column), target)
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
        val = history(run, "val_top1_error")
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
