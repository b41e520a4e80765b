"""Epochs to the target training error, learning-rate selection and the tanh / ReLU ratio.

Definitions (the same for both activations):

* **Training error** is the running top-1 error over each epoch's training batches, i.e. what
  ``history.csv``'s ``train_top1_error`` holds: the paper's curve is "error on the training set
  as training proceeds", and with no dropout and no augmentation the batches are the plain
  training images.
* **Epochs to the target** is where the piecewise-linear curve through the points
  ``(epoch e, running error of epoch e)`` first falls to the target: fractional, by linear
  interpolation between the last epoch at or above the target and the first one below it.
  A run whose first epoch is already below the target is *left-censored* (``<= 1``); one that
  never gets below it is *right-censored* (``> epochs trained``). Censored runs keep their bound,
  never an invented number.
* **Selection**: per activation and grid learning rate, the score is the median over the sweep
  seeds of the epochs to the target, with right-censored runs counting as +inf (so with two
  seeds a rate must reach the target in both to have a finite score) and left-censored ones as
  1. The lowest score wins; ties go to the smaller learning rate. If no rate has a finite score,
  the one with the lowest median final training error is taken and flagged.
* **Ratio**: seeds pair across arms (the same seed gives both arms the same initial draws and
  batch order), so the ratio is the geometric mean of the per-seed ratios tanh / ReLU, with a
  Student-t interval on the mean of the log ratios (n - 1 degrees of freedom). With a censored
  seed only a bound is reported.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..reports.stats import t_crit

CONFIDENCE = 0.95
NO_DATA_STATUSES = ("failed", "skipped", "missing", "unparseable")


@dataclass(frozen=True)
class Crossing:
    """Epochs to the target of one run: a value, or the bounds it is known to lie in."""

    lower: float
    upper: float
    first_epoch: int | None  # first whole epoch below the target
    epochs_trained: int
    kind: str  # reached | left-censored | right-censored | no data

    @property
    def value(self) -> float | None:
        return self.lower if self.kind == "reached" else None

    @property
    def score(self) -> float:
        """What selection ranks by: the value, +inf if never reached, the bound 1 if left-censored."""
        if self.kind == "reached":
            return self.lower
        return self.upper if self.kind == "left-censored" else math.inf

    def text(self, digits: int = 1) -> str:
        if self.kind == "reached":
            return f"{self.lower:.{digits}f}"
        if self.kind == "left-censored":
            return "≤ 1"
        if self.kind == "right-censored":
            return f"> {self.epochs_trained}"
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


NO_DATA = Crossing(math.nan, math.nan, None, 0, "no data")


def epochs_to_target(errors: Sequence[float], target: float) -> Crossing:
    """Epochs to ``target`` from per-epoch training errors (epoch 1, 2, ...; finite epochs only)."""
    for e, err in enumerate(errors, start=1):
        if err < target:
            if e == 1:
                return Crossing(0.0, 1.0, 1, len(errors), "left-censored")
            prev = errors[e - 2]
            t = (e - 1) + (prev - target) / (prev - err)
            return Crossing(t, t, e, len(errors), "reached")
    return Crossing(float(len(errors)), math.inf, None, len(errors), "right-censored")


@dataclass(frozen=True)
class RunResult:
    """What the analysis needs from one run directory."""

    path: Path
    status: str
    lr: float | None
    seed: int | None
    errors: tuple[float, ...]  # running training error of each finite epoch
    crossing: Crossing
    val_errors: tuple[float | None, ...] = ()  # validation error after each of those epochs

    @property
    def final_error(self) -> float | None:
        return self.errors[-1] if self.errors else None

    @property
    def val_error_at_target(self) -> float | None:
        """Validation error after the first epoch below the target (how much is memorised)."""
        e = self.crossing.first_epoch
        return self.val_errors[e - 1] if e is not None and e <= len(self.val_errors) else None


def _finite(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_run(run_dir: Path, target: float) -> RunResult:
    """Read ``metrics.json`` and ``history.csv`` of one run (missing or broken files -> no data)."""
    metrics_path = run_dir / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        return RunResult(run_dir, "missing", None, None, (), NO_DATA)
    except (OSError, ValueError):
        return RunResult(run_dir, "unparseable", None, None, (), NO_DATA)
    status = str(metrics.get("status") or "unknown")
    train = (metrics.get("config") or {}).get("train") or {}
    lr, seed = train.get("lr"), train.get("seed")
    errors: list[float] = []
    val: list[float | None] = []
    try:
        with open(run_dir / "history.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                err, loss = _finite(row.get("train_top1_error")), _finite(row.get("train_loss"))
                if err is None or loss is None:
                    break  # diverged: the epochs after a non-finite loss do not count
                errors.append(err)
                val.append(_finite(row.get("val_top1_error")))
    except (OSError, csv.Error):
        errors, val = [], []
    if status in NO_DATA_STATUSES or (not errors and status != "completed"):
        crossing = NO_DATA
    else:
        crossing = epochs_to_target(errors, target)
    return RunResult(run_dir, status, lr, seed, tuple(errors), crossing, tuple(val))


def lr_score(runs: Sequence[RunResult]) -> float:
    """Median over seeds of epochs to the target (never reached = +inf); +inf without data."""
    scores = [r.crossing.score for r in runs if r.crossing.kind != "no data"]
    return statistics.median(scores) if scores else math.inf


@dataclass(frozen=True)
class Choice:
    """The learning rate chosen for one activation and why."""

    lr: float
    score: float
    reached: bool  # False: no rate reached the target; chosen by final training error
    edge: str | None  # "smallest" / "largest" grid value, else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "score": None if math.isinf(self.score) else self.score,
            "reached": self.reached,
            "edge": self.edge,
        }


def select_lr(points: Mapping[float, Sequence[RunResult]]) -> Choice:
    """The grid rate reaching the target in the fewest epochs (median over seeds; ties: smaller)."""
    if not points:
        raise ValueError("no sweep points to select from")
    grid = sorted(points)
    scores = {lr: lr_score(points[lr]) for lr in grid}
    best = min(grid, key=lambda lr: (scores[lr], lr))
    reached = math.isfinite(scores[best])
    if not reached:

        def final(lr: float) -> float:
            errs = [r.final_error for r in points[lr] if r.final_error is not None]
            return statistics.median(errs) if errs else math.inf

        best = min(grid, key=lambda lr: (final(lr), lr))
    edge = "smallest" if best == grid[0] else "largest" if best == grid[-1] else None
    return Choice(best, scores[best], reached, edge)


@dataclass(frozen=True)
class Ratio:
    """tanh / ReLU epochs to the target over paired seeds."""

    kind: str  # estimate | lower bound | upper bound | n/a
    value: float | None  # the estimate, or the bound
    ci_low: float | None
    ci_high: float | None
    n: int
    seeds: tuple[int, ...]
    per_seed: tuple[str, ...]
    note: str = ""

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    def text(self) -> str:
        if self.kind == "n/a" or self.value is None:
            return f"n/a ({self.note})" if self.note else "n/a"
        if self.kind == "lower bound":
            return f"> {self.value:.2f}× (censored; {self.note})"
        if self.kind == "upper bound":
            return f"< {self.value:.2f}× (censored; {self.note})"
        ci = f", 95% CI {self.ci_low:.2f}–{self.ci_high:.2f}" if self.has_ci else ", no CI"
        return f"{self.value:.2f}×{ci} (n = {self.n} paired seeds)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "ci95_low": self.ci_low,
            "ci95_high": self.ci_high,
            "n": self.n,
            "seeds": list(self.seeds),
            "per_seed": list(self.per_seed),
            "note": self.note,
            "text": self.text(),
            "method": (
                "geometric mean of per-seed ratios tanh/ReLU (seeds paired); 95% Student-t "
                "interval on the mean log ratio, n-1 degrees of freedom"
            ),
        }


def _log(x: float) -> float:
    return -math.inf if x <= 0 else math.log(x)


def paired_ratio(
    relu: Mapping[int, Crossing], tanh: Mapping[int, Crossing], confidence: float = CONFIDENCE
) -> Ratio:
    """Geometric-mean ratio tanh / ReLU of epochs to the target over seeds present in both arms."""
    seeds = tuple(
        s for s in sorted(set(relu) & set(tanh))
        if relu[s].kind != "no data" and tanh[s].kind != "no data"
    )  # fmt: skip
    unpaired = sorted((set(relu) | set(tanh)) - set(seeds))
    note = f"seeds without data in both arms left out: {unpaired}" if unpaired else ""
    if not seeds:
        return Ratio("n/a", None, None, None, 0, (), (), note or "no seed has data in both arms")
    lo = [_log(tanh[s].lower) - _log(relu[s].upper) for s in seeds]
    hi = [_log(tanh[s].upper) - _log(relu[s].lower) for s in seeds]
    per_seed = tuple(
        f"seed {s}: {tanh[s].text()} / {relu[s].text()}" for s in seeds
    )  # fmt: skip
    n = len(seeds)
    if all(a == b and math.isfinite(a) for a, b in zip(lo, hi, strict=True)):
        mean = math.fsum(lo) / n
        if n < 2:
            return Ratio("estimate", math.exp(mean), None, None, n, seeds, per_seed, note)
        sd = statistics.stdev(lo)
        half = t_crit(n - 1, confidence) * sd / math.sqrt(n)
        return Ratio(
            "estimate", math.exp(mean), math.exp(mean - half), math.exp(mean + half),
            n, seeds, per_seed, note,
        )  # fmt: skip
    censored = [f"seed {s}" for s, a, b in zip(seeds, lo, hi, strict=True) if a != b]
    why = "; ".join(x for x in (f"censored: {', '.join(censored)}", note) if x)
    if all(math.isfinite(a) for a in lo):
        return Ratio(
            "lower bound", math.exp(math.fsum(lo) / n), None, None, n, seeds, per_seed, why
        )
    if all(math.isfinite(b) for b in hi):
        return Ratio(
            "upper bound", math.exp(math.fsum(hi) / n), None, None, n, seeds, per_seed, why
        )
    return Ratio("n/a", None, None, None, n, seeds, per_seed, why or "censored in both directions")
