"""The comparison of two results directories: pairs, verdicts per cell, per ablation and over
all cells, the settings and environment that differ, and the exit status.

Verdicts at the ablation level (and over all cells, when there are several ablations) decide
the exit status: 1 when any is a regression (a gated speed measure ``slower``, or numerics
``different``), else 0. Cell rows show each pair's within-run speed interval and whether its
curves are identical; with several seeds they are detail, not a verdict (their interval omits
the run-to-run spread).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..collect import Run
from .environment import EnvField, compare_environment
from .numerics import (
    DIFFERENT,
    CellNumerics,
    GroupNumerics,
    Margin,
    ResolvedMargin,
    cell_numerics,
    group_numerics,
    resolve_margin,
)
from .pairing import Pair, Side, ablations, load_side, pair_cells
from .settings import SettingDiff, setting_diffs
from .speed import SLOWER, SpeedRatio, compare_speed

ALL = "all cells"


@dataclass(frozen=True)
class GroupRow:
    """An ablation (or all cells): its pairs' speed ratios and numerics verdict."""

    label: str
    pairs: tuple[Pair, ...]
    speed: tuple[SpeedRatio, ...]
    numerics: GroupNumerics

    @property
    def seeds(self) -> str:
        """``3 of 4`` trained pairs of the group's cells."""
        return f"{sum(p.trained for p in self.pairs)} of {len(self.pairs)}"

    @property
    def headline(self) -> SpeedRatio | None:
        """The training images/s ratio (the speed verdict shown first)."""
        return next((s for s in self.speed if s.metric.name == "throughput"), None)

    @property
    def regressions(self) -> list[str]:
        found = [
            f"{self.label}: {s.metric.label} slower"
            for s in self.speed
            if s.metric.gates and s.verdict == SLOWER
        ]
        if self.numerics.verdict == DIFFERENT:
            found.append(f"{self.label}: numerics different ({self.numerics.reason})")
        return found


@dataclass(frozen=True)
class CellRow:
    """One pair: its within-run speed ratios, numerics and why it cannot be compared."""

    pair: Pair
    speed: tuple[SpeedRatio, ...]
    numerics: CellNumerics | None


@dataclass
class Comparison:
    base: Side
    new: Side
    threshold: float  # fraction, 0.05 = 5%
    margin: ResolvedMargin
    groups: list[GroupRow]
    cells: list[CellRow]
    settings: list[SettingDiff]
    environment: list[EnvField]
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [r for g in self.groups for r in g.regressions]

    @property
    def exit_status(self) -> int:
        """1 when any ablation-level (or all-cells) verdict is a regression, else 0."""
        return 1 if self.regressions else 0

    @property
    def result_settings(self) -> list[SettingDiff]:
        return [s for s in self.settings if s.result_relevant]


def _warnings(pairs: list[Pair]) -> list[str]:
    """One line per distinct problem, naming every cell that has it (a study's skipped
    two-GPU cells share one line, not one each)."""
    cells: dict[str, list[str]] = {}
    for p in pairs:
        if p.problem:
            text = p.problem
        elif p.base and p.new and p.base.status != p.new.status:
            text = f"BASE {p.base.status}, NEW {p.new.status}"
        else:
            continue
        cells.setdefault(text, []).append(p.key.label)
    return [
        f"{', '.join(labels)}{f' ({len(labels)} cells)' if len(labels) > 1 else ''}: {text}"
        for text, labels in cells.items()
    ]


def _group(label: str, pairs: list[Pair], threshold: float, margin: ResolvedMargin) -> GroupRow:
    return GroupRow(
        label, tuple(pairs), tuple(compare_speed(pairs, threshold)), group_numerics(pairs, margin)
    )


def _runs(pairs: list[Pair], role: str) -> list[Run]:
    """The paired cells' runs of one side."""
    runs = (p.base if role == "BASE" else p.new for p in pairs)
    return [r for r in runs if r is not None]


def compare(base_path: Path, new_path: Path, threshold: float, margin: Margin) -> Comparison:
    """Read, pair and judge two results directories (or cells).

    Raises :class:`~alexnet_bench.errors.ResultsError` (one line) for a missing or empty side,
    different presets, or sides without a common cell.
    """
    base, new = load_side(base_path, "BASE"), load_side(new_path, "NEW")
    pairs = pair_cells(base, new)
    resolved = resolve_margin(margin, _runs(pairs, "BASE"))
    names = ablations(pairs)
    groups = [
        _group(a, [p for p in pairs if p.key.ablation == a], threshold, resolved) for a in names
    ]
    if len(names) > 1:
        groups.append(_group(ALL, pairs, threshold, resolved))
    cells = [CellRow(p, tuple(compare_speed([p], threshold)), cell_numerics(p)) for p in pairs]
    return Comparison(
        base=base,
        new=new,
        threshold=threshold,
        margin=resolved,
        groups=groups,
        cells=cells,
        settings=setting_diffs(pairs),
        environment=compare_environment(_runs(pairs, "BASE"), _runs(pairs, "NEW")),
        warnings=_warnings(pairs),
    )
