"""Every comparison of two arms the report shows, computed once through :mod:`..effects`.

The accuracy and speed tables, the paper-vs-measured table, the findings summary and the CSV
files all ask :class:`Comparisons` for an effect; the same (metric, arms, kind) gets the same
:class:`~..effects.Paired` object, so no two places on the page can disagree. Only runs that
learned (status ``completed``) enter.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from ..collect import CENSORED_VALUES, Run, run_measure, run_value
from ..effects import Paired, Value, Welch, paired, welch


class Comparisons:
    """Paired (primary) and Welch (secondary) effects between the arms of one study."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self._completed: dict[str, list[Run]] = {}
        for r in runs:
            if r.completed:
                self._completed.setdefault(r.ablation, []).append(r)
        self.paired = cache(self._paired)  # type: ignore[method-assign]
        self.welch = cache(self._welch)  # type: ignore[method-assign]

    def completed(self, arm: str) -> list[Run]:
        return self._completed.get(arm, [])

    def values(self, arm: str, metric: str) -> dict[int, Value]:
        """Per seed: the metric of the arm's completed run (an interval when censored)."""
        return {r.seed: run_measure(r, metric) for r in self.completed(arm) if r.seed is not None}

    def _paired(self, metric: str, a: str, b: str, ratio: bool) -> Paired:
        """``a`` vs ``b``: per-seed ``a - b`` (``ratio``: ``a / b``), the primary statistic."""
        return paired(self.values(a, metric), self.values(b, metric), ratio=ratio)

    def _welch(self, metric: str, a: str, b: str, ratio: bool) -> Welch:
        """The unpaired comparison of the runs' exact values (censored runs left out)."""
        return welch(
            [run_value(r, metric) for r in self.completed(a)],
            [run_value(r, metric) for r in self.completed(b)],
            ratio=ratio,
        )

    def vs_baseline(self, arm: str, baseline: str) -> dict[str, Paired]:
        """The four effects the ablation tables show for ``arm`` against the baseline."""
        return {
            "val_top1": self.paired("val_top1", arm, baseline, False),
            "val_top5": self.paired("val_top5", arm, baseline, False),
            "ttt_epoch": self.paired("ttt_epoch", arm, baseline, True),
            "ttt_seconds": self.paired("ttt_seconds", arm, baseline, True),
        }

    @staticmethod
    def censorable(metric: str) -> bool:
        return metric in CENSORED_VALUES
