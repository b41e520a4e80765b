"""``alexnet-bench compare BASE NEW``: one version's results against another's.

Not to be confused with :mod:`alexnet_bench.reports.compare`, which compares the arms of one
study. Here the same cells (preset, ablation, seed) of two results directories are paired and
judged, per cell, per ablation and over all cells, on

* speed (:mod:`.speed`): NEW/BASE ratios with 95% intervals and a verdict at a threshold;
* numerics (:mod:`.numerics`): bit-identical curves, within seed noise (an equivalence test)
  or different;
* the settings and environment that differ (:mod:`.settings`, :mod:`.environment`).

:mod:`.pairing` reads and pairs the cells, :mod:`.comparison` assembles the verdicts,
:mod:`.render` and :mod:`.curves` write the terminal table, Markdown, HTML and figure.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Comparison", "compare"]


def __getattr__(name: str) -> Any:
    """``compare`` and ``Comparison`` on first use: registering the subcommand (every
    ``alexnet-bench`` command, training jobs included) does not load the comparison."""
    if name in __all__:
        from . import comparison

        return getattr(comparison, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
