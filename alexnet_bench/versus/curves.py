"""The two sides' learning curves overlaid: one row per ablation, training and validation
top-1 error against the epoch, one line per seed (BASE solid, NEW dashed). Rendered with the
study report's style (``reports.figures``), deterministically."""

from __future__ import annotations

import io

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..collect import Run
from ..reports.figures import DPI, PNG_META, RC
from .comparison import Comparison
from .pairing import ablations

BASE_STYLE = {"color": "#555555", "linestyle": "-"}
NEW_STYLE = {"color": "#1f5f99", "linestyle": "--"}
PANELS = (
    ("train_top1_error", "training top-1 error (%, running)"),
    ("val_top1_error", "validation top-1 error (%)"),
)


def _plot(ax: Axes, run: Run | None, column: str, style: dict[str, str]) -> None:
    h = run.history if run is not None else None
    if h is not None and len(h):
        ax.plot(h.epoch, np.asarray(h.column(column)) * 100.0, lw=1.1, alpha=0.85, **style)


def learning_curves(c: Comparison) -> bytes | None:
    """PNG of the overlaid curves (None when no pair has a history)."""
    trained = [p for p in (row.pair for row in c.cells) if p.trained]
    names = ablations(trained)
    if not names:
        return None
    verdicts = {g.label: g.numerics.verdict for g in c.groups}
    with mpl.rc_context(RC):
        fig = Figure(figsize=(9.0, 2.5 * len(names) + 0.6), layout="constrained")
        axes = fig.subplots(len(names), len(PANELS), squeeze=False, sharex="row")
        for row, name in zip(axes, names, strict=True):
            for ax, (column, label) in zip(row, PANELS, strict=True):
                for pair in (p for p in trained if p.key.ablation == name):
                    _plot(ax, pair.base, column, BASE_STYLE)
                    _plot(ax, pair.new, column, NEW_STYLE)
                ax.set_title(f"{name}: {verdicts.get(name, '')}", loc="left")
                ax.set_ylabel(label)
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(True, alpha=0.3)
        handles = [Line2D([], [], lw=1.5, **BASE_STYLE), Line2D([], [], lw=1.5, **NEW_STYLE)]
        fig.legend(
            handles,
            [f"BASE {c.base.path}", f"NEW {c.new.path}"],
            loc="outside upper center",
            ncols=2,
            frameon=False,
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_META, facecolor="white")
    return buf.getvalue()
