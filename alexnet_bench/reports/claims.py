"""The paper's quantitative claims, as data, and their comparison with the measured runs.

Each :class:`Claim` names the paper's figure/section, the setting it was measured in and one or
more :class:`Comparison` rows. A comparison is ``a - b`` (``kind="diff"``, in percentage points)
or ``a / b`` (``kind="ratio"``) of a per-run metric (see :func:`collect.run_value`) between
two ablations, averaged over the completed seeds of each. ``"@baseline"`` stands for the study's
baseline ablation; a tuple of candidates means "the first one present in the study".

The primary statistic is paired over seeds: arms with the same seed share the data order, the
augmentation draws and (where parameter shapes agree) the initial weights, so for each seed
present in both arms the difference ``a_s - b_s`` (ratios: ``a_s / b_s``) is formed and its
mean (ratios: geometric mean) gets a Student-t 95% interval on n-1 degrees of freedom. Welch's
unpaired interval is reported beside it. Only runs that learned (status ``completed``) enter;
collapsed, diverged, failed and skipped runs are counted in the caveats.

Rule for "exceeds seed-to-seed spread" (:data:`SPREAD_RULE`): the paired 95% interval excludes
0 (ratios: 1). It needs at least two paired seeds; otherwise it is "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import ConfigError
from .collect import RUN_VALUES, Run, run_value
from .stats import (
    Difference,
    Paired,
    Ratio,
    Summary,
    finite,
    paired,
    ratio,
    summarize,
    welch,
)

BASELINE = "@baseline"

SPREAD_RULE = (
    "A measured effect 'exceeds the seed-to-seed spread' when its paired 95% confidence "
    "interval excludes zero (ratios: excludes 1). Paired: each seed's ablation run is compared "
    "with the baseline run of the same seed (same data order, augmentation draws and, where "
    "shapes agree, initial weights), and the per-seed differences (ratios: log ratios) get a "
    "Student-t interval on n−1 degrees of freedom. Only runs that learned enter; with fewer "
    "than two paired seeds the answer is 'n/a'. Welch's unpaired interval is shown for "
    "comparison."
)


@dataclass(frozen=True)
class Comparison:
    """One measured quantity behind a claim: ``a - b`` or ``a / b`` of a per-run metric."""

    label: str
    metric: str  # a run_value() name
    kind: str  # "diff" (points) or "ratio"
    a: tuple[str, ...]
    b: tuple[str, ...]
    paper_effect: float | None  # the paper's value in the same units; None = qualitative
    paper_text: str
    expect: int  # +1: a - b > 0 (ratio > 1); -1: < 0 (ratio < 1); 0: no effect expected
    censored_by: str | None = None  # metric bounding a run that never reached the target
    note: str | None = None  # always-shown caveat


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    reference: str
    paper_setting: str
    paper_source: str  # data set the paper used: "imagenet" or "cifar10"
    paper_image_size: int | None
    comparisons: tuple[Comparison, ...]


#: the paper's claims, as data (validated against schemas/claims.schema.yaml)
PAPER_CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")


@cache
def _schema() -> dict[str, Any]:
    with resources.files("alexnet_bench").joinpath("schemas/claims.schema.yaml").open() as fh:
        return yaml.safe_load(fh)


def parse_claims(entries: Any, where: str) -> tuple[Claim, ...]:
    """Validate a list of claim entries (the paper_claims.yaml format) and build the claims.

    Raises :class:`ConfigError` with one line naming ``where`` and the offending entry."""
    if entries is None:
        return ()
    try:
        jsonschema.validate(entries, _schema())
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        raise ConfigError(
            f"{where}{'.' + path if path else ''}: {exc.message}; see "
            "alexnet_bench/schemas/claims.schema.yaml"
        ) from None
    claims = []
    for entry in entries:
        comparisons = []
        for cmp in entry["comparisons"]:
            for key in ("metric", "censored_by"):
                if cmp.get(key) is not None and cmp[key] not in RUN_VALUES:
                    raise ConfigError(
                        f"{where}: claim '{entry['id']}' uses unknown {key} '{cmp[key]}'; "
                        f"choose from {', '.join(RUN_VALUES)}"
                    )
            comparisons.append(
                Comparison(
                    label=cmp["label"], metric=cmp["metric"], kind=cmp["kind"],
                    a=tuple(cmp["a"]), b=tuple(cmp["b"]), paper_effect=cmp.get("paper_effect"),
                    paper_text=cmp["paper_text"], expect=int(cmp["expect"]),
                    censored_by=cmp.get("censored_by"), note=cmp.get("note"),
                )
            )  # fmt: skip
        claims.append(
            Claim(
                id=entry["id"], statement=entry["statement"], reference=entry["reference"],
                paper_setting=entry["paper_setting"], paper_source=entry["paper_source"],
                paper_image_size=entry.get("paper_image_size"), comparisons=tuple(comparisons),
            )
        )  # fmt: skip
    return tuple(claims)


def load_paper_claims() -> tuple[Claim, ...]:
    """The paper's claims shipped with the package (reports/paper_claims.yaml)."""
    return parse_claims(yaml.safe_load(PAPER_CLAIMS_FILE.read_text()), PAPER_CLAIMS_FILE.name)


def study_claims(study: dict[str, Any] | None) -> tuple[Claim, ...]:
    """The paper's claims with the study's ``claims:`` applied: an entry whose id matches a
    paper claim replaces it, any other is added after them."""
    extra = parse_claims((study or {}).get("claims"), "config.yaml claims")
    by_id = {c.id: c for c in extra}
    merged = [by_id.pop(c.id, c) for c in CLAIMS]
    return (*merged, *[c for c in extra if c.id in by_id])


def claim_arms(claims: Sequence[Claim], claim_id: str) -> tuple[str, ...]:
    """The candidate ablations of the first comparison's ``a`` side of claim ``claim_id``."""
    claim = next((c for c in claims if c.id == claim_id), None)
    return claim.comparisons[0].a if claim else ()


CLAIMS: tuple[Claim, ...] = load_paper_claims()


@dataclass
class ClaimRow:
    """One evaluated comparison: what the paper says vs what was measured."""

    claim_id: str
    claim: str
    reference: str
    paper_setting: str
    comparison: str
    compared: str  # "no_lrn − baseline"
    metric: str
    kind: str
    paper_value: str
    paper_effect: float | None
    measured: str
    measured_effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_a: int = 0
    n_b: int = 0
    same_direction: str = "n/a"
    exceeds_spread: str = "n/a"
    caveats: list[str] = field(default_factory=list)
    n_pairs: int = 0
    welch: str = ""
    welch_low: float | None = None
    welch_high: float | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "claim_id": self.claim_id,
            "claim": self.claim,
            "reference": self.reference,
            "paper_setting": self.paper_setting,
            "comparison": self.comparison,
            "compared": self.compared,
            "metric": self.metric,
            "kind": self.kind,
            "paper_value": self.paper_value,
            "paper_effect": self.paper_effect,
            "measured": self.measured,
            "measured_effect": self.measured_effect,
            "ci95_low": self.ci_low,
            "ci95_high": self.ci_high,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_pairs": self.n_pairs,
            "statistic": "paired over seeds (t-interval; ratios: geometric mean of per-seed ratios)",
            "welch": self.welch,
            "welch_ci95_low": self.welch_low,
            "welch_ci95_high": self.welch_high,
            "same_direction": self.same_direction,
            "exceeds_spread": self.exceeds_spread,
            "caveats": "; ".join(self.caveats),
        }


def _fmt_signed(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}".replace("-", "−")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


class _Context:
    """Runs grouped by ablation, plus the study's ablation list."""

    def __init__(self, runs: Sequence[Run], study: dict[str, Any] | None, baseline: str) -> None:
        self.baseline = baseline
        self.by_ablation: dict[str, list[Run]] = {}
        for r in runs:
            self.by_ablation.setdefault(r.ablation, []).append(r)
        self.in_study: set[str] = set()
        if isinstance(study, dict) and isinstance(study.get("ablations"), dict):
            self.in_study = {str(a) for a in study["ablations"]}

    def resolve(self, name: str) -> str:
        return self.baseline if name == BASELINE else name

    def exists(self, name: str) -> bool:
        return name in self.by_ablation or name in self.in_study

    def pick(self, candidates: tuple[str, ...]) -> str | None:
        """The first candidate with completed runs, else the first one in the study at all
        (e.g. ``gpus2_model`` skipped on a host without GPUs: the next candidate is used)."""
        present = [n for c in candidates if self.exists(n := self.resolve(c))]
        return next((n for n in present if self.completed(n)), present[0] if present else None)

    def completed(self, name: str) -> list[Run]:
        return [r for r in self.by_ablation.get(name, []) if r.completed]

    def not_completed(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.by_ablation.get(name, []):
            if not r.completed:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def _data_caveat(claim: Claim, runs: list[Run]) -> list[str]:
    """Where the measurement differs from the paper's setting (data set, scale, model, epochs)."""
    if not runs:
        return []
    sources = sorted(
        {str(r.get("config.data.source") or r.get("data.source") or "?") for r in runs}
    )
    sizes = sorted(
        {
            int(s)
            for r in runs
            if (s := r.num("config.data.image_size") or r.num("data.image_size")) is not None
        }
    )
    epochs = sorted({int(e) for r in runs if (e := r.num("config.train.epochs")) is not None})
    differs = sources != [claim.paper_source] or (
        claim.paper_image_size is not None and sizes != [claim.paper_image_size]
    )
    short_epochs = claim.paper_source == "imagenet" and epochs and max(epochs) < 90
    out: list[str] = []
    if differs or short_epochs:
        here = "/".join(sources) + " data, " + ("/".join(f"{s} px" for s in sizes) or "? px")
        if epochs:
            here += f", {'/'.join(map(str, epochs))} epochs"
        paper = (
            "ImageNet 224 px, ~90 epochs"
            if claim.paper_source == "imagenet"
            else "CIFAR-10, 4-layer CNN"
        )
        out.append(f"scale: {here} (paper: {paper})")
    if claim.paper_source == "cifar10":
        variants = sorted({str(r.get("config.model.variant") or "?") for r in runs})
        out.append(f"model here: AlexNet ({'/'.join(variants)}), not the paper's 4-layer CNN")
    return out


def _status_caveat(ctx: _Context, name: str) -> list[str]:
    counts = ctx.not_completed(name)
    if not counts:
        return []
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return [f"{name}: {parts} (excluded)"]


def _bound_text(
    cmp: Comparison, a: str, b: str, side: str, runs_a: list[Run], runs_b: list[Run], target: str
) -> tuple[str, float | None, str]:
    """Text, bound value and direction for a ratio whose side ``side`` never reached target."""
    unit = "epochs" if cmp.censored_by == "epochs_completed" else "s"
    assert cmp.censored_by is not None
    if side == "a":
        spent = summarize(run_value(r, cmp.censored_by) for r in runs_a)
        other = summarize(run_value(r, cmp.metric) for r in runs_b)
        if not spent.n or not other.n or other.mean == 0:
            return f"{a} did not reach {target} (ratio n/a)", None, "n/a"
        bound = spent.mean / other.mean
        text = (
            f"{a} did not reach {target} within {_fmt(spent.mean, 0 if unit == 'epochs' else 1)} "
        )
        text += f"{unit} (ratio > {_fmt(bound)}×)"
        direction = "yes" if (cmp.expect > 0 and bound >= 1) else "n/a"
        return text, bound, direction
    spent = summarize(run_value(r, cmp.censored_by) for r in runs_b)
    other = summarize(run_value(r, cmp.metric) for r in runs_a)
    if not spent.n or not other.n or spent.mean == 0:
        return f"{b} did not reach {target} (ratio n/a)", None, "n/a"
    bound = other.mean / spent.mean
    text = f"{b} did not reach {target} within {_fmt(spent.mean, 0 if unit == 'epochs' else 1)} {unit} "
    text += f"(ratio < {_fmt(bound)}×)"
    direction = "yes" if (cmp.expect < 0 and bound <= 1) else "n/a"
    return text, bound, direction


def _direction(pair: Paired, expect: int) -> str:
    if expect == 0:
        if pair.excludes_null is None:
            return "n/a"
        return "no" if pair.excludes_null else "yes"
    sign = (pair.estimate - 1.0) if pair.log else pair.estimate
    if sign == 0:
        return "no"
    return "yes" if (sign > 0) == (expect > 0) else "no"


def evaluate_comparison(claim: Claim, cmp: Comparison, ctx: _Context) -> ClaimRow:
    a = ctx.pick(cmp.a)
    b = ctx.pick(cmp.b)
    label_a = a or ctx.resolve(cmp.a[0])
    label_b = b or ctx.resolve(cmp.b[0])
    op = "/" if cmp.kind == "ratio" else "−"
    row = ClaimRow(
        claim_id=claim.id,
        claim=claim.statement,
        reference=claim.reference,
        paper_setting=claim.paper_setting,
        comparison=cmp.label,
        compared=f"{label_a} {op} {label_b}",
        metric=cmp.metric,
        kind=cmp.kind,
        paper_value=cmp.paper_text,
        paper_effect=cmp.paper_effect,
        measured="",
    )
    absent = ["/".join(ctx.resolve(x) for x in c) for c, n in ((cmp.a, a), (cmp.b, b)) if n is None]
    if absent:
        row.measured = "not in this study"
        row.caveats.append(f"{', '.join(absent)} not in this study")
        return row
    assert a is not None and b is not None
    wanted_b = ctx.resolve(cmp.b[0])
    if b != wanted_b:
        why = "has no completed run" if ctx.exists(wanted_b) else "not in this study"
        row.caveats.append(f"{wanted_b} {why}; compared with {b} instead")
        if ctx.exists(wanted_b):
            row.caveats += _status_caveat(ctx, wanted_b)
    runs_a, runs_b = ctx.completed(a), ctx.completed(b)
    row.caveats += _status_caveat(ctx, a) + _status_caveat(ctx, b)
    if not runs_a or not runs_b:
        empty = [n for n, rs in ((a, runs_a), (b, runs_b)) if not rs]
        row.measured = f"no completed {' / '.join(empty)} runs"
        return row
    row.caveats += _data_caveat(claim, runs_a + runs_b)
    if claim.id == "two_gpus" and any(r.get("device.type") == "cpu" for r in runs_a + runs_b):
        row.caveats.append("ran on CPU: multi-'GPU' cells use CPU processes")
    if cmp.note:
        row.caveats.append(cmp.note)

    values_a = [run_value(r, cmp.metric) for r in runs_a]
    values_b = [run_value(r, cmp.metric) for r in runs_b]
    sa, sb = summarize(values_a), summarize(values_b)
    row.n_a, row.n_b = sa.n, sb.n

    if cmp.censored_by is not None:
        target_pct = next(
            (v for r in runs_a + runs_b if (v := run_value(r, "target_train_error")) is not None),
            None,
        )
        target = f"{_fmt(target_pct, 0)}% train error" if target_pct is not None else "the target"
        if claim.id == "relu_vs_tanh" and target_pct is not None and abs(target_pct - 25) > 1e-9:
            row.caveats.append(f"target here is {_fmt(target_pct, 0)}% training error (paper: 25%)")
        if sa.n == 0 and sb.n == 0:
            epochs = summarize(run_value(r, "epochs_completed") for r in runs_a + runs_b)
            within = f" within {_fmt(max(epochs.values), 0)} epochs" if epochs.n else ""
            row.measured = f"neither {a} nor {b} reached {target}{within} (ratio n/a)"
            row.caveats.append("train longer or raise train.target_train_error")
            return row
        for side, name, s, n_runs in (("a", a, sa, len(runs_a)), ("b", b, sb, len(runs_b))):
            if s.n == 0:
                text, bound, direction = _bound_text(cmp, a, b, side, runs_a, runs_b, target)
                row.measured, row.measured_effect = text, bound
                row.same_direction = direction
                row.exceeds_spread = "n/a"
                row.caveats.append(f"censored: {name} never reached the target, so only a bound")
                return row
            if s.n < n_runs:
                row.caveats.append(
                    f"only {s.n} of {n_runs} completed {name} runs reached {target}; "
                    "the others are left out, so the mean understates its time"
                )

    if sa.n == 0 or sb.n == 0:
        row.measured = f"metric '{cmp.metric}' not recorded"
        return row
    log = cmp.kind == "ratio"
    by_seed_a = {r.seed: v for r, v in zip(runs_a, values_a, strict=True) if r.seed is not None}
    by_seed_b = {r.seed: v for r, v in zip(runs_b, values_b, strict=True) if r.seed is not None}
    pair = paired(by_seed_a, by_seed_b, log=log)
    row.n_pairs = pair.n
    secondary: Difference | Ratio = ratio(sa, sb) if log else welch(sa, sb)
    row.welch = _welch_text(secondary, sa, sb, log)
    if secondary.has_ci:
        row.welch_low, row.welch_high = secondary.ci_low, secondary.ci_high
    with_value = {s for d in (by_seed_a, by_seed_b) for s, v in d.items() if finite([v])}
    unpaired = sorted(with_value - set(pair.seeds))
    if unpaired:
        row.caveats.append(
            "seeds without a learned run in both arms left out of the paired statistic: "
            + ", ".join(map(str, unpaired))
        )
    if pair.n == 0:
        row.measured = f"no seed with a value in both {a} and {b}"
        return row
    if pair.n < 2:
        row.caveats.insert(0, f"only {pair.n} paired seed(s): no CI")
    unit = "×" if log else " pts"
    estimate = _fmt(pair.estimate) if log else _fmt_signed(pair.estimate)
    interval = ""
    if pair.has_ci:
        low = _fmt(pair.ci_low) if log else _fmt_signed(pair.ci_low)
        high = _fmt(pair.ci_high) if log else _fmt_signed(pair.ci_high)
        interval = f" [{low}, {high}]"
    row.measured = f"{estimate}{unit}{interval} (paired, n={pair.n})"
    row.measured_effect = pair.estimate
    if pair.has_ci:
        row.ci_low, row.ci_high = pair.ci_low, pair.ci_high
    row.same_direction = _direction(pair, cmp.expect)
    excl = pair.excludes_null
    row.exceeds_spread = "n/a" if excl is None else ("yes" if excl else "no")
    return row


def _welch_text(result: Difference | Ratio, sa: Summary, sb: Summary, log: bool) -> str:
    """The unpaired (Welch) comparison, reported beside the paired one."""
    value = result.ratio if isinstance(result, Ratio) else result.diff
    if not math.isfinite(value):
        return "n/a"
    ci = f" ± {_fmt(result.ci_half)}" if result.has_ci else ""
    text = f"{_fmt(value)}×{ci}" if log else f"{_fmt_signed(value)}{ci} pts"
    return f"{text} (Welch, n={sa.n} vs {sb.n})"


def evaluate(
    runs: Sequence[Run],
    study: dict[str, Any] | None,
    baseline: str,
    claims: Sequence[Claim] | None = None,
) -> list[ClaimRow]:
    """Evaluate every comparison of every claim (default: :func:`study_claims`) against ``runs``."""
    claims = study_claims(study) if claims is None else claims
    ctx = _Context(runs, study, baseline)
    return [evaluate_comparison(c, cmp, ctx) for c in claims for cmp in c.comparisons]


__all__ = [
    "CLAIMS",
    "SPREAD_RULE",
    "Claim",
    "ClaimRow",
    "Comparison",
    "Summary",
    "claim_arms",
    "evaluate",
    "parse_claims",
    "study_claims",
]
