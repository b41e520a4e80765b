"""Every comparison of two arms the report shows, computed once through :mod:`..effects`.

The accuracy and speed tables, the paper-vs-measured table, the findings summary and the CSV
files all ask :class:`Comparisons` for an effect; the same (metric, arms, kind) gets the same
:class:`~..effects.Paired` object, so no two places on the page can disagree.

Which runs enter (:meth:`Comparisons.entering`):

* **Time to target** (``ttt_epoch``, ``ttt_seconds``): every run with a trained curve, i.e.
  ``completed`` and also ``collapsed`` and ``diverged``. A run that never learned is not dropped:
  its curve never fell below the target, so its crossing is right-censored at its last epoch
  (a collapsed run: the last epoch it trained; a diverged run: its last epoch with a finite loss,
  the one before the epoch whose loss became non-finite; in seconds, the training time up to
  that epoch), and the paired ratio becomes a bound. An arm that fails 2 seeds in 5 therefore
  cannot look as fast as one that never fails. (A diverged run whose curve had crossed the
  target before it diverged keeps that measured crossing: it did reach the target.) Welch's
  unpaired version, which needs exact values, is not given when a run is censored.
* **Everything else** (accuracy, overfitting gap, throughput, ...): ``completed`` runs only;
  :meth:`Comparisons.left_out` says, per arm, which seeds are not in the statistic and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from ..collect import CENSORED_VALUES, TRAINED_STATUSES, Run, run_measure, run_value
from ..effects import Paired, Value, Welch, paired, value_bounds, welch

NO_VALUE = "no value recorded"


@dataclass(frozen=True)
class LeftOut:
    """The seeds of one arm that a statistic leaves out, each with why."""

    arm: str
    total: int  # the arm's cells (with a seed)
    why: dict[int, str] = field(default_factory=dict)  # seed -> reason

    @property
    def count(self) -> int:
        return len(self.why)

    def text(self) -> str:
        """``2 of 5 tanh seeds left out: collapsed (seeds 1, 3), failed (seed 4)``; "" if none."""
        if not self.why:
            return ""
        groups: dict[str, list[int]] = {}
        for seed, why in sorted(self.why.items()):
            groups.setdefault(why, []).append(seed)
        parts = [
            f"{why} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
            for why, seeds in groups.items()
        ]
        noun = "seed" if self.total == 1 else "seeds"
        return f"{self.count} of {self.total} {self.arm} {noun} left out: {', '.join(parts)}"


def left_out_text(parts: Sequence[LeftOut]) -> str:
    """The non-empty :meth:`LeftOut.text` s joined, or ``none``."""
    return "; ".join(t for p in parts if (t := p.text())) or "none"


class Comparisons:
    """Paired (primary) and Welch (secondary) effects between the arms of one study."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self._runs: dict[str, list[Run]] = {}
        for r in runs:
            self._runs.setdefault(r.ablation, []).append(r)
        self.paired = cache(self._paired)  # type: ignore[method-assign]
        self.welch = cache(self._welch)  # type: ignore[method-assign]

    def runs(self, arm: str) -> list[Run]:
        """Every cell of the arm, whatever its status."""
        return self._runs.get(arm, [])

    def completed(self, arm: str) -> list[Run]:
        return [r for r in self.runs(arm) if r.completed]

    @staticmethod
    def censorable(metric: str) -> bool:
        return metric in CENSORED_VALUES

    @classmethod
    def statuses(cls, metric: str) -> tuple[str, ...]:
        """The statuses whose runs enter ``metric``'s comparisons (see the module docstring)."""
        return TRAINED_STATUSES if cls.censorable(metric) else ("completed",)

    def entering(self, arm: str, metric: str) -> list[Run]:
        """The arm's runs that enter ``metric``'s comparisons."""
        statuses = self.statuses(metric)
        return [r for r in self.runs(arm) if r.status in statuses]

    def values(self, arm: str, metric: str) -> dict[int, Value]:
        """Per seed: the metric of the arm's entering run (an interval when censored)."""
        return {
            r.seed: run_measure(r, metric) for r in self.entering(arm, metric) if r.seed is not None
        }

    def censored(self, arm: str, metric: str) -> list[int]:
        """The arm's seeds whose value for ``metric`` is only an interval (censored)."""
        out = []
        for seed, v in self.values(arm, metric).items():
            bounds = value_bounds(v)
            if bounds is not None and bounds[0] != bounds[1]:
                out.append(seed)
        return sorted(out)

    def _paired(self, metric: str, a: str, b: str, ratio: bool) -> Paired:
        """``a`` vs ``b``: per-seed ``a - b`` (``ratio``: ``a / b``), the primary statistic."""
        return paired(self.values(a, metric), self.values(b, metric), ratio=ratio)

    def _welch(self, metric: str, a: str, b: str, ratio: bool) -> Welch:
        """The unpaired comparison of the runs' exact values. With a censored run in either arm
        there is none (``value`` None): dropping the runs that never reached the target would
        make that arm look faster, the bias the paired bound avoids."""
        xs = [run_value(r, metric) for r in self.entering(a, metric)]
        ys = [run_value(r, metric) for r in self.entering(b, metric)]
        if self.censored(a, metric) or self.censored(b, metric):
            n_a, n_b = (sum(v is not None for v in vs) for vs in (xs, ys))
            return Welch(ratio, n_a, n_b, None)
        return welch(xs, ys, ratio=ratio)

    def vs_baseline(self, arm: str, baseline: str) -> dict[str, Paired]:
        """The four effects the ablation tables show for ``arm`` against the baseline."""
        return {
            "val_top1": self.paired("val_top1", arm, baseline, False),
            "val_top5": self.paired("val_top5", arm, baseline, False),
            "ttt_epoch": self.paired("ttt_epoch", arm, baseline, True),
            "ttt_seconds": self.paired("ttt_seconds", arm, baseline, True),
        }

    # -- what a statistic leaves out -----------------------------------------------------------
    def _has_value(self, run: Run, metric: str, ratio: bool) -> bool:
        bounds = value_bounds(run_measure(run, metric))
        return bounds is not None and (not ratio or bounds[1] > 0)

    def _why(self, run: Run, metric: str, ratio: bool) -> str | None:
        """Why the run has no value for the statistic (None: it has one): its status, or
        ``no value recorded``."""
        if run.status not in self.statuses(metric):
            return run.status
        return None if self._has_value(run, metric, ratio) else NO_VALUE

    def left_out_of_arm(self, arm: str, metric: str, ratio: bool = False) -> LeftOut:
        """The arm's seeds without a value for ``metric`` (a mean over the arm), and why."""
        why: dict[int, str] = {}
        seeded = [r for r in self.runs(arm) if r.seed is not None]
        for r in seeded:
            reason = self._why(r, metric, ratio)
            if r.seed is not None and reason is not None:
                why[r.seed] = reason
        return LeftOut(arm, len(seeded), why)

    def left_out(self, metric: str, a: str, b: str, ratio: bool) -> tuple[LeftOut, LeftOut]:
        """Per arm, the seeds the paired ``a`` vs ``b`` statistic leaves out, and why: the run's
        own status (or no value), or that the other arm's run of that seed has none."""
        kept = set(self.paired(metric, a, b, ratio).seeds)
        out = []
        for arm, other in ((a, b), (b, a)):
            partner = {r.seed: r for r in self.runs(other) if r.seed is not None}
            seeded = [r for r in self.runs(arm) if r.seed is not None]
            why: dict[int, str] = {}
            for r in seeded:
                if r.seed is None or r.seed in kept:
                    continue
                own = self._why(r, metric, ratio)
                if own is not None:
                    why[r.seed] = own
                elif (p := partner.get(r.seed)) is None:
                    why[r.seed] = f"no {other} run"
                else:
                    theirs = self._why(p, metric, ratio)
                    state = "has no value" if theirs in (None, NO_VALUE) else theirs
                    why[r.seed] = f"its {other} run {state}"
            out.append(LeftOut(arm, len(seeded), why))
        return out[0], out[1]
