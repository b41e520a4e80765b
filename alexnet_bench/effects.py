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
* :func:`holm`: the Holm–Bonferroni step-down verdicts over a family of paired tests (their
  two-sided paired t p-values, :attr:`Paired.p_value`).
* :func:`ratio_of_means`: Fieller's interval for ``mean(x) / mean(y)`` over paired seeds (both
  means uncertain, their covariance estimated from the pairs).
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

from .numbers import finite, fmt_number

CONFIDENCE = 0.95
ALPHA = round(1.0 - CONFIDENCE, 12)  # 0.05: the level of a single test and of a Holm family
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


def t_test_p(mean: float, sd: float, n: int) -> float:
    """Two-sided p-value of a one-sample t-test of mean 0 (``n`` values, sample sd ``sd``) on
    n - 1 degrees of freedom. Zero spread: 0 for a non-zero mean, 1 for a zero one."""
    if n < 2 or not math.isfinite(sd):
        raise ValueError("a t-test needs at least two finite values")
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    from scipy import stats

    return float(2.0 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


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


def value_bounds(value: Value) -> tuple[float, float] | None:
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
    x, y = value_bounds(a), value_bounds(b)
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
    #: two-sided paired t-test of no effect (mean difference, or mean log ratio, 0) on n - 1
    #: degrees of freedom; None without an interval (a bound, or fewer than two pairs)
    p_value: float | None = None

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
    bounds_a = {s: x for s, v in a.items() if (x := value_bounds(v)) is not None}
    bounds_b = {s: x for s, v in b.items() if (x := value_bounds(v)) is not None}
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
        ci = (back(s.ci_low), back(s.ci_high))
        p = t_test_p(s.mean, s.std, n)
        return Paired(ratio, "estimate", n, back(s.mean), *ci, s.std, seeds, unpaired, p_value=p)
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


# ----------------------------------------------------------------------------- many tests


@dataclass(frozen=True)
class HolmVerdict:
    """One test of a Holm–Bonferroni family."""

    p: float  # the test's own (unadjusted) p-value
    rank: int  # 1 = the smallest p of the family
    m: int  # the family's size
    threshold: float  # alpha / (m - rank + 1): what p is compared with at its step
    adjusted: float  # Holm-adjusted p: max over ranks <= this one of min(1, (m - j + 1) p_j)
    holds: bool  # rejected at family-wise level alpha (adjusted <= alpha)

    def text(self, digits: int = 2) -> str:
        """``yes (p = 0.0031, Holm-adjusted 0.012)``."""
        word = "yes" if self.holds else "no"
        return f"{word} (p = {fmt_p(self.p, digits)}, Holm-adjusted {fmt_p(self.adjusted, digits)})"


def holm(pvalues: Mapping[Any, float | None], alpha: float = ALPHA) -> dict[Any, HolmVerdict]:
    """Holm's step-down procedure over the tests with a p-value (None: not in the family).

    Sort the m p-values ascending, p_(1) <= ... <= p_(m); going up from the smallest, reject while
    p_(j) <= alpha / (m - j + 1); the first failure and every larger p hold no longer. This keeps
    the probability of any false rejection in the family at most ``alpha`` (Holm 1979). Ties keep
    the order of ``pvalues``. Returns a verdict per key that has a p-value.
    """
    family = [(k, float(p)) for k, p in pvalues.items() if p is not None]
    m = len(family)
    order = sorted(range(m), key=lambda i: family[i][1])  # stable: ties keep their order
    out: dict[Any, HolmVerdict] = {}
    running = 0.0
    for rank, i in enumerate(order, start=1):
        key, p = family[i]
        running = max(running, min(1.0, (m - rank + 1) * p))  # holds <=> every p_(j<=rank) passed
        out[key] = HolmVerdict(p, rank, m, alpha / (m - rank + 1), running, running <= alpha)
    return out


# ----------------------------------------------------------------------------- ratio of means


@dataclass(frozen=True)
class RatioOfMeans:
    """``mean(x) / mean(y)`` over paired seeds with Fieller's interval (see :func:`ratio_of_means`).

    ``kind``: ``estimate`` (a bounded interval), ``unbounded`` (the denominator's mean is not
    distinguishable from 0 at this confidence: the interval has no finite ends), ``no interval``
    (fewer than two pairs) or ``n/a`` (no pair, or a zero denominator).
    """

    kind: str
    n: int
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    seeds: tuple[int, ...] = ()

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None


def ratio_of_means(
    x: Mapping[int, float], y: Mapping[int, float], confidence: float = CONFIDENCE
) -> RatioOfMeans:
    """Fieller's interval for theta = mean(x) / mean(y), x and y measured on the same seeds.

    Pairs the seeds both have (finite values only). theta is in the interval when the paired
    t-test of ``x_s - theta * y_s`` (mean 0) does not reject at ``confidence``:
    ``(mean_x - theta mean_y)^2 <= t^2 (s_xx - 2 theta s_xy + theta^2 s_yy) / n`` with the sample
    (co)variances of the pairs and t on n - 1 degrees of freedom. Solved as a quadratic
    ``a theta^2 - 2 b theta + c <= 0``; ``a <= 0`` means the denominator is not resolved and the
    set is unbounded. With no spread in y it is the t-interval of mean(x) divided by mean(y).
    """
    seeds = tuple(sorted(s for s in set(x) & set(y) if math.isfinite(x[s]) and math.isfinite(y[s])))
    n = len(seeds)
    if n == 0:
        return RatioOfMeans("n/a", 0, None)
    xs, ys = [float(x[s]) for s in seeds], [float(y[s]) for s in seeds]
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    if my == 0.0:
        return RatioOfMeans("n/a", n, None, seeds=seeds)
    theta = mx / my
    if n < 2:
        return RatioOfMeans("no interval", n, theta, seeds=seeds)
    sxx = math.fsum((a - mx) ** 2 for a in xs) / (n - 1)
    syy = math.fsum((b - my) ** 2 for b in ys) / (n - 1)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / (n - 1)
    q = t_crit(n - 1, confidence) ** 2 / n
    a = my * my - q * syy
    b = mx * my - q * sxy
    c = mx * mx - q * sxx
    if a <= 0.0:
        return RatioOfMeans("unbounded", n, theta, seeds=seeds)
    root = math.sqrt(max(b * b - a * c, 0.0))  # >= 0 when a > 0: theta itself is inside
    return RatioOfMeans("estimate", n, theta, (b - root) / a, (b + root) / a, seeds)


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


def fmt_interval(low: float | None, high: float | None, ratio: bool, digits: int = 2) -> str:
    """`` [−3.1, +19.1]`` (a leading space; ratios unsigned), or "" without both ends."""
    if low is None or high is None:
        return ""
    return f" [{fmt_number(low, digits, signed=not ratio)}, {fmt_number(high, digits, signed=not ratio)}]"


def fmt_p(p: float, digits: int = 2) -> str:
    """A p-value to ``digits`` significant figures (``0.031``, ``0.00042``; ``< 1e-12``)."""
    if p < 1e-12:
        return "< 1e-12"
    return f"{p:.{digits}g}" if p < 0.1 else f"{p:.{digits}f}"


def fmt_effect(x: float, ratio: bool, digits: int = 2) -> str:
    """A difference in points (``+1.25 pts``) or a ratio (``1.53×``)."""
    return f"{fmt_number(x, digits)}×" if ratio else f"{fmt_number(x, digits, signed=True)} pts"
