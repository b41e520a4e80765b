"""The per-epoch history (history.csv) and the numbers derived from it: final and best errors,
time to target, collapse."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from .io import write_text

HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
    "lr", "epoch_time_s", "elapsed_s", "images_per_s", "train_clean_loss",
    "train_clean_top1_error",
)  # fmt: skip


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Atomically write the per-epoch history as CSV."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    write_text(path, buf.getvalue())


def is_finite_row(row: dict[str, Any]) -> bool:
    loss = row.get("train_loss")
    return loss is not None and math.isfinite(loss)


def time_to_target(
    history: list[dict[str, Any]],
    target: float,
    num_classes: int | None = None,
    column: str = "train_top1_error",
) -> dict[str, Any]:
    """When the training top-1 error (history ``column``: the running error over the epoch's
    batches, or ``train_clean_top1_error``, an eval-mode pass over fixed training images)
    first fell below ``target`` (paper Figure 1 criterion).

    ``epoch`` and ``seconds`` are those of the first epoch that ended below the target.
    ``epoch_interpolated`` and ``seconds_interpolated`` place the crossing by linear
    interpolation between that epoch's error and the previous one's (before epoch 1: the chance
    error ``1 - 1/num_classes`` at 0 epochs and 0 s), so ratios of times are not rounded to
    whole epochs.
    """
    prev_epoch, prev_s = 0.0, 0.0
    prev_err = 1.0 - 1.0 / num_classes if num_classes else None
    for row in history:
        if not is_finite_row(row) or row.get(column) is None:
            break
        err, epoch, seconds = row[column], row["epoch"], row["elapsed_s"]
        if err < target:
            frac = 1.0
            if prev_err is not None and prev_err > err:
                frac = min(1.0, max(0.0, (prev_err - target) / (prev_err - err)))
            return {
                "target_train_error": target,
                "error": column,
                "epoch": epoch,
                "seconds": seconds,
                "epoch_interpolated": round(prev_epoch + frac * (epoch - prev_epoch), 4),
                "seconds_interpolated": round(prev_s + frac * (seconds - prev_s), 4),
            }
        prev_epoch, prev_s, prev_err = float(epoch), float(seconds), err
    return {
        "target_train_error": target,
        "error": column,
        "epoch": None,
        "seconds": None,
        "epoch_interpolated": None,
        "seconds_interpolated": None,
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
