"""The statistics engine (alexnet_bench.effects): every effect the report, the Figure 1 study
and the calibration print, checked by hand."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from alexnet_bench.effects import (
    NO_DATA,
    Interval,
    detectable_shift,
    holm,
    paired,
    ratio_interval,
    ratio_of_means,
    resolution,
    summarize,
    t_crit,
    time_to_target,
    welch,
)

T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 10: 2.2281389, 30: 2.0422725}


def test_t_critical_values_match_the_t_table() -> None:
    for df, value in T975.items():
        assert t_crit(df) == pytest.approx(value, abs=1e-6)
    assert t_crit(7.3) == pytest.approx(stats.t.ppf(0.975, 7.3))  # Welch's fractional df


def test_summary_of_one_arm() -> None:
    s = summarize([30.0, 34.0, None, math.nan, "x"])
    assert (s.n, s.mean, s.std) == (2, 32.0, pytest.approx(math.sqrt(8)))
    assert s.ci_half == pytest.approx(T975[1] * 2.0)
    assert not summarize([1.0]).has_ci and summarize([]).n == 0


# -- time to target --------------------------------------------------------------------------
def test_time_to_target_interpolates_between_epoch_ends() -> None:
    c = time_to_target([0.9, 0.5, 0.2, 0.1], 0.25)
    assert (c.kind, c.first_epoch, c.epochs_trained) == ("reached", 3, 4)
    assert c.value == pytest.approx(2 + 0.25 / 0.3) and c.text() == "2.8"
    seconds = time_to_target([0.9, 0.5, 0.2, 0.1], 0.25, [10.0, 20.0, 30.0, 40.0])
    assert seconds.value == pytest.approx(20 + 10 * 0.25 / 0.3)
    assert time_to_target([0.9, 0.25, 0.1], 0.25).value == pytest.approx(2.0)  # on the line


def test_time_to_target_is_censored_never_invented() -> None:
    never = time_to_target([0.9, 0.8, 0.7], 0.25)
    assert (never.kind, never.value, never.lower, never.upper) == (
        "right-censored",
        None,
        3.0,
        math.inf,
    )
    assert never.text() == "> 3" and never.score == math.inf
    first = time_to_target([0.2, 0.1], 0.25, [12.5, 25.0])
    assert (first.kind, first.value, first.lower, first.upper) == ("left-censored", None, 0.0, 12.5)
    assert first.first_epoch == 1 and first.text() == "≤ 12.5"
    assert time_to_target([], 0.25) is NO_DATA and not NO_DATA.has_data


# -- paired effects ----------------------------------------------------------------------------
def test_paired_difference_by_hand() -> None:
    p = paired({0: 12.0, 1: 13.0, 2: 11.0, 7: 5.0}, {0: 10.0, 1: 10.0, 2: 10.0, 8: None})
    assert (p.kind, p.n, p.seeds, p.unpaired) == ("estimate", 3, (0, 1, 2), (7,))
    half = T975[2] * 1.0 / math.sqrt(3)  # differences 2, 3, 1: sd 1
    assert (p.value, p.ci_low, p.ci_high) == (2.0, pytest.approx(2 - half), pytest.approx(2 + half))
    assert p.sd == pytest.approx(1.0) and p.excludes_null is False
    assert p.text() == f"+2.00 pts [{2 - half:+.2f}, +{2 + half:.2f}] (paired, n=3)".replace(
        "-", "−"
    )


def test_paired_ratio_is_a_geometric_mean_with_a_log_interval() -> None:
    p = paired({0: 6.0, 1: 12.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 1.0}, ratio=True)
    logs = [math.log(6), math.log(6), math.log(3)]
    mean, half = statistics.fmean(logs), T975[2] * statistics.stdev(logs) / math.sqrt(3)
    assert p.value == pytest.approx(math.exp(mean))
    assert (p.ci_low, p.ci_high) == (
        pytest.approx(math.exp(mean - half)),
        pytest.approx(math.exp(mean + half)),
    )
    assert p.excludes_null is True and p.text().startswith(f"{math.exp(mean):.2f}× [")
    # a / b and b / a are each other's inverse, interval included
    q = paired({0: 1.0, 1: 2.0, 2: 1.0}, {0: 6.0, 1: 12.0, 2: 3.0}, ratio=True)
    assert q.value == pytest.approx(1 / p.value) and q.ci_low == pytest.approx(1 / p.ci_high)


def test_a_censored_pair_makes_a_bound() -> None:
    reached = {s: time_to_target([0.9, 0.5, 0.2], 0.25) for s in (0, 1)}  # 2.83 epochs
    never = {0: time_to_target([0.9] * 6, 0.25), 1: time_to_target([0.9, 0.5, 0.2], 0.25)}
    lower = paired(never, reached, ratio=True)  # seed 0: > 6 / 2.83
    assert (lower.kind, lower.censored, lower.ci_low) == ("lower bound", (0,), None)
    assert lower.value == pytest.approx(math.sqrt(6 / reached[0].value))
    assert lower.text().startswith("> ") and "seed 0" in lower.text()
    upper = paired(reached, never, ratio=True)
    assert upper.kind == "upper bound" and upper.value == pytest.approx(1 / lower.value)
    early = {0: time_to_target([0.1], 0.25), 1: time_to_target([0.1], 0.25)}  # left-censored
    assert paired(early, reached, ratio=True).kind == "upper bound"
    assert paired(never, early, ratio=True).kind == "lower bound"
    both = paired({0: never[0], 1: early[0]}, reached, ratio=True)
    assert both.kind == "n/a" and both.value is None and both.text() == "n/a"


def test_welch_is_the_unpaired_secondary() -> None:
    w = welch([1.0, 2.0, 3.0], [11.0, 12.0, 13.0])
    assert w.value == -10.0 and w.df == pytest.approx(4.0)  # equal variances: df = 4
    assert w.ci_high - w.value == pytest.approx(T975[4] * math.sqrt(2 / 3), rel=1e-6)
    assert "(Welch, unpaired, n=3 vs 3)" in w.text()
    r = welch([4.0, 16.0], [2.0, 2.0], ratio=True)  # geometric means 8 and 2
    assert r.value == pytest.approx(4.0)
    assert welch([1.0], [2.0, 3.0]).ci_low is None and welch([], [1.0]).value is None


# -- what a null result rules out ----------------------------------------------------------------
def test_detectable_shift_has_the_stated_power() -> None:
    for n in (2, 3, 5, 10):
        shift = detectable_shift(n)
        nc, crit = shift * math.sqrt(n), t_crit(n - 1)
        lower = stats.nct.cdf(-crit, n - 1, nc)  # negligible; scipy may underflow to NaN
        power = stats.nct.sf(crit, n - 1, nc) + (0.0 if math.isnan(lower) else lower)
        assert power == pytest.approx(0.80, abs=1e-6)
    # cross-check n = 5 by simulation: paired t-tests on shifted normal differences
    rng = np.random.default_rng(0)
    d = rng.standard_normal((20000, 5)) + detectable_shift(5)
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(5))
    assert (abs(t) > t_crit(4)).mean() == pytest.approx(0.80, abs=0.01)
    # more seeds resolve smaller effects; large n approaches the normal approximation
    assert detectable_shift(3) > detectable_shift(5) > detectable_shift(10)
    assert detectable_shift(200) == pytest.approx((1.96 + 0.8416) / math.sqrt(200), rel=0.01)


def test_resolution_of_a_null_and_of_a_clear_effect() -> None:
    null = paired({0: 1.0, 1: -2.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    res = resolution(null)
    assert res.null and res.excluded == pytest.approx(max(-null.ci_low, null.ci_high))
    assert res.detectable == pytest.approx(detectable_shift(3) * null.sd)
    assert (
        res.text(False)
        == f"|Δ| < {res.excluded:.1f} pts (95%); detectable: {res.detectable:.1f} pts"
    )
    clear = resolution(paired({0: 5.0, 1: 6.0, 2: 5.5}, {0: 0.0, 1: 0.0, 2: 0.0}))
    assert not clear.null
    ratio = resolution(paired({0: 1.1, 1: 0.8, 2: 1.0}, {0: 1.0, 1: 1.0, 2: 1.0}, ratio=True))
    assert ratio.null and ratio.excluded >= 1 and ratio.text(True).startswith("within ×/÷ ")
    assert resolution(paired({0: 1.0}, {0: 0.0})).excluded is None  # one pair: no interval


def test_ratio_interval_keeps_what_censoring_allows() -> None:
    reached = time_to_target([0.9, 0.5, 0.3, 0.2], 0.25)  # 3.5 epochs
    never = time_to_target([0.9, 0.8], 0.25)  # > 2
    early = time_to_target([0.2, 0.1], 0.25)  # <= 1
    exact = ratio_interval(reached, 1.75)
    assert exact == Interval(2.0, 2.0)
    assert ratio_interval(never, reached) == Interval(2 / 3.5, math.inf)
    assert ratio_interval(reached, early) == Interval(3.5, math.inf)
    assert ratio_interval(early, reached) == Interval(0.0, 1 / 3.5)
    assert ratio_interval(never, never) == Interval(0.0, math.inf)
    assert ratio_interval(None, reached) is None
    assert ratio_interval(NO_DATA, reached) is None
    # a ratio of ratios over paired seeds: exact seeds give the estimate, a censored one a bound
    a = {1: ratio_interval(4.0, 2.0), 2: ratio_interval(9.0, 3.0)}
    b = {1: ratio_interval(2.0, 2.0), 2: ratio_interval(3.0, 2.0)}
    p = paired(a, b, ratio=True)
    assert p.kind == "estimate" and p.value == pytest.approx(math.sqrt(2 * 2))
    a[2] = ratio_interval(never, 1.0)
    assert paired(a, b, ratio=True).kind == "lower bound"


# -- p-values and many tests --------------------------------------------------------------------
def test_paired_p_value_is_the_paired_t_test() -> None:
    a, b = {0: 12.0, 1: 13.0, 2: 11.0}, {0: 10.0, 1: 10.0, 2: 10.0}
    p = paired(a, b)  # differences 2, 3, 1: mean 2, sd 1, t = 2 / (1 / sqrt 3) on 2 df
    assert p.p_value == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 2))
    assert p.p_value == pytest.approx(stats.ttest_rel([12, 13, 11], [10, 10, 10]).pvalue)
    r = paired({0: 6.0, 1: 12.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 1.0}, ratio=True)  # on the logs
    logs = np.log([6.0, 6.0, 3.0])
    assert r.p_value == pytest.approx(stats.ttest_1samp(logs, 0.0).pvalue)
    # the same t as the interval: p < 0.05 exactly when the 95% interval excludes no effect
    for diffs in ([0.5, -0.2, 0.9], [0.5, 0.4, 0.6], [1.0, 2.0, -0.5, 0.7], [3.0, 3.5]):
        q = paired(dict(enumerate(diffs)), dict.fromkeys(range(len(diffs)), 0.0))
        assert (q.p_value < 0.05) == q.excludes_null, diffs
    # no p-value without an interval: one pair, or a bound
    assert paired({0: 1.0}, {0: 0.0}).p_value is None
    never = {0: time_to_target([0.9] * 6, 0.25), 1: time_to_target([0.9, 0.5, 0.2], 0.25)}
    assert paired(never, {0: 2.0, 1: 2.0}, ratio=True).p_value is None
    # no spread: an exact effect (p = 0) or exactly none (p = 1)
    assert paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p_value == 0.0
    assert paired({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0}).p_value == 1.0


def test_holm_by_hand() -> None:
    # sorted: 0.005 <= 0.05/4 = 0.0125 yes; 0.01 <= 0.05/3 = 0.0167 yes; 0.03 > 0.05/2 = 0.025:
    # stop, so 0.03 and 0.04 (although <= 0.05/1) do not hold; Bonferroni (0.0125) keeps only one
    v = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert {k: x.holds for k, x in v.items()} == {"a": True, "b": False, "c": False, "d": True}
    assert {k: x.rank for k, x in v.items()} == {"d": 1, "a": 2, "c": 3, "b": 4}
    assert {k: x.m for k, x in v.items()} == dict.fromkeys("abcd", 4)
    assert [v[k].threshold for k in "dacb"] == pytest.approx([0.0125, 0.05 / 3, 0.025, 0.05])
    # adjusted: running max of (m - j + 1) p_(j): 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert [v[k].adjusted for k in "dacb"] == pytest.approx([0.02, 0.03, 0.06, 0.06])
    assert v["d"].text() == "yes (p = 0.005, Holm-adjusted 0.02)"
    assert v["c"].text() == "no (p = 0.03, Holm-adjusted 0.06)"
    # step-down beats Bonferroni: every p_(j) <= 0.05 / (m - j + 1), so all four hold (Bonferroni,
    # p <= 0.05 / 4, would keep only 0.01)
    w = holm({1: 0.01, 2: 0.015, 3: 0.02, 4: 0.04})
    assert all(x.holds for x in w.values())
    # a test without a p-value is not in the family; adjusted p-values stop at 1
    x = holm({"t": 0.6, "bound": None, "u": 0.9})
    assert set(x) == {"t", "u"} and x["t"].m == 2
    assert x["t"].adjusted == x["u"].adjusted == 1.0  # 2 * 0.6 capped at 1, then max(1, 0.9)
    assert not x["t"].holds and holm({}) == {}


# -- ratio of two means: Fieller -----------------------------------------------------------------
def test_ratio_of_means_is_fiellers_interval_by_hand() -> None:
    # x = 1, 2, 3 and y = 2, 3, 4: means 2 and 3, s_xx = s_yy = s_xy = 1, q = t(2)^2 / 3;
    # a = 3^2 - q, b = 2 * 3 - q, c = 2^2 - q and b^2 - a c = q, so theta = (6 - q +- sqrt q)/(9 - q)
    f = ratio_of_means({0: 1.0, 1: 2.0, 2: 3.0, 9: 5.0}, {0: 2.0, 1: 3.0, 2: 4.0})
    q = T975[2] ** 2 / 3
    assert (f.kind, f.n, f.seeds, f.value) == ("estimate", 3, (0, 1, 2), pytest.approx(2 / 3))
    assert f.ci_low == pytest.approx((6 - q - math.sqrt(q)) / (9 - q), rel=1e-6)
    assert f.ci_high == pytest.approx((6 - q + math.sqrt(q)) / (9 - q), rel=1e-6)
    assert (f.ci_low, f.ci_high) == (
        pytest.approx(-0.93850, abs=1e-4),
        pytest.approx(0.81766, abs=1e-4),
    )
    # the defining property: at each end the paired t statistic of x - theta y is t(0.975, 2)
    xs, ys = np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])
    for theta in (f.ci_low, f.ci_high):
        d = xs - theta * ys
        assert abs(d.mean()) / (d.std(ddof=1) / math.sqrt(3)) == pytest.approx(T975[2], rel=1e-6)


def test_ratio_of_means_without_spread_in_y_is_the_t_interval_of_x_over_mean_y() -> None:
    f = ratio_of_means({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 2.0, 2: 2.0})
    half = T975[2] * 1.0 / math.sqrt(3)  # x: mean 2, sd 1
    assert f.value == 1.0
    assert (f.ci_low, f.ci_high) == (pytest.approx((2 - half) / 2), pytest.approx((2 + half) / 2))
    # a denominator the seeds cannot tell from 0: no finite interval
    loose = ratio_of_means({0: 1.0, 1: 2.0, 2: 3.0}, {0: -1.0, 1: 0.5, 2: 2.0})
    assert loose.kind == "unbounded" and not loose.has_ci and loose.value == pytest.approx(4.0)
    assert ratio_of_means({0: 1.0}, {0: 2.0}).kind == "no interval"
    assert ratio_of_means({0: 1.0, 1: 2.0}, {0: 1.0, 1: -1.0}).kind == "n/a"  # mean(y) = 0
    assert ratio_of_means({0: 1.0}, {1: 2.0}).kind == "n/a"
