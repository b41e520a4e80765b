"""Small-sample statistics for seed aggregates: mean, sample std, t-based 95% CIs.

scipy is not a dependency, so the Student-t quantile is computed here from the regularised
incomplete beta function (continued fraction, as in Numerical Recipes) and bisection. It
accepts non-integer degrees of freedom, which Welch's test needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

CONFIDENCE = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom (t >= 0)."""
    return 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t: the t with P(T <= t) = q, for 0.5 <= q < 1 and df > 0."""
    if not 0.5 <= q < 1.0 or not df > 0:
        raise ValueError(f"t_ppf needs 0.5 <= q < 1 and df > 0, got q={q}, df={df}")
    if q == 0.5:
        return 0.0
    tail = 1.0 - q
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > tail:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_crit(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value: 12.706 for df=1, 4.303 for df=2, ... at 95%."""
    return t_ppf(1.0 - (1.0 - confidence) / 2.0, df)


def finite(values: Iterable[float | None]) -> list[float]:
    """The finite floats among ``values`` (None, NaN and inf dropped)."""
    out = []
    for v in values:
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and t-based CI of a handful of per-seed values."""

    n: int
    mean: float
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


def summarize(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Summary:
    """Summarise finite ``values``; n=0 gives NaN mean, n=1 gives NaN std and CI."""
    xs = finite(values)
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, ())
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, tuple(xs))
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    std = math.sqrt(var)
    half = t_crit(n - 1, confidence) * std / math.sqrt(n)
    return Summary(n, mean, std, half, tuple(xs))


@dataclass(frozen=True)
class Difference:
    """Welch comparison of two independent groups: a - b with a 95% CI."""

    a: Summary
    b: Summary
    diff: float
    se: float  # NaN when either side has n < 2
    df: float
    ci_half: float

    @property
    def ci_low(self) -> float:
        return self.diff - self.ci_half

    @property
    def ci_high(self) -> float:
        return self.diff + self.ci_half

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_half)

    @property
    def excludes_zero(self) -> bool | None:
        """True when the CI lies entirely on one side of 0; None without a CI."""
        if not self.has_ci or not math.isfinite(self.diff):
            return None
        return self.ci_low > 0 or self.ci_high < 0


def welch(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> Difference:
    """Difference of means a - b with Welch's t interval (needs n >= 2 on each side)."""
    diff = a.mean - b.mean if a.n and b.n else math.nan
    if a.n < 2 or b.n < 2:
        return Difference(a, b, diff, math.nan, math.nan, math.nan)
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se2 = va + vb
    if se2 == 0.0:
        return Difference(a, b, diff, 0.0, float(a.n + b.n - 2), 0.0)
    df = se2**2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    se = math.sqrt(se2)
    return Difference(a, b, diff, se, df, t_crit(df, confidence) * se)


@dataclass(frozen=True)
class Ratio:
    """Ratio of means a / b with an approximate (delta-method, Welch df) 95% CI."""

    a: Summary
    b: Summary
    ratio: float
    ci_half: float
    difference: Difference  # a - b, used to judge whether the ratio differs from 1

    @property
    def ci_low(self) -> float:
        return self.ratio - self.ci_half

    @property
    def ci_high(self) -> float:
        return self.ratio + self.ci_half

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_half)


def ratio(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> Ratio:
    """mean(a) / mean(b); the CI uses the delta method: se(R) = R sqrt(cv_a^2/n_a + cv_b^2/n_b)."""
    d = welch(a, b, confidence)
    if not (a.n and b.n) or b.mean == 0:
        return Ratio(a, b, math.nan, math.nan, d)
    r = a.mean / b.mean
    if not d.has_ci or a.mean == 0:
        return Ratio(a, b, r, math.nan, d)
    rel = math.sqrt((a.std / a.mean) ** 2 / a.n + (b.std / b.mean) ** 2 / b.n)
    half = t_crit(d.df, confidence) * abs(r) * rel if d.df > 0 else math.nan
    return Ratio(a, b, r, half, d)


@dataclass(frozen=True)
class Paired:
    """Paired comparison over seeds: the mean of per-seed differences ``a_s - b_s`` (or, with
    ``log=True``, the geometric mean of per-seed ratios ``a_s / b_s``) with a t-interval on n-1
    degrees of freedom. Two arms with the same seed share data order, augmentation draws and,
    where shapes agree, initial weights, so the seed-to-seed variation common to both cancels."""

    n: int
    estimate: float  # mean difference, or geometric-mean ratio when log
    ci_low: float
    ci_high: float
    sd: float  # of the per-seed differences (of log ratios when log)
    log: bool = False
    seeds: tuple[int, ...] = ()

    @property
    def has_ci(self) -> bool:
        return self.n >= 2 and math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    @property
    def ci_half(self) -> float:
        """Half-width (differences); for ratios the larger distance from the estimate."""
        if not self.has_ci:
            return math.nan
        return max(self.estimate - self.ci_low, self.ci_high - self.estimate)

    @property
    def excludes_null(self) -> bool | None:
        """True when the CI excludes 0 (differences) or 1 (ratios); None without a CI."""
        if not self.has_ci:
            return None
        null = 1.0 if self.log else 0.0
        return self.ci_low > null or self.ci_high < null


def paired(
    a: dict[int, float | None],
    b: dict[int, float | None],
    log: bool = False,
    confidence: float = CONFIDENCE,
) -> Paired:
    """Pair ``a`` and ``b`` by seed (seeds with a finite value on both sides; positive ones for
    ``log``) and summarise the per-seed differences (or log ratios)."""
    seeds = []
    diffs = []
    for seed in sorted(set(a) & set(b)):
        x, y = finite([a[seed]]), finite([b[seed]])
        if not x or not y or (log and (x[0] <= 0 or y[0] <= 0)):
            continue
        seeds.append(seed)
        diffs.append(math.log(x[0] / y[0]) if log else x[0] - y[0])
    s = summarize(diffs, confidence)
    back = math.exp if log else (lambda v: v)
    if s.n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, log)
    if not s.has_ci:
        return Paired(s.n, back(s.mean), math.nan, math.nan, s.std, log, tuple(seeds))
    return Paired(s.n, back(s.mean), back(s.ci_low), back(s.ci_high), s.std, log, tuple(seeds))
