"""Numbers as the package reads and shows them: one finite-float rule and one formatter each
for numbers and durations (no dependencies: every layer may import it)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

MISSING = "–"


def as_float(value: Any) -> float | None:
    """A finite float, or None (for None, NaN, inf, booleans and non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def finite(values: Iterable[Any]) -> list[float]:
    """The finite floats among ``values`` (:func:`as_float`'s rule)."""
    return [f for f in map(as_float, values) if f is not None]


def median_of(values: Iterable[Any]) -> float | None:
    """The median of the finite values (:func:`as_float`'s rule), None when there are none."""
    xs = finite(values)
    return statistics.median(xs) if xs else None


def fmt_number(x: Any, digits: int = 2, signed: bool = False) -> str:
    """``+1.25`` / ``1.25`` with U+2212 for minus; ``–`` for a missing or non-finite value."""
    f = as_float(x)
    if f is None:
        return MISSING
    text = f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"
    return text.replace("-", "−")


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``3m26s``, ``12h3m``; ``n/a`` for a missing value."""
    f = as_float(seconds)
    if f is None:
        return "n/a"
    s = max(0, round(f))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60}m"
