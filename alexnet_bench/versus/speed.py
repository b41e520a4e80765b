"""Speed: NEW/BASE ratios of each speed measure with a 95% interval, and a verdict.

Two intervals, each over independent units, never over single steps (consecutive step times of
one run are autocorrelated: an interval over them would be far too narrow):

* **over seeds** (two or more paired runs): the per-run values (median images/s over timed
  steps, median step time, time to target, MFU, energy per image) paired by cell, the geometric
  mean of the NEW/BASE ratios with a t-interval on n - 1 degrees of freedom
  (:func:`~alexnet_bench.effects.paired`, the report's own statistic; a censored time to target
  gives only a bound);
* **over epochs within one run** (a single pair): each epoch's training throughput
  (``history.csv``; an epoch's mean over all its steps, i.e. a batch mean, whose neighbours
  are far less correlated than single steps) from the second epoch on (the first carries the
  warm-up), paired by epoch number (every epoch is the same work), the geometric mean of the
  NEW/BASE ratios with a t-interval (:func:`~alexnet_bench.effects.paired`). It covers the
  noise inside the two runs, not what differs between two runs of the same code, so it is
  shown per cell and used for a verdict only when there is one pair.

The verdict at threshold t (a change by more than a factor 1 + t either way counts):
``faster``/``slower`` when the interval excludes 1 and the estimate is beyond the threshold;
``unchanged`` when the whole interval lies within [1/(1 + t), 1 + t]; else ``insufficient
data`` (no interval, or one too wide to tell, with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..collect import Run, run_measure, run_value
from ..effects import paired
from ..numbers import median_of
from .pairing import Pair

FASTER, SLOWER, UNCHANGED, INSUFFICIENT = "faster", "slower", "unchanged", "insufficient data"


@dataclass(frozen=True)
class SpeedMetric:
    """A speed measure: its run value (:data:`~alexnet_bench.collect.RUN_VALUES`) and sense."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    gates: bool  # a "slower" verdict on it fails the comparison (exit status 1)


SPEED_METRICS: tuple[SpeedMetric, ...] = (
    SpeedMetric("throughput", "training images/s", "img/s", True, True),
    SpeedMetric("step_ms", "step time, median", "ms", False, True),
    SpeedMetric("ttt_seconds", "time to target", "s", False, True),
    # MFU is images/s times FLOPs over a peak each study measures once: a different peak
    # reading moves it without any change in speed, so it is shown, not gated on
    SpeedMetric("mfu", "MFU", "", True, False),
    SpeedMetric("energy_per_image_j", "energy per image", "J", False, True),
)
#: the measures whose within-run interval comes from per-epoch throughput
EPOCH_MEASURED = {"throughput", "step_ms"}


@dataclass(frozen=True)
class SpeedRatio:
    """NEW/BASE of one speed measure over a group of paired cells."""

    metric: SpeedMetric
    n: int  # run pairs with the value on both sides
    base: float | None  # median over BASE's runs
    new: float | None
    ratio: float | None  # NEW / BASE (estimate, or a bound when censored)
    verdict: str = INSUFFICIENT
    reason: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    over: str = ""  # what the interval is over

    @property
    def gain(self) -> float | None:
        """The ratio turned so that > 1 is faster."""
        if self.ratio is None:
            return None
        return self.ratio if self.metric.higher_is_better else 1.0 / self.ratio


def pct(t: float) -> str:
    """0.05 -> ``5%``, 0.025 -> ``2.5%``."""
    return f"{t * 100:g}%"


def verdict(
    metric: SpeedMetric, ratio: float | None, low: float | None, high: float | None, t: float
) -> tuple[str, str]:
    """(verdict, reason) for a NEW/BASE ratio and its interval at threshold ``t`` (0.05 = 5%)."""
    if ratio is None or low is None or high is None:
        return INSUFFICIENT, "no interval"
    gain, lo, hi = ratio, low, high
    if not metric.higher_is_better:
        gain, lo, hi = 1.0 / ratio, 1.0 / high, 1.0 / low
    band = (1.0 / (1.0 + t), 1.0 + t)
    if lo > 1.0 and gain > band[1]:
        return FASTER, f"interval excludes 1, estimate beyond +{pct(t)}"
    if hi < 1.0 and gain < band[0]:
        return SLOWER, f"interval excludes 1, estimate beyond −{pct(t)}"
    if band[0] <= lo and hi <= band[1]:
        return UNCHANGED, f"interval within ±{pct(t)}"
    return INSUFFICIENT, f"interval reaches beyond ±{pct(t)}: more seeds would decide"


def _epoch_throughput(run: Run) -> list[float]:
    """Training images/s of each epoch from the second on (batch means of the steps)."""
    if run.history is None:
        return []
    return run.history.finite_values("images_per_s")[1:]


def within_run(metric: SpeedMetric, pair: Pair, t: float) -> SpeedRatio:
    """One pair: for throughput and step time the interval over its epochs."""
    assert pair.base is not None and pair.new is not None
    base, new = run_value(pair.base, metric.name), run_value(pair.new, metric.name)
    n = int(base is not None and new is not None)
    ratio = new / base if n and base else None
    if metric.name not in EPOCH_MEASURED:
        why = "one run pair: no interval for this measure"
        return SpeedRatio(metric, n, base, new, ratio, reason=why)
    eb, en = _epoch_throughput(pair.base), _epoch_throughput(pair.new)
    p = paired(dict(enumerate(en, 2)), dict(enumerate(eb, 2)), ratio=True)
    over = f"epochs within the run (paired by epoch, n={p.n})"
    if p.estimate is None or p.ci_low is None or p.ci_high is None:
        why = "fewer than 2 epochs after the first on both sides: no interval"
        return SpeedRatio(metric, n, base, new, ratio, reason=why, over=over)
    est, lo, hi = p.estimate, p.ci_low, p.ci_high
    if metric.name == "step_ms":  # per-epoch mean step time is the batch over the throughput
        est, lo, hi = 1.0 / est, 1.0 / hi, 1.0 / lo
    v, why = verdict(metric, est, lo, hi, t)
    return SpeedRatio(metric, n, base, new, est, v, why, lo, hi, over)


def over_seeds(metric: SpeedMetric, pairs: Sequence[Pair], t: float) -> SpeedRatio:
    """Two or more pairs: the per-run values paired by cell (geometric mean of the ratios)."""
    base = {i: run_measure(p.base, metric.name) for i, p in enumerate(pairs) if p.base}
    new = {i: run_measure(p.new, metric.name) for i, p in enumerate(pairs) if p.new}
    p = paired(new, base, ratio=True)
    mb = median_of([run_value(x.base, metric.name) for x in pairs if x.base])
    mn = median_of([run_value(x.new, metric.name) for x in pairs if x.new])
    over = f"seeds (paired, n={p.n})"
    if p.kind in ("lower bound", "upper bound"):
        why = f"{len(p.censored)} censored pair(s): only a {p.kind}"
        return SpeedRatio(metric, p.n, mb, mn, p.value, reason=why, over=over)
    if p.estimate is None or not p.has_ci:
        why = "no paired runs" if not p.n else f"{p.n} pair(s): no interval"
        if p.censored:
            why = f"censored in {len(p.censored)} of {p.n} pair(s) (target not reached): no bound"
        return SpeedRatio(metric, p.n, mb, mn, p.estimate, reason=why, over=over)
    v, why = verdict(metric, p.estimate, p.ci_low, p.ci_high, t)
    return SpeedRatio(metric, p.n, mb, mn, p.estimate, v, why, p.ci_low, p.ci_high, over)


def present(metric: SpeedMetric, pairs: Sequence[Pair]) -> bool:
    """Whether any run of the pairs has the measure (energy needs GPU telemetry; a time to
    target that was never reached is present, as a bound)."""
    runs = [r for p in pairs for r in (p.base, p.new) if r is not None]
    return any(run_measure(r, metric.name) is not None for r in runs)


def compare_speed(pairs: Sequence[Pair], t: float) -> list[SpeedRatio]:
    """Every speed measure present in the pairs: over seeds with two or more trained pairs,
    within the run with one. The within-run interval leaves out the run-to-run spread, so it
    decides only a group of one cell; one trained pair of several gives no verdict."""
    trained = [p for p in pairs if p.trained]
    out = []
    for metric in (m for m in SPEED_METRICS if present(m, pairs)):
        if len(trained) == 1:
            ratio = within_run(metric, trained[0], t)
            if len(pairs) > 1:
                why = (
                    f"1 of {len(pairs)} cells trained on both sides: one run's epochs leave "
                    "out the run-to-run spread"
                )
                ratio = replace(ratio, verdict=INSUFFICIENT, reason=why)
            out.append(ratio)
        elif not trained:
            why = "no cell trained on both sides"
            out.append(SpeedRatio(metric, 0, None, None, None, reason=why))
        else:
            out.append(over_seeds(metric, trained, t))
    return out
