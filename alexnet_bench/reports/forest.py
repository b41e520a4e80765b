"""The report's first picture: a forest plot of every paired effect the page shows.

One panel per metric (differences in points on a linear axis, ratios on a log axis), one row
per comparison: each ablation against the baseline, then any other pair of arms a claim
compares. The measured effect is the :class:`~..effects.Paired` object of the tables (the same
:class:`~.compare.Comparisons`), the paper's value and what others found are markers on the same
axis (turned around when the claim compares the baseline with the ablation), a null shows the
interval as a band with the effects it rules out, and a bound from censored seeds is a one-sided
arrow. :func:`records` is ``tables/forest.csv``; :func:`draw` draws only those records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..effects import Paired, resolution
from .compare import Comparisons
from .paper_vs_measured import ClaimRow
from .tables import AblationStats

#: the effects every ablation row of the tables shows, in panel order
PANELS = {
    "val_top1": "Δ val top-1 error (pts)",
    "val_top5": "Δ val top-5 error (pts)",
    "ttt_epoch": "time to target, epochs (ratio)",
    "ttt_seconds": "time to target, seconds (ratio)",
}
#: the other metrics a claim may compare
AXES = {
    "overfit_gap": "Δ overfit gap, val − train (pts)",
    "figure1_epochs_to_target": "Figure 1 study, epochs (ratio)",
}
MEASURED, PAPER, OTHER = "measured", "paper", "other"
COLORS = {"excludes": "#1f4e9c", "null": "#7aa6d6", "bound": "#555555", PAPER: "#c0392b"}


def _flip(x: float, ratio: bool) -> float:
    """The effect of b vs a from that of a vs b."""
    return 1.0 / x if ratio else -x


def _measured(panel: str, row: str, a: str, b: str, p: Paired) -> dict[str, Any]:
    res = resolution(p)
    excl = p.excludes_null
    axis = f"{panel} ({'ratio' if p.ratio else 'pts'})"
    return {
        "panel": panel,
        "axis": PANELS.get(panel) or AXES.get(panel, axis),
        "ratio": p.ratio,
        "row": row,
        "a": a,
        "b": b,
        "mark": MEASURED,
        "source": "",
        "value": p.value,
        "ci95_low": p.ci_low,
        "ci95_high": p.ci_high,
        "kind": p.kind,
        "n_pairs": p.n,
        "excludes_null": "n/a" if excl is None else ("yes" if excl else "no"),
        "rules_out": res.excluded if res.null else None,
        "text": p.text(),
    }


def records(
    stats: Sequence[AblationStats],
    claims: Sequence[ClaimRow],
    baseline: str,
    comparisons: Comparisons,
) -> list[dict[str, Any]]:
    """What the forest plot draws, one record per mark: the measured effects (each ablation vs
    the baseline, then the claims' other comparisons), then the paper's and others' values."""
    measured: dict[tuple[str, str], dict[str, Any]] = {}
    for a in stats:
        for metric, p in a.effects.items():
            measured[(metric, a.name)] = _measured(metric, a.name, a.name, baseline, p)
    markers: list[dict[str, Any]] = []
    for r in claims:
        a, b, p, flip = r.arm_a, r.arm_b, r.effect, False
        if a is None or b is None:  # the figure1 study: its own pair of arms
            if p is None:
                continue
            a, b = r.compared.split(" / ")
        elif a == baseline:
            a, b, flip = b, a, True
        ratio = r.kind == "ratio"
        row = a if b == baseline else f"{a} {'/' if ratio else '−'} {b}"
        key = (r.metric, row)
        if key not in measured:
            if p is not None and flip:
                p = comparisons.paired(r.metric, a, b, ratio)
            if p is None:
                continue
            measured[key] = _measured(r.metric, row, a, b, p)
        base = {**measured[key], "kind": "claim", "n_pairs": None, "rules_out": None}
        base.update(ci95_low=None, ci95_high=None, excludes_null=None)
        if r.paper_effect is not None:
            value = _flip(r.paper_effect, ratio) if flip else r.paper_effect
            markers.append(
                {**base, "mark": PAPER, "source": "paper", "value": value, "text": r.paper_value}
            )
        for o in r.others:
            if o.effect is not None:
                value = _flip(o.effect, ratio) if flip else o.effect
                markers.append(
                    {**base, "mark": OTHER, "source": o.source, "value": value, "text": o.text}
                )
    order = {m: i for i, m in enumerate(PANELS)}
    out = sorted(measured.values(), key=lambda x: (order.get(x["panel"], len(order)),))
    return out + markers


def _limits(values: list[float], ratio: bool) -> tuple[float, float]:
    if ratio:
        logs = np.log([v for v in values if v > 0] + [1.0])
        span = max(logs.max() - logs.min(), np.log(1.5))
        return float(np.exp(logs.min() - 0.12 * span)), float(np.exp(logs.max() + 0.30 * span))
    lo, hi = min([*values, 0.0]), max([*values, 0.0])
    span = max(hi - lo, 1.0)
    return lo - 0.08 * span, hi + 0.30 * span


def _panel(ax: Any, recs: list[dict[str, Any]], rows: dict[str, int]) -> None:
    ratio = bool(recs[0]["ratio"])
    null = 1.0 if ratio else 0.0
    values = [
        v for r in recs for k in ("value", "ci95_low", "ci95_high") if (v := r[k]) is not None
    ]
    for r in recs:  # room for a bound's arrow
        if r["mark"] == MEASURED and r["value"] is not None and r["kind"].endswith("bound"):
            up = r["kind"] == "lower bound"
            v = r["value"]
            values.append(v * (2.0 if up else 0.5) if ratio else v + (2.0 if up else -2.0))
    lo, hi = _limits(values, ratio)
    if ratio:
        ax.set_xscale("log")
        subs = (1.0,) if hi / lo > 100 else (1.0, 2.0, 5.0)
        ax.xaxis.set_major_locator(LogLocator(subs=subs, numticks=8))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_xlim(lo, hi)
    ax.axvline(null, color="black", lw=0.8)
    for r in recs:
        y, v = rows[r["row"]], r["value"]
        if r["mark"] != MEASURED:
            style = ("D", COLORS[PAPER], 5.5) if r["mark"] == PAPER else ("x", "black", 5.5)
            if v is not None and (not ratio or v > 0):
                ax.plot(v, y, style[0], color=style[1], ms=style[2], mew=1.4, zorder=4)
            continue
        if v is None:  # at the panel's left edge, clear of the markers
            at = ("axes fraction", "data")
            ax.annotate("n/a", (0.01, y), xycoords=at, va="center", fontsize=7, color="#888888")
        elif r["kind"] in ("lower bound", "upper bound"):
            step = 26 if r["kind"] == "lower bound" else -26
            ax.plot(v, y, "|", color=COLORS["bound"], ms=9, mew=2, zorder=3)
            ax.annotate(
                "",
                (v, y),
                xytext=(step, 0),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": COLORS["bound"], "lw": 1.6},
            )
        elif r["ci95_low"] is None:  # a single pair: no interval
            ax.plot(v, y, "o", mfc="white", mec=COLORS["excludes"], ms=6, zorder=3)
        else:
            c = COLORS["excludes"] if r["excludes_null"] == "yes" else COLORS["null"]
            if r["rules_out"] is not None:
                ax.fill_betweenx(
                    [y - 0.32, y + 0.32], r["ci95_low"], r["ci95_high"], color=c, alpha=0.35, lw=0
                )
                bound = f"×/÷ {r['rules_out']:.2f}" if ratio else f"±{r['rules_out']:.1f}"
                ax.annotate(
                    f"rules out effects beyond {bound}",
                    (r["ci95_high"], y),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=6.5,
                    color="#333333",
                )
            ax.plot([r["ci95_low"], r["ci95_high"]], [y, y], color=c, lw=2)
            ax.plot(v, y, "o", color=c, ms=5.5, zorder=3)
    ax.set_title(recs[0]["axis"], fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")


def draw(recs: Sequence[dict[str, Any]]) -> Figure | None:
    """Panels of differences on the first line, ratios on the second; rows shared."""
    if not any(r["mark"] == MEASURED for r in recs):
        return None
    rows = {row: i for i, row in enumerate(dict.fromkeys(r["row"] for r in recs))}
    panels: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        panels.setdefault(r["panel"], []).append(r)
    lines = [
        [p for p, rs in panels.items() if bool(rs[0]["ratio"]) == ratio] for ratio in (False, True)
    ]
    lines = [line for line in lines if line]
    ncols = max(len(line) for line in lines)
    height = len(lines) * (0.25 * len(rows) + 0.75) + 0.45
    fig = Figure(figsize=(10.8, height), layout="constrained")
    axes = fig.subplots(len(lines), ncols, sharey=True, squeeze=False)
    for line, line_axes in zip(lines, axes, strict=True):
        for ax, panel in zip(line_axes, [*line, *[None] * (ncols - len(line))], strict=True):
            if panel is None:
                ax.set_visible(False)
            else:
                _panel(ax, panels[panel], rows)
    axes[0][0].set_yticks(list(rows.values()), list(rows))
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    blue, grey = COLORS["excludes"], COLORS["bound"]
    handles = [
        Line2D([], [], color=blue, marker="o", lw=2, label="paired effect, 95% CI"),
        Patch(color=COLORS["null"], alpha=0.5, label="CI includes no effect (band)"),
        Line2D([], [], color=blue, marker="o", mfc="white", ls="", label="one pair: no CI"),
        Line2D([], [], color=grey, marker=">", lw=1.6, label="bound (censored seeds)"),
        Line2D([], [], color=COLORS[PAPER], marker="D", ls="", label="the paper"),
        Line2D([], [], color="black", marker="x", ls="", label="others found"),
    ]
    fig.legend(
        handles=handles, loc="outside upper center", ncols=len(handles), frameon=False, fontsize=8
    )
    return fig
