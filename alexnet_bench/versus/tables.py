"""The comparison's tables as DataFrames of display text, shared by the terminal, Markdown and
HTML views (so no two views can disagree)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..effects import fmt_interval
from ..numbers import fmt_number
from .comparison import Comparison
from .numerics import IDENTICAL
from .speed import INSUFFICIENT, SpeedRatio, pct

NA = "n/a"
GOOD, BAD = ("faster", "unchanged", "bit-identical", "within noise"), ("slower", "different")


def verdict_class(text: str) -> str:
    """The report's badge class of a verdict (green, red, grey)."""
    return "b-yes" if text in GOOD else "b-no" if text in BAD else "b-na"


@dataclass
class View:
    """A titled table: its frame, which columns are numbers and which hold verdicts."""

    title: str
    frame: pd.DataFrame
    numeric: set[str] = field(default_factory=set)
    verdicts: set[str] = field(default_factory=set)
    note: str = ""


def sig(x: float | None, digits: int = 3) -> str:
    """``digits`` significant digits (no exponent), n/a for None."""
    if x is None or not math.isfinite(x):
        return NA
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def ratio_text(r: float | None) -> str:
    return NA if r is None else f"{r:.3f}×"


def interval_text(interval: tuple[float | None, float | None] | None, signed: bool = False) -> str:
    """``[0.645, 0.842]`` (ratios) or ``[−1.77, +1.27]`` (signed differences); "" without one."""
    if interval is None:
        return ""
    return fmt_interval(*interval, ratio=not signed, digits=2 if signed else 3).lstrip()


def speed_text(s: SpeedRatio | None) -> str:
    """``0.737× [0.645, 0.842]``."""
    if s is None:
        return NA
    return f"{ratio_text(s.ratio)} {interval_text((s.ci_low, s.ci_high))}".strip()


def pts(x: float | None) -> str:
    return NA if x is None else fmt_number(x, 2, signed=True)


def summary(c: Comparison) -> View:
    """One row per ablation (and over all cells): the verdicts that decide the exit status."""
    rows = []
    for g in c.groups:
        head, n = g.headline, g.numerics
        delta = f"{pts(n.delta)} {interval_text(n.ci95, signed=True)}".strip()
        rows.append(
            {
                "Ablation": g.label,
                "Pairs": g.seeds,
                "images/s NEW/BASE [95%]": speed_text(head),
                "Interval over": head.over if head else "",
                "Speed": head.verdict if head else INSUFFICIENT,
                "Δ val top-1 NEW−BASE, pts [95%]": delta,
                "Numerics": n.verdict,
                "Numerics: why": n.reason,
            }
        )
    note = (
        f"Speed: training images/s, threshold ±{pct(c.threshold)}. Numerics: margin "
        f"{c.margin.how}. These rows decide the exit status."
    )
    return View("Verdicts", pd.DataFrame(rows), {"Pairs"}, {"Speed", "Numerics"}, note)


def speed(c: Comparison) -> View:
    """Every speed measure of every ablation (and all cells)."""
    rows = []
    for g in c.groups:
        for s in g.speed:
            unit = f" ({s.metric.unit})" if s.metric.unit else ""
            rows.append(
                {
                    "Ablation": g.label,
                    "Measure": s.metric.label + unit,
                    "BASE": sig(s.base),
                    "NEW": sig(s.new),
                    "NEW/BASE [95%]": speed_text(s),
                    "Interval over": s.over,
                    "Verdict": s.verdict,
                    "Why": s.reason + ("" if s.metric.gates else " (not gated)"),
                }
            )
    note = (
        "BASE and NEW: the median over each side's runs. A ratio is NEW/BASE of the measure "
        "itself (a step time above 1 is slower). MFU is shown, not gated: it also moves with "
        "the peak each study measures."
    )
    return View("Speed", pd.DataFrame(rows), {"BASE", "NEW"}, {"Verdict"}, note)


def cells(c: Comparison) -> View:
    """One row per paired cell: statuses, within-run speed, curves and final errors."""
    rows = []
    for row in c.cells:
        p = row.pair
        head = next((s for s in row.speed if s.metric.name == "throughput"), None)
        num = row.numerics
        rows.append(
            {
                "Cell": p.key.label,
                "BASE status": p.base.status if p.base else "missing",
                "NEW status": p.new.status if p.new else "missing",
                "images/s BASE": sig(head.base) if head else NA,
                "images/s NEW": sig(head.new) if head else NA,
                "NEW/BASE [95%, over epochs]": speed_text(head) if head else NA,
                "Speed": head.verdict if head else INSUFFICIENT,
                "Curves": num.text if num else INSUFFICIENT,
                "val top-1 BASE": sig(num.base) if num else NA,
                "val top-1 NEW": sig(num.new) if num else NA,
                "Δ pts": pts(num.delta) if num else NA,
            }
        )
    note = (
        "Within one run the interval is over its epochs from the second on (each epoch's "
        "throughput a batch mean, paired by epoch number); it omits the run-to-run spread, so "
        "with several seeds these rows are detail and the ablation rows decide."
    )
    numeric = {"images/s BASE", "images/s NEW", "val top-1 BASE", "val top-1 NEW", "Δ pts"}
    return View("Cells", pd.DataFrame(rows), numeric, {"Speed", "Curves"}, note)


def settings(c: Comparison) -> View:
    """The settings that differ within pairs (result-relevant first)."""
    kinds = {"result": "result", "data": "result (data read)", "provenance": "provenance"}
    rows = [
        {"Setting": s.key, "Kind": kinds[s.kind], "BASE": s.base, "NEW": s.new, "Cells": s.cells}
        for s in c.settings
    ]
    note = (
        "result: part of the run's identity (config hash); a change reruns a cell. provenance: "
        "recorded, never changes a result (e.g. data.root)."
    )
    frame = pd.DataFrame(rows, columns=["Setting", "Kind", "BASE", "NEW", "Cells"])
    return View("Settings that differ", frame, {"Cells"}, set(), note)


def environment(c: Comparison, only_differing: bool = False) -> View:
    """The environment of both sides (distinct values over each side's runs)."""
    rows = [
        {"Field": e.label, "BASE": e.base, "NEW": e.new, "Differs": "yes" if e.differs else ""}
        for e in c.environment
        if e.differs or not only_differing
    ]
    frame = pd.DataFrame(rows, columns=["Field", "BASE", "NEW", "Differs"])
    return View("Environment", frame, set(), set())


def is_identical(c: Comparison) -> bool:
    """Every group bit-identical (for the page's headline)."""
    return all(g.numerics.verdict == IDENTICAL for g in c.groups)
