"""Read two results directories (whole studies or single cells) and pair their cells.

A side is a study directory (``results/default``: every ``<ablation>/seed<N>/metrics.json``
under it) or one cell (a directory holding ``metrics.json``). Cells are paired by (ablation,
seed) once both sides are known to hold the same preset; two single cells are paired as given.
Runs are read through :func:`~alexnet_bench.collect.load_run` (the typed record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..collect import SEED_DIR, TRAINED_STATUSES, Run, discover, load_run
from ..errors import ResultsError

#: how the command line names each side
ROLES = ("BASE", "NEW")


class CellKey(NamedTuple):
    """Where a cell sits in its study."""

    ablation: str
    seed: int | None

    @property
    def label(self) -> str:
        return f"{self.ablation}/seed{self.seed}" if self.seed is not None else self.ablation


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its runs by cell."""

    role: str  # BASE or NEW
    path: Path
    single_cell: bool
    runs: dict[CellKey, Run]

    @property
    def presets(self) -> set[str]:
        """The presets the runs' labels name (unlabelled runs name none)."""
        return {p for r in self.runs.values() if (p := r.record.run.preset) is not None}

    @property
    def preset(self) -> str | None:
        presets = sorted(self.presets)
        return presets[0] if len(presets) == 1 else None


@dataclass(frozen=True)
class Pair:
    """A cell of the comparison: BASE's run and NEW's (either may be absent)."""

    key: CellKey
    base: Run | None
    new: Run | None

    @property
    def trained(self) -> bool:
        """Both runs trained (completed, collapsed or diverged): speed can be compared."""
        return all(r is not None and r.status in TRAINED_STATUSES for r in (self.base, self.new))

    @property
    def problem(self) -> str | None:
        """Why this cell cannot be compared (None when it can)."""
        if self.trained:
            return None
        if (
            self.base is not None
            and self.new is not None
            and (self.base.status, self.base.reason) == (self.new.status, self.new.reason)
        ):
            why = f" ({self.base.reason})" if self.base.reason else ""
            return f"{ROLES[0]} and {ROLES[1]}: {self.base.status}{why}"
        parts = []
        for role, run in zip(ROLES, (self.base, self.new), strict=True):
            if run is None:
                parts.append(f"{role}: no such cell")
            elif run.status not in TRAINED_STATUSES:
                why = f" ({run.reason})" if run.reason else ""
                parts.append(f"{role}: {run.status}{why}")
        return "; ".join(parts)


def _cell_dir(path: Path) -> bool:
    return (path / "metrics.json").is_file() or SEED_DIR.match(path.name) is not None


def load_side(path: Path, role: str) -> Side:
    """The runs of a results directory or of one cell; a one-line error when there are none."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(
            f"{role} '{path}' does not exist; pass a results directory (e.g. results/default) "
            "or one cell (e.g. results/default/tanh/seed0)"
        )
    if not path.is_dir():
        raise ResultsError(
            f"{role} '{path}' is a file; pass its directory (a results directory or one cell)"
        )
    if _cell_dir(path):
        run = load_run(path / "metrics.json")
        return Side(role, path, True, {CellKey(run.ablation, run.seed): run})
    runs = {}
    for metrics in discover(path):
        run = load_run(metrics)
        runs[CellKey(run.ablation, run.seed)] = run
    if not runs:
        raise ResultsError(
            f"{role} '{path}' holds no run (no <ablation>/seed<N>/metrics.json, no metrics.json); "
            "pass a results directory such as results/default or a cell directory"
        )
    return Side(role, path, False, runs)


def _preset_text(side: Side) -> str:
    return ", ".join(sorted(side.presets)) or "(none)"


def check_presets(base: Side, new: Side) -> None:
    """Both sides hold one and the same preset (where their runs are labelled)."""
    for side in (base, new):
        if len(side.presets) > 1:
            raise ResultsError(
                f"{side.role} '{side.path}' mixes presets ({_preset_text(side)}); pass one "
                "preset's results directory, e.g. results/default"
            )
    if base.presets and new.presets and base.presets != new.presets:
        raise ResultsError(
            f"BASE holds preset '{_preset_text(base)}' but NEW holds preset "
            f"'{_preset_text(new)}'; compare results of the same preset (e.g. results/default "
            "from two versions)"
        )


def _listing(keys: Iterable[CellKey], limit: int = 4) -> str:
    labels = sorted(k.label for k in keys)
    more = f", ... ({len(labels)} cells)" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def pair_cells(base: Side, new: Side) -> list[Pair]:
    """The cells of both sides, paired by (ablation, seed); two single cells pair as given."""
    check_presets(base, new)
    if base.single_cell and new.single_cell:
        ((bk, br),), ((nk, nr),) = base.runs.items(), new.runs.items()
        key = bk if bk == nk else CellKey(f"{bk.label} vs {nk.label}", None)
        return [Pair(key, br, nr)]
    if not set(base.runs) & set(new.runs):
        raise ResultsError(
            f"no cell of BASE ({_listing(base.runs)}) has a counterpart in NEW "
            f"({_listing(new.runs)}); compare the same cells of the same study"
        )
    keys = set(new.runs) if new.single_cell else set(base.runs) | set(new.runs)
    if base.single_cell:
        keys = set(base.runs)
    order = sorted(keys, key=lambda k: (k.ablation, -1 if k.seed is None else k.seed))
    return [Pair(k, base.runs.get(k), new.runs.get(k)) for k in order]


def ablations(pairs: Iterable[Pair], baseline: str = "baseline") -> list[str]:
    """The ablations of the pairs, the baseline first, then in name order."""
    names = sorted({p.key.ablation for p in pairs})
    return sorted(names, key=lambda a: (a != baseline, a))


def results_fingerprint(*paths: Path) -> str:
    """sha256 over every ``metrics.json`` and ``history.csv`` under ``paths`` (names and
    contents): it changes when any result does (the workflow reruns its comparison then)."""
    digest = hashlib.sha256()
    for root in map(Path, paths):
        files = sorted(root.rglob("metrics.json")) + sorted(root.rglob("history.csv"))
        digest.update(str(root).encode())
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()
