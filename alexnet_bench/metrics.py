"""Per-epoch history and the run summary (``history.csv`` + ``metrics.json``)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from .io import write_json, write_text

SCHEMA_VERSION = 1
HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error",
    "lr", "epoch_time_s", "elapsed_s", "images_per_s",
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


def time_to_target(history: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """First epoch whose training top-1 error is below ``target`` (paper Figure 1 criterion)."""
    for row in history:
        if is_finite_row(row) and row["train_top1_error"] < target:
            return {
                "target_train_error": target,
                "epoch": row["epoch"],
                "seconds": row["elapsed_s"],
            }
    return {"target_train_error": target, "epoch": None, "seconds": None}


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


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Atomically write ``metrics.json`` (with the schema version first)."""
    write_json(path, {"schema_version": SCHEMA_VERSION, **metrics})
