"""The paper's claims compared with the measured runs: one :class:`ClaimRow` per comparison.

The claims themselves are data (:mod:`alexnet_bench.claims`, ``paper_claims.yaml``): each
comparison is ``a - b`` (``kind="diff"``, in percentage points) or ``a / b`` (``kind="ratio"``)
of a per-run metric between two ablations, with the paper's value and what independent studies
measured (``others``).

The measured effect is the paired statistic of :mod:`..effects` (through
:class:`~.compare.Comparisons`, the same object the ablation tables use): per-seed differences
(ratios: log ratios) with a Student-t 95% interval on n-1 degrees of freedom; Welch's unpaired
interval is reported beside it, labelled. Accuracy-type comparisons use the runs that learned
(status ``completed``) and the caveats say how many seeds of each arm were left out and why;
time to target also counts the collapsed and diverged runs, as never reaching the target
(right-censored: the effect becomes a bound). Where the interval includes the null, the row also
says what the seeds resolve (:func:`..effects.resolution`).

Rule for "95% CI excludes 0 (ratios: 1)?" (:data:`NULL_RULE`): the paired 95% interval excludes
no effect. It needs at least two paired seeds; otherwise it is "n/a". It is one test at 95%;
the findings table adds the family-wise (Holm) verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..claims import BASELINE, Claim, Comparison, Finding, study_claims
from ..collect import Run, first_value, run_value
from ..effects import Paired, resolution
from ..numbers import fmt_number
from .compare import Comparisons

NULL_COLUMN = "95% CI excludes 0 (ratios: 1)?"
NULL_RULE = (
    "'yes' when the measured effect's paired 95% confidence interval excludes no effect "
    "(a difference of 0; a ratio of 1), i.e. the two-sided paired t-test rejects it at 5%. "
    "Paired: each seed's ablation run is compared with the baseline run of the same seed (same "
    "data order, augmentation draws and, where shapes agree, initial weights), and the per-seed "
    "differences (ratios: log ratios) get a Student-t interval on n−1 degrees of freedom. "
    "Accuracy effects use the runs that learned (the caveats say which seeds were left out and "
    "why); time to target counts collapsed and diverged runs as never reaching the target "
    "(censored: the effect is then a bound and the answer 'n/a'). With fewer than two paired "
    "seeds the answer is 'n/a'. Each row is one test at 95%: the Findings table gives the "
    "family-wise verdict (Holm). Welch's unpaired interval is shown for comparison."
)


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
    ci_excludes_null: str = "n/a"
    caveats: list[str] = field(default_factory=list)
    n_pairs: int = 0
    welch: str = ""
    welch_low: float | None = None
    welch_high: float | None = None
    arm_a: str | None = None  # the ablations compared (after "@baseline" and candidates)
    arm_b: str | None = None
    effect: Paired | None = None  # the effects object behind ``measured``
    resolves: str = ""  # for an interval that includes the null: what the seeds exclude/detect
    others: tuple[Finding, ...] = ()

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
            "measured_kind": self.effect.kind if self.effect is not None else None,
            "measured_effect": self.measured_effect,
            "ci95_low": self.ci_low,
            "ci95_high": self.ci_high,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_pairs": self.n_pairs,
            "statistic": "paired over seeds (t-interval; ratios: geometric mean of per-seed ratios)",
            "resolves": self.resolves,
            "others_found": " | ".join(o.shown() for o in self.others),
            "welch": self.welch,
            "welch_ci95_low": self.welch_low,
            "welch_ci95_high": self.welch_high,
            "same_direction": self.same_direction,
            "ci95_excludes_null": self.ci_excludes_null,
            "p_value": self.effect.p_value if self.effect is not None else None,
            "caveats": "; ".join(self.caveats),
        }


class _Context:
    """Runs grouped by ablation, the study's ablation list and the shared comparisons."""

    def __init__(
        self,
        runs: Sequence[Run],
        study: dict[str, Any] | None,
        baseline: str,
        comparisons: Comparisons | None = None,
    ) -> None:
        self.baseline = baseline
        self.comparisons = comparisons or Comparisons(runs)
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
        return self.comparisons.completed(name)

    def entering(self, name: str, metric: str) -> list[Run]:
        """The runs of ``name`` that enter ``metric``'s comparisons (time to target: also the
        collapsed and diverged ones, censored)."""
        return self.comparisons.entering(name, metric)


def _data_caveat(claim: Claim, runs: list[Run]) -> list[str]:
    """Where the measurement differs from the paper's setting (data set, scale, model, epochs)."""
    if not runs:
        return []
    sources = sorted({str(r.data_source or "?") for r in runs})
    sizes = sorted({int(s) for r in runs if (s := r.image_size) is not None})
    epochs = sorted({int(e) for r in runs if (e := run_value(r, "planned_epochs")) is not None})
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
        variants = sorted({str(r.model_variant or "?") for r in runs})
        out.append(f"model here: AlexNet ({'/'.join(variants)}), not the paper's 4-layer CNN")
    return out


def _status_caveat(ctx: _Context, name: str, metric: str, ratio: bool) -> list[str]:
    """``2 of 5 tanh seeds left out: collapsed (seeds 1, 3)``: the arm's seeds without a value
    for ``metric`` and why (their status)."""
    text = ctx.comparisons.left_out_of_arm(name, metric, ratio).text()
    return [text] if text else []


def _direction(p: Paired, expect: int) -> str:
    """Whether the measured effect has the paper's sign (expect 0: whether it is ≈ the null)."""
    if expect == 0:
        excl = p.excludes_null
        return "n/a" if excl is None else ("no" if excl else "yes")
    if p.value is None:
        return "n/a"
    side = p.value - p.null
    if p.kind == "estimate":
        return "no" if side == 0 else ("yes" if (side > 0) == (expect > 0) else "no")
    # a bound tells the direction only when it lies on the paper's side of the null
    if (p.kind == "lower bound" and side >= 0 and expect > 0) or (
        p.kind == "upper bound" and side <= 0 and expect < 0
    ):
        return "yes"
    return "n/a"


def _censoring_caveats(ctx: _Context, cmp: Comparison, a: str, b: str, target: str) -> list[str]:
    """Which arm's runs never reached (or started below) the target: the effect is a bound. A
    collapsed or diverged run counts as never reaching it, censored at its last (finite) epoch."""
    out = []
    seconds = cmp.metric == "ttt_seconds"
    for name in (a, b):
        runs = [r for r in ctx.entering(name, cmp.metric) if r.seed is not None]
        crossing = {r.seed: (r.ttt_seconds if seconds else r.ttt_epochs) for r in runs}
        never = [r for r in runs if crossing[r.seed].kind == "right-censored" and r.completed]
        early = sorted(s for s, c in crossing.items() if c.kind == "left-censored")
        if never:
            trained = max(run_value(r, "epochs_completed") or 0 for r in ctx.completed(name))
            out.append(
                f"censored: {name} did not reach {target} within {fmt_number(trained, 0)} epochs in "
                f"seed(s) {', '.join(str(r.seed) for r in never)}"
            )
        for r in runs:
            c = crossing[r.seed]
            if r.completed or c.kind != "right-censored":
                continue
            at = f"{c.lower:.1f} s of training" if seconds else f"epoch {c.lower:g}"
            last = (
                "its last epoch with a finite loss (the loss of epoch "
                f"{r.record.diverged_epoch or c.epochs_trained + 1} was not finite)"
                if r.status == "diverged"
                else "its last epoch"
            )
            out.append(
                f"censored: {name} seed {r.seed} {r.status} without reaching {target}: counted "
                f"as never reaching it, right-censored at {at}, {last}"
            )
        if early:
            out.append(
                f"censored: {name} was below {target} after its first epoch in seed(s) "
                f"{', '.join(map(str, early))}"
            )
    return out


def evaluate_comparison(claim: Claim, cmp: Comparison, ctx: _Context) -> ClaimRow:
    a = ctx.pick(cmp.a)
    b = ctx.pick(cmp.b)
    label_a = a or ctx.resolve(cmp.a[0])
    label_b = b or ctx.resolve(cmp.b[0])
    ratio = cmp.kind == "ratio"
    row = ClaimRow(
        claim_id=claim.id,
        claim=claim.statement,
        reference=claim.reference,
        paper_setting=claim.paper_setting,
        comparison=cmp.label,
        compared=f"{label_a} {'/' if ratio else '−'} {label_b}",
        metric=cmp.metric,
        kind=cmp.kind,
        paper_value=cmp.paper_text,
        paper_effect=cmp.paper_effect,
        measured="",
        arm_a=a,
        arm_b=b,
        others=cmp.others,
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
            row.caveats += _status_caveat(ctx, wanted_b, cmp.metric, ratio)
    runs_a, runs_b = ctx.entering(a, cmp.metric), ctx.entering(b, cmp.metric)
    left_out = ctx.comparisons.left_out(cmp.metric, a, b, ratio)
    row.caveats += [text for arm in left_out if (text := arm.text())]
    if not runs_a or not runs_b:
        empty = [n for n, rs in ((a, runs_a), (b, runs_b)) if not rs]
        trained = "trained" if ctx.comparisons.censorable(cmp.metric) else "completed"
        row.measured = f"no {trained} {' / '.join(empty)} runs"
        return row
    row.caveats += _data_caveat(claim, runs_a + runs_b)
    if claim.id == "two_gpus" and any(r.record.device.type == "cpu" for r in runs_a + runs_b):
        row.caveats.append("ran on CPU: multi-'GPU' cells use CPU processes")
    if cmp.note:
        row.caveats.append(cmp.note)

    comparisons = ctx.comparisons
    values_a, values_b = comparisons.values(a, cmp.metric), comparisons.values(b, cmp.metric)
    row.n_a = sum(v is not None for v in values_a.values())
    row.n_b = sum(v is not None for v in values_b.values())
    if comparisons.censorable(cmp.metric):
        target_pct = first_value(runs_a + runs_b, "target_train_error")
        target = (
            f"{fmt_number(target_pct, 0)}% train error" if target_pct is not None else "the target"
        )
        if claim.id == "relu_vs_tanh" and target_pct is not None and abs(target_pct - 25) > 1e-9:
            row.caveats.append(
                f"target here is {fmt_number(target_pct, 0)}% training error (paper: 25%)"
            )
        row.caveats += _censoring_caveats(ctx, cmp, a, b, target)
    if not row.n_a or not row.n_b:
        row.measured = f"metric '{cmp.metric}' not recorded"
        return row

    p = comparisons.paired(cmp.metric, a, b, ratio)
    w = comparisons.welch(cmp.metric, a, b, ratio)
    row.effect, row.n_pairs = p, p.n
    row.welch = w.text() if w.value is not None else "n/a"
    if comparisons.censored(a, cmp.metric) or comparisons.censored(b, cmp.metric):
        row.welch = "n/a (censored seeds: no unpaired estimate)"
    row.welch_low, row.welch_high = w.ci_low, w.ci_high
    if p.n == 0:
        row.measured = f"no seed with a value in both {a} and {b}"
        return row
    if p.n < 2:
        row.caveats.insert(0, f"only {p.n} paired seed(s): no CI")
    if p.value is None:
        row.measured = f"n/a: censored in both directions ({a} / {b}, n={p.n})"
        return row
    row.measured = p.text()
    row.measured_effect = p.value
    row.ci_low, row.ci_high = p.ci_low, p.ci_high
    row.same_direction = _direction(p, cmp.expect)
    excl = p.excludes_null
    row.ci_excludes_null = "n/a" if excl is None else ("yes" if excl else "no")
    res = resolution(p)
    if res.null:
        row.resolves = res.text(ratio)
    return row


def evaluate(
    runs: Sequence[Run],
    study: dict[str, Any] | None,
    baseline: str,
    claims: Sequence[Claim] | None = None,
    comparisons: Comparisons | None = None,
) -> list[ClaimRow]:
    """Evaluate every comparison of every claim (default: :func:`study_claims`) against ``runs``
    (``comparisons``: the effects the rest of the report uses, so the numbers agree)."""
    claims = study_claims(study) if claims is None else claims
    ctx = _Context(runs, study, baseline, comparisons)
    return [evaluate_comparison(c, cmp, ctx) for c in claims for cmp in c.comparisons]
