"""The history.csv contract: one row per epoch, the columns of :class:`History`, in that order.

The writer (:func:`write_history`, called by the trainer) refuses a row with a key outside the
contract, so a new per-epoch number cannot be dropped silently; the reader (:func:`read_history`,
used by ``collect``) returns a :class:`History` with one float array per column (a column an
older file lacks is all NaN).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .io import write_text

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class History:
    """A run's per-epoch history, one float array per column (NaN where a row has no value)."""

    epoch: np.ndarray
    train_loss: np.ndarray  # mean over the epoch's batches; NaN once the run diverged
    train_top1_error: np.ndarray  # running error over the epoch's (augmented) batches
    val_loss: np.ndarray
    val_top1_error: np.ndarray
    val_top5_error: np.ndarray
    lr: np.ndarray
    epoch_time_s: np.ndarray
    elapsed_s: np.ndarray  # cumulative training seconds at the epoch's end
    images_per_s: np.ndarray
    train_clean_loss: np.ndarray  # eval-mode pass over fixed training images (when measured)
    train_clean_top1_error: np.ndarray

    def __len__(self) -> int:
        return len(self.epoch)

    def column(self, name: str) -> np.ndarray:
        """A column by name (the record names the one its time to target reads)."""
        if name not in COLUMNS:
            raise KeyError(f"history.csv has no column {name!r} in its contract")
        return getattr(self, name)

    @property
    def finite_epochs(self) -> int:
        """Leading epochs with a finite training loss (a diverged run's later rows do not count)."""
        n = 0
        for loss in self.train_loss:
            if not math.isfinite(float(loss)):
                break
            n += 1
        return n

    def finite_values(self, name: str) -> list[float]:
        """``name`` over the leading epochs with a finite loss, up to its first non-finite value."""
        out: list[float] = []
        for value in self.column(name)[: self.finite_epochs]:
            if not math.isfinite(float(value)):
                break
            out.append(float(value))
        return out

    def last(self, name: str) -> float | None:
        """The last finite value of ``name``."""
        values = [float(v) for v in self.column(name) if math.isfinite(float(v))]
        return values[-1] if values else None


#: the contract: column names in file order
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(History))


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Atomically write the per-epoch rows as CSV (blank for a column a row lacks).

    A key outside :data:`COLUMNS` is a bug of the writer: it raises instead of being dropped.
    """
    unknown = sorted({k for row in history for k in row} - set(COLUMNS))
    if unknown:
        raise ValueError(f"history rows hold {unknown}, not in the history contract (history.py)")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in COLUMNS})
    write_text(path, buf.getvalue())


def read_csv_noted(path: Path, notes: list[str]) -> pd.DataFrame | None:
    """The CSV file at ``path``; None when absent or unreadable (the reason goes to ``notes``)."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        notes.append(f"{path.name} unreadable ({type(exc).__name__}: {str(exc).strip()[:120]})")
        return None


def read_history(path: Path, notes: list[str]) -> History | None:
    """The history at ``path``; None when absent or unreadable (the reason goes to ``notes``)."""
    import numpy as np
    import pandas as pd

    df = read_csv_noted(path, notes)
    if df is None:
        return None
    extra = sorted(set(df.columns) - set(COLUMNS))
    if extra:
        notes.append(f"{path.name}: column(s) {', '.join(extra)} not in the contract (ignored)")
    arrays = {}
    for name in COLUMNS:
        values = (
            pd.to_numeric(df[name], errors="coerce")
            if name in df
            else pd.Series(np.nan, index=df.index)
        )
        array = np.array(values.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        array[~np.isfinite(array)] = np.nan
        arrays[name] = array
    return History(**arrays)
