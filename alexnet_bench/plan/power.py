"""Statistical power from a pilot: how many seeds a claim needs, and what they cost.

For each comparison of a paper claim (:mod:`alexnet_bench.claims`) and each ablation against
the baseline (validation top-1 error), the pilot's completed runs are paired by seed exactly as
the report pairs them (:func:`alexnet_bench.effects.paired`: ``a_s - b_s``, or ``log(a_s /
b_s)`` for ratios). Their standard deviation is the per-seed spread. With it, the exact power
of the paired two-sided t-test (noncentral t, :func:`alexnet_bench.effects.detectable_shift`,
80% power at 5%) gives

* the smallest effect the study's configured seeds detect, and
* the fewest seeds that detect the paper's claimed effect (for a qualitative claim, and for an
  ablation, the pilot's own estimate, labelled so: a pilot's estimate is itself noisy),

and the plan's cost model what those seeds cost. The spread is a plug-in estimate from a few
pilot seeds; the seeds needed are as uncertain as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..claims import BASELINE, study_claims
from ..collect import Run, collect, run_measure
from ..effects import CONFIDENCE, POWER, Paired, detectable_shift, paired, t_crit

MAX_SEEDS = 10_000
#: the metric an ablation row compares (the report's primary accuracy)
ABLATION_METRIC = "val_top1"


@dataclass
class PowerRow:
    kind: str  # claim | ablation
    name: str  # the claim's id, or the ablation
    label: str
    metric: str
    ratio: bool
    a: str | None
    b: str | None
    pilot_seeds: int = 0
    observed: float | None = None  # the pilot's paired estimate (pts, or a ratio)
    sd: float | None = None  # per-seed sd of the differences (pts; ratios: of the log ratios)
    seeds: int = 0  # the study's configured seeds
    detectable: float | None = None  # pts, or a factor >= 1
    target: float | None = None  # the effect to detect (pts, or a ratio)
    target_source: str = ""  # paper | pilot
    seeds_needed: int | None = None
    cost_device_s: float | None = None
    cost_wall_s: float | None = None
    device_unit: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seeds_needed(effect: float, sd: float, max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest paired seeds (>= 2) whose two-sided 5% paired t-test detects a mean shift
    ``effect`` with 80% power when the differences' sd is ``sd``; None beyond ``max_seeds`` or
    for no effect."""
    if effect == 0 or not math.isfinite(effect) or not math.isfinite(sd):
        return None
    if sd <= 0:
        return 2
    shift = abs(effect) / sd
    if detectable_shift(max_seeds) > shift:
        return None
    lo, hi = 2, max_seeds  # detectable_shift falls as the seeds grow
    while lo < hi:
        mid = (lo + hi) // 2
        if detectable_shift(mid) <= shift:
            hi = mid
        else:
            lo = mid + 1
    return lo


def paired_power(n: int, shift: float, confidence: float = CONFIDENCE) -> float:
    """Exact power of the two-sided paired t-test on ``n`` pairs for a mean shift of ``shift``
    per-seed sds (noncentral t; what :func:`~alexnet_bench.effects.detectable_shift` inverts)."""
    from scipy import stats

    df, crit, nc = n - 1, t_crit(n - 1, confidence), shift * math.sqrt(n)
    lower = float(stats.nct.cdf(-crit, df, nc))
    return float(stats.nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)


def _completed(runs: list[Run]) -> dict[str, dict[int, Run]]:
    out: dict[str, dict[int, Run]] = {}
    for r in runs:
        if r.completed and r.seed is not None:
            out.setdefault(r.ablation, {})[r.seed] = r
    return out


def _pick(candidates: tuple[str, ...], baseline: str, done: dict[str, dict[int, Run]]) -> str:
    names = [baseline if c == BASELINE else c for c in candidates]
    return next((n for n in names if done.get(n)), names[0])


def _row(
    kind: str,
    name: str,
    label: str,
    metric: str,
    ratio: bool,
    a: str,
    b: str,
    done: dict[str, dict[int, Run]],
    seeds: int,
) -> PowerRow:
    row = PowerRow(kind, name, label, metric, ratio, a, b, seeds=seeds)
    va = {s: run_measure(r, metric) for s, r in done.get(a, {}).items()}
    vb = {s: run_measure(r, metric) for s, r in done.get(b, {}).items()}
    p: Paired = paired(va, vb, ratio=ratio)
    row.pilot_seeds, row.observed = p.n, p.value
    if p.kind != "estimate":
        row.note = (
            "no completed pilot runs in both arms"
            if p.n == 0
            else f"pilot values censored or missing ({p.kind}): no spread"
        )
        return row
    if p.sd is None:
        row.note = "one paired pilot seed: no spread"
        return row
    row.sd = p.sd
    if seeds >= 2:
        shift = detectable_shift(seeds, CONFIDENCE, POWER) * p.sd
        row.detectable = math.exp(shift) if ratio else shift
    return row


def pilot_power(
    pilot_dir: Path,
    study: dict[str, Any],
    cost: Callable[[list[tuple[str, int]]], tuple[float, float, str] | None],
) -> list[PowerRow]:
    """One row per claim comparison and per ablation vs the baseline. ``cost(arms)`` is the
    plan's (device-seconds, wall seconds, unit) of training ``arms`` [(ablation, seeds)] from
    scratch, or None where an arm does not train on the target host."""
    runs = collect(Path(pilot_dir))
    done = _completed(runs)
    baseline = study["baseline"]
    seeds = len(study["seeds"])
    rows: list[PowerRow] = []
    for claim in study_claims(study):
        for cmp in claim.comparisons:
            a, b = _pick(cmp.a, baseline, done), _pick(cmp.b, baseline, done)
            ratio = cmp.kind == "ratio"
            row = _row("claim", claim.id, cmp.label, cmp.metric, ratio, a, b, done, seeds)
            if cmp.paper_effect is not None:
                row.target, row.target_source = float(cmp.paper_effect), "paper"
            else:
                row.target, row.target_source = row.observed, "pilot (qualitative claim)"
            rows.append(row)
    for ablation in study["ablations"]:
        if ablation == baseline:
            continue
        row = _row(
            "ablation",
            ablation,
            f"{ABLATION_METRIC}: {ablation} − {baseline}",
            ABLATION_METRIC,
            False,
            ablation,
            baseline,
            done,
            seeds,
        )
        row.target, row.target_source = row.observed, "pilot"
        rows.append(row)
    for row in rows:
        _needed(row, cost)
    return rows


def _needed(row: PowerRow, cost: Callable[..., tuple[float, float, str] | None]) -> None:
    """Fill in the seeds the row's target needs and what they cost."""
    if row.sd is None or row.target is None:
        return
    if row.ratio:
        if row.target <= 0:
            return
        effect = math.log(row.target)
    else:
        effect = row.target
    row.seeds_needed = seeds_needed(effect, row.sd)
    if row.seeds_needed is None or row.a is None or row.b is None:
        if effect and row.seeds_needed is None:
            row.note = row.note or f"more than {MAX_SEEDS} seeds"
        return
    priced = cost([(row.a, row.seeds_needed), (row.b, row.seeds_needed)])
    if priced is None:
        row.note = row.note or "an arm does not train on the target host: no cost"
        return
    row.cost_device_s, row.cost_wall_s, row.device_unit = priced
