"""Numerics: are NEW's learning curves BASE's, bit for bit, or within seed noise, or different?

* ``bit-identical``: every paired cell's learning curves (the loss and error columns of
  ``history.csv``, the learning rate, the 10-crop errors) are equal to the last bit.
* ``within noise``: the curves differ, but an equivalence test (TOST, two one-sided tests at
  5%) on the paired differences of final validation top-1 error (NEW - BASE, in points) shows
  that their mean lies within ±margin: the 90% paired t-interval lies inside (-margin, margin).
* ``different``: the 95% paired interval lies entirely beyond the margin.
* ``insufficient data``: no trained pair, one pair whose curves differ (no spread to test
  against), a pair in which one side diverged and the other did not (a diverged run has no
  final error: its last finite epoch's is not one), or an interval that overlaps the margin
  (more seeds would decide). Pairs that diverged on both sides are left out of the test, and
  the reason says how many.

The margin is stated in points, or in units of BASE's seed-to-seed standard deviation of final
validation top-1 error over its completed runs (pooled over its ablations; collapsed runs left
out, as the report's accuracy comparisons leave them out): ``1sd`` asks whether NEW's mean
moved by less than one seed's typical spread. Both intervals come from
:func:`~alexnet_bench.effects.paired` (the report's paired statistic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..collect import Run, run_value
from ..effects import paired, summarize
from ..errors import ConfigError
from .pairing import Pair

IDENTICAL, WITHIN, DIFFERENT, INSUFFICIENT = (
    "bit-identical",
    "within noise",
    "different",
    "insufficient data",
)
#: the history columns that make up a learning curve (timing columns are not numerics)
CURVE_COLUMNS = (
    "train_loss",
    "train_top1_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "lr",
    "train_clean_loss",
    "train_clean_top1_error",
)
#: the per-run number the equivalence test pairs (percent points)
MEASURE = "val_top1"
_MARGIN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(sd|pts?)?\s*$")


@dataclass(frozen=True)
class Margin:
    """The equivalence margin as asked for: points, or multiples of BASE's seed sd."""

    value: float
    in_sd: bool

    @classmethod
    def parse(cls, text: str) -> Margin:
        """``2`` or ``2pts`` (points of val top-1 error), ``1sd`` (BASE's seed sd)."""
        m = _MARGIN.match(str(text))
        if not m or float(m.group(1)) <= 0:
            raise ConfigError(
                f"--margin {text!r} is not a positive margin; give points of validation top-1 "
                "error (e.g. 2) or multiples of BASE's seed sd (e.g. 1sd)"
            )
        return cls(float(m.group(1)), m.group(2) == "sd")

    def text(self) -> str:
        return f"{self.value:g}sd" if self.in_sd else f"{self.value:g} pts"


@dataclass(frozen=True)
class ResolvedMargin:
    """The margin in points and how it was set."""

    points: float | None  # None: BASE has no seed spread to scale by
    how: str


def seed_sd(runs: Iterable[Run]) -> tuple[float | None, int, int]:
    """BASE's seed-to-seed sd of final val top-1 error (points) over its completed runs, pooled
    over ablations; its degrees of freedom; how many collapsed or diverged runs were left out
    (one at chance would make the spread, and so a ``1sd`` margin, as wide as chance)."""
    by_ablation: dict[str, list[float]] = {}
    left_out = 0
    for r in runs:
        if r.status in ("collapsed", "diverged"):
            left_out += 1
            continue
        v = run_value(r, MEASURE) if r.status == "completed" else None
        if v is not None:
            by_ablation.setdefault(r.ablation, []).append(v)
    ss, df = 0.0, 0
    for values in by_ablation.values():
        s = summarize(values)
        if s.n >= 2:
            ss += (s.n - 1) * s.std**2
            df += s.n - 1
    return ((math.sqrt(ss / df), df) if df else (None, 0)) + (left_out,)


def resolve_margin(margin: Margin, base_runs: Iterable[Run]) -> ResolvedMargin:
    if not margin.in_sd:
        return ResolvedMargin(margin.value, f"±{margin.value:g} pts (--margin)")
    sd, df, left_out = seed_sd(base_runs)
    without = f"; {left_out} collapsed/diverged run(s) left out" if left_out else ""
    if sd is None:
        return ResolvedMargin(
            None, f"{margin.text()}: BASE has no seed spread to scale by{without}"
        )
    pts = margin.value * sd
    return ResolvedMargin(
        pts, f"±{pts:.2f} pts = {margin.text()} (BASE's seed sd, df {df}{without})"
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def identical_curves(a: Run, b: Run) -> bool:
    """Whether two runs' learning curves are equal to the last bit."""
    ha, hb = a.history, b.history
    if ha is None or hb is None or len(ha) != len(hb) or not len(ha):
        return False
    if not all(_same(ha.column(c), hb.column(c)) for c in CURVE_COLUMNS):
        return False
    fa, fb = a.record.final, b.record.final
    return fa.val_top1_error_10crop == fb.val_top1_error_10crop


@dataclass(frozen=True)
class CellNumerics:
    """One pair: identical curves or not, and the final val top-1 errors (points)."""

    identical: bool
    base: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.new is None else self.new - self.base

    @property
    def text(self) -> str:
        """``bit-identical`` or ``curves differ``."""
        return IDENTICAL if self.identical else "curves differ"


def _final_error(run: Run) -> float | None:
    """A run's final val top-1 error (points); None for a diverged run, whose record holds its
    last finite epoch's error, not a final one."""
    return None if run.status == "diverged" else run_value(run, MEASURE)


def cell_numerics(pair: Pair) -> CellNumerics | None:
    """The numerics of one trained pair (None when a side did not train)."""
    if not pair.trained:
        return None
    assert pair.base is not None and pair.new is not None
    same = identical_curves(pair.base, pair.new)
    return CellNumerics(same, _final_error(pair.base), _final_error(pair.new))


@dataclass(frozen=True)
class GroupNumerics:
    """The numerics verdict over a group of pairs."""

    verdict: str
    reason: str
    n: int  # trained pairs
    identical: int  # of which bit-identical
    delta: float | None = None  # mean NEW - BASE final val top-1 (points)
    ci95: tuple[float, float] | None = None
    ci90: tuple[float, float] | None = None
    margin: float | None = None  # points

    @property
    def equivalent_within(self) -> float | None:
        """The smallest margin the TOST would accept (points)."""
        return None if self.ci90 is None else max(abs(self.ci90[0]), abs(self.ci90[1]))


def _interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


def group_numerics(pairs: Sequence[Pair], margin: ResolvedMargin) -> GroupNumerics:
    """The verdict over the trained pairs of a group (see the module docstring)."""
    cells = [(i, c) for i, p in enumerate(pairs) if (c := cell_numerics(p)) is not None]
    n, same = len(cells), sum(c.identical for _, c in cells)
    if not n:
        return GroupNumerics(INSUFFICIENT, "no cell trained on both sides", 0, 0)
    if same == n:
        return GroupNumerics(IDENTICAL, f"{n} of {n} cell(s) bit-identical", n, n, 0.0)
    one_sided = [pairs[i].key.label for i, c in cells if (c.base is None) != (c.new is None)]
    if one_sided:
        why = f"diverged on one side only: {', '.join(one_sided)} (no final error to pair)"
        return GroupNumerics(INSUFFICIENT, why, n, same)
    base = {i: c.base for i, c in cells}
    new = {i: c.new for i, c in cells}
    p95, p90 = paired(new, base), paired(new, base, confidence=0.90)
    ci95 = _interval(p95.ci_low, p95.ci_high)
    ci90 = _interval(p90.ci_low, p90.ci_high)
    found = GroupNumerics(INSUFFICIENT, "", n, same, p95.estimate, ci95, ci90, margin.points)
    tested = f" ({p95.n} of {n} pairs; the others diverged on both sides)" if p95.n < n else ""
    if ci95 is None or ci90 is None:
        why = f"{p95.n} pair(s) with a final val error: no seed spread to test against"
        return replace(found, reason=why)
    if margin.points is None:
        return replace(found, reason=margin.how + tested)
    m = margin.points
    if -m < ci90[0] and ci90[1] < m:
        why = f"90% interval within {margin.how} (TOST){tested}"
        return replace(found, verdict=WITHIN, reason=why)
    if ci95[0] > m or ci95[1] < -m:
        why = f"95% interval beyond {margin.how}{tested}"
        return replace(found, verdict=DIFFERENT, reason=why)
    why = f"interval overlaps {margin.how}: more seeds would decide{tested}"
    return replace(found, reason=why)
