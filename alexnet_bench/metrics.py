"""Numbers the record derives from the per-epoch history: final and best errors, time to
target, collapse. (The history file itself: :mod:`.history`.)"""

from __future__ import annotations

import math
from typing import Any

from . import effects
from .numbers import as_float


def is_finite_row(row: dict[str, Any]) -> bool:
    return as_float(row.get("train_loss")) is not None


def time_to_target(
    history: list[dict[str, Any]], target: float, column: str = "train_top1_error"
) -> dict[str, Any]:
    """The record's ``time_to_target``: when the training top-1 error (history ``column``: the
    running error over the epoch's batches, or ``train_clean_top1_error``, an eval-mode pass over
    fixed training images) first fell below ``target`` (paper Figure 1 criterion), by the
    definition every study shares (:func:`~.effects.time_to_target`).

    ``epoch`` and ``seconds`` are those of the first epoch that ended below the target;
    ``epoch_interpolated`` and ``seconds_interpolated`` the crossing, interpolated linearly
    between that epoch and the one before. ``censoring`` is ``left`` when the first epoch
    already ended below the target (then only ``<= 1`` epoch is known: no interpolated value),
    ``right`` when no epoch did.
    """
    rows = []
    for row in history:
        if not is_finite_row(row) or row.get(column) is None:
            break
        rows.append(row)
    errors = [r[column] for r in rows]
    by_epoch = effects.time_to_target(errors, target)
    by_time = effects.time_to_target(errors, target, [r["elapsed_s"] for r in rows])
    first = by_epoch.first_epoch
    reached = by_epoch.kind == "reached"
    return {
        "target_train_error": target,
        "error": column,
        "censoring": {"left-censored": "left", "right-censored": "right"}.get(by_epoch.kind),
        "epoch": rows[first - 1]["epoch"] if first else None,
        "seconds": rows[first - 1]["elapsed_s"] if first else None,
        "epoch_interpolated": round(by_epoch.lower, 4) if reached else None,
        "seconds_interpolated": round(by_time.lower, 4) if reached else None,
    }


COLLAPSE_TAIL_EPOCHS = 2
COLLAPSE_LOSS_TOLERANCE = 0.005  # relative to ln(C): a collapsed net sits at ln(C) +- 1e-4
COLLAPSE_ERROR_TOLERANCE = 0.02  # absolute, below the chance error


def collapse_reason(history: list[dict[str, Any]], num_classes: int) -> str | None:
    """Why a finished run counts as *not having learned*, or ``None`` if it learned.

    Collapsed: the training loss stayed within 0.5% of ln(num_classes) (the loss of a constant
    uniform prediction) over each of the last two epochs, or the final validation top-1 error is
    within 0.02 of chance (1 - 1/num_classes). Such a run is a defect of the study, not a
    finding. (A single epoch's mean loss is near ln(C) even in a run that is starting to learn,
    so the loss rule needs two epochs.)
    """
    finite = [r for r in history if is_finite_row(r)]
    if not finite or num_classes < 2:
        return None
    chance_loss, chance_error = math.log(num_classes), 1.0 - 1.0 / num_classes
    tail = finite[-COLLAPSE_TAIL_EPOCHS:]
    if len(tail) == COLLAPSE_TAIL_EPOCHS and all(
        abs(r["train_loss"] - chance_loss) <= COLLAPSE_LOSS_TOLERANCE * chance_loss for r in tail
    ):
        return (
            f"did not learn: training loss stayed at ln({num_classes}) = {chance_loss:.3f} "
            f"(chance) over the last {len(tail)} epoch(s)"
        )
    val = finite[-1].get("val_top1_error")
    if val is not None and math.isfinite(val) and val >= chance_error - COLLAPSE_ERROR_TOLERANCE:
        return (
            f"did not learn: final validation top-1 error {val:.3f} is at chance "
            f"({chance_error:.3f})"
        )
    return None


def summarise_history(history: list[dict[str, Any]]) -> dict[str, Any]:
    """``final`` (last finite epoch) and ``best`` (lowest val top-1) sections."""
    finite = [r for r in history if is_finite_row(r)]
    final_keys = ("train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error")
    final = {k: finite[-1][k] for k in final_keys} if finite else dict.fromkeys(final_keys)
    if finite:
        best_row = min(finite, key=lambda r: r["val_top1_error"])
        best = {k: best_row[k] for k in ("epoch", "val_top1_error", "val_top5_error")}
    else:
        best = {"epoch": None, "val_top1_error": None, "val_top5_error": None}
    return {"final": final, "best": best}
