"""One definition of every effect the package prints: the study report, the Figure 1 study and
the calibration all compute their numbers here, and format them here.

* :func:`summarize`: mean, sample sd and Student-t interval of one arm's per-seed values.
* :func:`time_to_target`: when a training-error curve first falls below a target, with left
  and right censoring (a :class:`Crossing`); the writer (``metrics.py``) and every reader use it.
* :func:`paired`: the primary statistic of every comparison of two arms. Arms with the same
  seed share data order, augmentation draws and (where shapes agree) initial weights, so the
  effect is formed per seed: ``a_s - b_s`` (differences, in the values' units) or
  ``log(a_s / b_s)`` (ratios, reported as the geometric mean of the per-seed ratios), with a
  t-interval on n - 1 degrees of freedom. A censored per-seed value (an interval, e.g. a run that
  never reached the target) turns the estimate into a bound, never an invented number.
* :func:`welch`: the unpaired (Welch) interval, a secondary statistic; every view that shows it
  labels it so.
* :func:`resolution`: what a null result rules out: the largest effect the paired interval
  excludes and the smallest effect these seeds could detect (80% power at the spread they showed).

Distributions come from ``scipy.stats`` (imported on first use: the training processes that
use :func:`time_to_target` never load scipy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

CONFIDENCE = 0.95
POWER = 0.80

# ----------------------------------------------------------------------------- distributions


@cache
def t_crit(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value: 12.706 for df = 1, 4.303 for df = 2, ... at 95%."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, df))


@cache
def detectable_shift(n: int, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """The smallest mean shift, in units of the per-seed sd, that a two-sided paired t-test on
    ``n`` pairs detects with probability ``power`` (exact, noncentral t)."""
    from scipy import optimize, stats

    df, crit = n - 1, t_crit(n - 1, confidence)

    def shortfall(nc: float) -> float:
        lower = float(stats.nct.cdf(-crit, df, nc))  # ~0; scipy returns NaN where it underflows
        return float(stats.nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0) - power

    hi = 1.0
    while shortfall(hi) < 0:  # bracket the root (the power rises with the shift)
        hi *= 2.0
    nc = optimize.brentq(shortfall, 0.0, hi, xtol=1e-10)
    return nc / math.sqrt(n)


def finite(values: Iterable[Any]) -> list[float]:
    """The finite floats among ``values`` (None, NaN, inf, booleans and non-numbers dropped)."""
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


# ----------------------------------------------------------------------------- one arm


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd (ddof = 1) and t-interval of one arm's per-seed values."""

    n: int
    mean: float  # NaN when n = 0
    std: float  # NaN when n < 2
    ci_half: float  # NaN when n < 2
    values: tuple[float, ...] = ()

    @property
    def ci_low(self) -> float:
        return self.mean - self.ci_half

    @property
    def ci_high(self) -> float:
        return self.mean + self.ci_half

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and math.isfinite(self.ci_half)


def summarize(values: Iterable[Any], confidence: float = CONFIDENCE) -> Summary:
    """Summarise the finite ``values``."""
    xs = finite(values)
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, ())
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, tuple(xs))
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return Summary(n, mean, std, t_crit(n - 1, confidence) * std / math.sqrt(n), tuple(xs))


# ----------------------------------------------------------------------------- time to target


@dataclass(frozen=True)
class Crossing:
    """When a curve first fell below the target: a value, or the interval it is known to lie in.

    ``lower``/``upper`` are in the units of the positions given to :func:`time_to_target`
    (epochs, or seconds of training).
    """

    kind: str  # reached | left-censored | right-censored | no data
    lower: float
    upper: float
    first_epoch: int | None  # the first whole epoch that ended below the target
    epochs_trained: int

    @property
    def value(self) -> float | None:
        return self.lower if self.kind == "reached" else None

    @property
    def has_data(self) -> bool:
        return self.kind != "no data"

    @property
    def score(self) -> float:
        """What a ranking uses: the value, +inf if never reached, the bound if left-censored."""
        if self.kind == "reached":
            return self.lower
        return self.upper if self.kind == "left-censored" else math.inf

    def text(self, digits: int = 1) -> str:
        if self.kind == "reached":
            return f"{self.lower:.{digits}f}"
        if self.kind == "left-censored":
            return f"≤ {self.upper:g}"
        if self.kind == "right-censored":
            return f"> {self.lower:g}"
        return "n/a"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "epochs": self.value,
            "lower": self.lower,
            "upper": None if math.isinf(self.upper) else self.upper,
            "first_epoch": self.first_epoch,
            "epochs_trained": self.epochs_trained,
            "text": self.text(),
        }


NO_DATA = Crossing("no data", math.nan, math.nan, None, 0)


def time_to_target(
    errors: Sequence[float], target: float, positions: Sequence[float] | None = None
) -> Crossing:
    """Where the piecewise-linear curve through (position of epoch e's end, error of epoch e)
    first falls below ``target``.

    ``errors`` are the epochs' errors in order (epoch 1, 2, ...; only the finite ones: a caller
    stops at the first non-finite epoch); ``positions`` the x of each epoch's end (default: the
    epoch numbers 1, 2, ...; or the cumulative training seconds). Linear interpolation between
    the last epoch at or above the target and the first one below it. Already below it after the
    first epoch: left-censored, in (0, positions[0]]. Never below it: right-censored, at least
    positions[-1]. No epochs at all: no data.
    """
    xs = list(positions) if positions is not None else [float(e) for e in range(1, len(errors) + 1)]
    n = len(errors)
    if n == 0:
        return NO_DATA
    for e, err in enumerate(errors, start=1):
        if err < target:
            if e == 1:
                return Crossing("left-censored", 0.0, float(xs[0]), 1, n)
            prev, x0, x1 = errors[e - 2], float(xs[e - 2]), float(xs[e - 1])
            t = x0 + (prev - target) / (prev - err) * (x1 - x0)
            return Crossing("reached", t, t, e, n)
    return Crossing("right-censored", float(xs[-1]), math.inf, None, n)


# ----------------------------------------------------------------------------- two arms


class Bounded(Protocol):
    """A per-seed value known only to lie in [lower, upper] (e.g. a :class:`Crossing`)."""

    @property
    def lower(self) -> float: ...

    @property
    def upper(self) -> float: ...


Value = float | Bounded | None


def _bounds(value: Value) -> tuple[float, float] | None:
    """(lower, upper) of a per-seed value; None when it carries no data."""
    if value is None:
        return None
    if isinstance(value, int | float):
        x = float(value)
        return (x, x) if math.isfinite(x) else None
    if isinstance(value, Crossing) and not value.has_data:
        return None
    lo, hi = float(value.lower), float(value.upper)
    return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)


@dataclass(frozen=True)
class Interval:
    """A per-seed value known to lie in [lower, upper] (equal bounds: known exactly)."""

    lower: float
    upper: float


def ratio_interval(a: Value, b: Value) -> Interval | None:
    """``a / b`` of two positive per-seed values (numbers or intervals, e.g. censored
    :class:`Crossing` s) as the interval their bounds allow; None without data in both."""
    x, y = _bounds(a), _bounds(b)
    if x is None or y is None or x[1] <= 0 or y[1] <= 0:
        return None

    def div(num: float, den: float) -> float:
        return math.inf if den <= 0 or math.isinf(num) else num / den

    return Interval(max(x[0], 0.0) / y[1] if math.isfinite(y[1]) else 0.0, div(x[1], y[0]))


def _log(x: float) -> float:
    return -math.inf if x <= 0 else math.log(x)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of two arms over the seeds both have (see :func:`paired`)."""

    ratio: bool  # False: mean of a - b; True: geometric mean of a / b
    kind: str  # estimate | lower bound | upper bound | n/a
    n: int  # seeds paired
    value: float | None  # the estimate, or the bound
    ci_low: float | None = None
    ci_high: float | None = None
    sd: float | None = None  # of the per-seed differences (log ratios)
    seeds: tuple[int, ...] = ()
    unpaired: tuple[int, ...] = ()  # seeds with data in only one arm (left out)
    censored: tuple[int, ...] = ()  # paired seeds whose value is only an interval

    @property
    def null(self) -> float:
        return 1.0 if self.ratio else 0.0

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    @property
    def estimate(self) -> float | None:
        return self.value if self.kind == "estimate" else None

    @property
    def excludes_null(self) -> bool | None:
        """Whether the interval excludes 0 (ratios: 1); None without an interval."""
        if not self.has_ci:
            return None
        assert self.ci_low is not None and self.ci_high is not None
        return self.ci_low > self.null or self.ci_high < self.null

    def same_sign(self, expect: int) -> bool | None:
        """Whether the effect points the way ``expect`` says (+1 above the null, -1 below);
        None when that cannot be told (no estimate, or a bound on the wrong side)."""
        if self.value is None or expect == 0:
            return None
        side = self.value - self.null
        if self.kind == "estimate":
            return None if side == 0 else (side > 0) == (expect > 0)
        if self.kind == "lower bound" and side >= 0:
            return True if expect > 0 else None
        if self.kind == "upper bound" and side <= 0:
            return True if expect < 0 else None
        return None

    def text(self, digits: int = 2) -> str:
        """``+10.52 pts [+9.21, +11.83] (paired, n=5)``, ``1.53× [1.29, 1.82] (paired, n=5)``,
        ``> 2.10× (paired, n=5, censored: seeds 1, 3)``."""
        if self.value is None:
            return "n/a"
        value = fmt_effect(self.value, self.ratio, digits)
        if self.kind != "estimate":
            sign = ">" if self.kind == "lower bound" else "<"
            seeds = ", ".join(map(str, self.censored))
            plural = "s" if len(self.censored) > 1 else ""
            return f"{sign} {value} (paired, n={self.n}, censored: seed{plural} {seeds})"
        interval = fmt_interval(self.ci_low, self.ci_high, self.ratio, digits)
        return f"{value}{interval} (paired, n={self.n})"


def paired(
    a: Mapping[int, Value],
    b: Mapping[int, Value],
    ratio: bool = False,
    confidence: float = CONFIDENCE,
) -> Paired:
    """Pair arms ``a`` and ``b`` by seed and summarise ``a_s - b_s`` (``ratio``: ``a_s / b_s``
    as the geometric mean with its interval).

    A per-seed value is a number, an interval (``lower``/``upper``, e.g. a censored
    :class:`Crossing`) or None (no data: the seed is left out and listed in ``unpaired``). When
    every pair is exact: the mean (geometric mean) with a t-interval on n - 1 degrees of freedom.
    With a censored pair only a bound: the mean of the per-seed lower bounds (``lower bound``)
    when all are finite, else of the upper bounds, else ``n/a``.
    """
    bounds_a = {s: x for s, v in a.items() if (x := _bounds(v)) is not None}
    bounds_b = {s: x for s, v in b.items() if (x := _bounds(v)) is not None}
    if ratio:  # a ratio needs positive values; a non-positive exact value carries no ratio
        bounds_a = {s: x for s, x in bounds_a.items() if x[1] > 0}
        bounds_b = {s: x for s, x in bounds_b.items() if x[1] > 0}
    seeds = tuple(sorted(set(bounds_a) & set(bounds_b)))
    unpaired = tuple(sorted((set(bounds_a) | set(bounds_b)) - set(seeds)))
    if not seeds:
        return Paired(ratio, "n/a", 0, None, unpaired=unpaired)
    if ratio:
        lo = [_log(bounds_a[s][0]) - _log(bounds_b[s][1]) for s in seeds]
        hi = [_log(bounds_a[s][1]) - _log(bounds_b[s][0]) for s in seeds]
    else:
        lo = [bounds_a[s][0] - bounds_b[s][1] for s in seeds]
        hi = [bounds_a[s][1] - bounds_b[s][0] for s in seeds]
    back = math.exp if ratio else float
    n = len(seeds)
    censored = tuple(s for s, x, y in zip(seeds, lo, hi, strict=True) if x != y)
    if not censored and all(math.isfinite(x) for x in lo):
        s = summarize(lo, confidence)
        if not s.has_ci:
            return Paired(ratio, "estimate", n, back(s.mean), seeds=seeds, unpaired=unpaired)
        return Paired(
            ratio, "estimate", n, back(s.mean), back(s.ci_low), back(s.ci_high), s.std,
            seeds, unpaired,
        )  # fmt: skip
    for kind, side in (("lower bound", lo), ("upper bound", hi)):
        if all(math.isfinite(x) for x in side):
            mean = math.fsum(side) / n
            return Paired(ratio, kind, n, back(mean), None, None, None, seeds, unpaired, censored)
    return Paired(ratio, "n/a", n, None, seeds=seeds, unpaired=unpaired, censored=censored)


@dataclass(frozen=True)
class Welch:
    """The unpaired comparison: difference of means (ratios: of geometric means) with Welch's
    interval. A secondary statistic, shown beside the paired one and labelled so."""

    ratio: bool
    n_a: int
    n_b: int
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    df: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    def text(self, digits: int = 2) -> str:
        """``+8.00 pts [−3.1, +19.1] (Welch, unpaired, n=2 vs 2)``."""
        if self.value is None:
            return "n/a"
        interval = fmt_interval(self.ci_low, self.ci_high, self.ratio, digits)
        value = fmt_effect(self.value, self.ratio, digits)
        return f"{value}{interval} (Welch, unpaired, n={self.n_a} vs {self.n_b})"


def welch(
    a: Iterable[Any], b: Iterable[Any], ratio: bool = False, confidence: float = CONFIDENCE
) -> Welch:
    """Welch's unpaired interval for mean(a) - mean(b) (``ratio``: on the logs, back-transformed:
    the ratio of geometric means). Needs two values per arm for an interval."""
    xs, ys = finite(a), finite(b)
    if ratio:
        xs, ys = [math.log(x) for x in xs if x > 0], [math.log(y) for y in ys if y > 0]
    sa, sb = summarize(xs, confidence), summarize(ys, confidence)
    back = math.exp if ratio else float
    if not sa.n or not sb.n:
        return Welch(ratio, sa.n, sb.n, None)
    diff = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return Welch(ratio, sa.n, sb.n, back(diff))
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se2 = va + vb
    if se2 == 0.0:
        return Welch(ratio, sa.n, sb.n, back(diff), back(diff), back(diff), float(sa.n + sb.n - 2))
    df = se2**2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    half = t_crit(df, confidence) * math.sqrt(se2)
    return Welch(ratio, sa.n, sb.n, back(diff), back(diff - half), back(diff + half), df)


# ----------------------------------------------------------------------------- null results


@dataclass(frozen=True)
class Resolution:
    """What a paired comparison can tell apart (differences in the values' units; ratios as a
    factor >= 1 either way)."""

    excluded: float | None  # the data exclude effects at least this large (95% interval)
    detectable: float | None  # the smallest effect these seeds detect with 80% power
    null: bool  # the interval includes the null (0, or 1 for ratios)

    def text(self, ratio: bool, digits: int = 1) -> str:
        """``|Δ| < 5.4 pts (95%); detectable ≥ 6.1 pts`` or ``within ×/÷ 1.21 (95%); ...``."""
        parts = []
        if self.excluded is not None:
            parts.append(
                f"within ×/÷ {self.excluded:.{max(digits, 2)}f} (95%)"
                if ratio
                else f"|Δ| < {self.excluded:.{digits}f} pts (95%)"
            )
        if self.detectable is not None:
            parts.append(
                f"detectable: ×/÷ {self.detectable:.{max(digits, 2)}f}"
                if ratio
                else f"detectable: {self.detectable:.{digits}f} pts"
            )
        return "; ".join(parts) or "n/a"


def resolution(p: Paired, confidence: float = CONFIDENCE, power: float = POWER) -> Resolution:
    """The largest effect the paired interval excludes (``|Δ| < max(|low|, |high|)``; ratios: the
    larger of high and 1/low) and the smallest effect ``p.n`` seeds would detect at ``power``
    given the per-seed spread they showed (the sd of the differences as a plug-in)."""
    if p.kind != "estimate" or not p.has_ci or p.sd is None:
        return Resolution(None, None, False)
    assert p.ci_low is not None and p.ci_high is not None
    if p.ratio:
        excluded = max(p.ci_high, 1.0 / p.ci_low)
        detectable = math.exp(detectable_shift(p.n, confidence, power) * p.sd)
    else:
        excluded = max(abs(p.ci_low), abs(p.ci_high))
        detectable = detectable_shift(p.n, confidence, power) * p.sd
    return Resolution(excluded, detectable, not bool(p.excludes_null))


# ----------------------------------------------------------------------------- formatting


def fmt_number(x: float, digits: int = 2, signed: bool = False) -> str:
    """``+1.25`` / ``1.25`` with U+2212 for minus."""
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "−")


def fmt_interval(low: float | None, high: float | None, ratio: bool, digits: int = 2) -> str:
    """`` [−3.1, +19.1]`` (a leading space; ratios unsigned), or "" without both ends."""
    if low is None or high is None:
        return ""
    return f" [{fmt_number(low, digits, signed=not ratio)}, {fmt_number(high, digits, signed=not ratio)}]"


def fmt_effect(x: float, ratio: bool, digits: int = 2) -> str:
    """A difference in points (``+1.25 pts``) or a ratio (``1.53×``)."""
    return f"{fmt_number(x, digits)}×" if ratio else f"{fmt_number(x, digits, signed=True)} pts"
