"""Learning-rate selection and the per-run views the Figure 1 study needs.

Runs are read through :mod:`alexnet_bench.collect` and their epochs to the target come from the
shared definition (:func:`alexnet_bench.effects.time_to_target`, via ``Run.ttt_epochs``):

* **Training error** is the running top-1 error over each epoch's training batches, the column
  the protocol's runs name as their target column (``train.target_error_on: running``): the
  paper's curve is "error on the training set as training proceeds", and with no dropout and no
  augmentation the batches are the plain training images.
* **Epochs to the target**: fractional, by linear interpolation between the last epoch at or
  above the target and the first one below it; a run already below it after the first epoch is
  left-censored (``<= 1``), one never below it right-censored (``> epochs trained``).
* **Selection**: per activation and grid learning rate, the score is the median over the sweep
  seeds of the epochs to the target, with right-censored runs counting as +inf (so with two
  seeds a rate must reach the target in both to have a finite score) and left-censored ones as
  1. The lowest score wins; ties go to the smaller learning rate. If no rate has a finite score,
  the one with the lowest median final training error is taken and flagged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..collect import Run


def curve(run: Run) -> list[float]:
    """The run's running training error per epoch (finite epochs only)."""
    return run.history.finite_values(run.target_column) if run.history is not None else []


def final_error(run: Run) -> float | None:
    errors = curve(run)
    return errors[-1] if errors else None


def val_error_at_target(run: Run) -> float | None:
    """Validation error after the first epoch below the target (how much is memorised)."""
    first = run.ttt_epochs.first_epoch
    if first is None or run.history is None:
        return None
    values = run.history.val_top1_error[: run.history.finite_epochs]
    if first > len(values) or not math.isfinite(float(values[first - 1])):
        return None
    return float(values[first - 1])


def generalisation_gap(run: Run) -> float | None:
    """Validation minus training error at the first epoch below the target (fractions): how
    much of the target was reached by memorising the training set."""
    val = val_error_at_target(run)
    first = run.ttt_epochs.first_epoch
    errors = curve(run)
    if val is None or first is None or first > len(errors):
        return None
    return val - errors[first - 1]


def lr_score(runs: Sequence[Run]) -> float:
    """Median over seeds of epochs to the target (never reached = +inf); +inf without data."""
    scores = [r.ttt_epochs.score for r in runs if r.ttt_epochs.has_data]
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


def select_lr(points: Mapping[float, Sequence[Run]]) -> Choice:
    """The grid rate reaching the target in the fewest epochs (median over seeds; ties: smaller)."""
    if not points:
        raise ValueError("no sweep points to select from")
    grid = sorted(points)
    scores = {lr: lr_score(points[lr]) for lr in grid}
    best = min(grid, key=lambda lr: (scores[lr], lr))
    reached = math.isfinite(scores[best])
    if not reached:

        def final(lr: float) -> float:
            errs = [e for r in points[lr] if (e := final_error(r)) is not None]
            return statistics.median(errs) if errs else math.inf

        best = min(grid, key=lambda lr: (final(lr), lr))
    edge = "smallest" if best == grid[0] else "largest" if best == grid[-1] else None
    return Choice(best, scores[best], reached, edge)
