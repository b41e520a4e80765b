"""Read run results: the reading side of the record contract, the one place that knows file
layouts and metrics.json keys.

A run directory holds ``metrics.json`` (typed into a :class:`~.runrecord.RunRecord`),
``history.csv`` (a :class:`~.history.History`) and, with NVML telemetry, ``gpu.csv``.
Everything is read defensively: a field may be missing or null, a ``metrics.json`` may be
truncated, an expected cell may not exist. Such cells become :class:`Run` objects with status
``missing`` or ``unparseable``; they never raise.

Every per-run number a view shows has a name (:data:`RUN_VALUE_ACCESSORS`, :func:`run_value`),
and every fallback between sources (the record's own value, its config, an older record's
history) is decided once, here. Time to target is recomputed from the history with
:func:`~.effects.time_to_target`, the definition every study shares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .effects import NO_DATA, Crossing, time_to_target
from .history import History, read_csv_noted, read_history
from .numbers import as_float
from .runrecord import RunRecord, from_metrics

if TYPE_CHECKING:
    import pandas as pd

KNOWN_STATUSES = ("completed", "collapsed", "diverged", "failed", "skipped")
#: every status a Run can have, in the order the report lists them
ALL_STATUSES = (*KNOWN_STATUSES, "missing", "unparseable", "unknown")
#: statuses whose history is a trained curve (time to target is defined)
TRAINED_STATUSES = ("completed", "collapsed", "diverged")
SEED_DIR = re.compile(r"^seed(\d+)$")
#: the history column time to target reads when an (older) record does not say
DEFAULT_TARGET_COLUMN = "train_top1_error"


@dataclass
class Run:
    """One expected or discovered cell: its status, typed record and history."""

    ablation: str
    seed: int | None
    path: Path  # the metrics.json path (it may not exist)
    status: str
    reason: str | None = None
    record: RunRecord = field(default_factory=RunRecord)
    history: History | None = None
    gpu: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def cell(self) -> str:
        seed = f"seed{self.seed}" if self.seed is not None else self.path.parent.name
        return f"{self.ablation}/{seed}"

    # -- the fallbacks, each decided once -------------------------------------------------
    @property
    def data_source(self) -> str | None:
        """The data set the run used: as the run reported it, else as configured."""
        return self.record.data.source or self.record.config.data.source

    @property
    def image_size(self) -> int | None:
        return self.record.data.image_size or self.record.config.data.image_size

    @property
    def model_variant(self) -> str | None:
        return self.record.model.variant or self.record.config.model.variant

    @property
    def target_error(self) -> float | None:
        """The training-error target (a fraction): as recorded with the crossing, else the
        config's."""
        rec = self.record
        return as_float(rec.time_to_target.target_train_error) or as_float(
            rec.config.train.target_train_error
        )

    @property
    def target_column(self) -> str:
        """The history column time to target reads (clean or running training error)."""
        column = self.record.time_to_target.error
        return (
            column
            if column in ("train_top1_error", "train_clean_top1_error")
            else (DEFAULT_TARGET_COLUMN)
        )

    @property
    def lr(self) -> float | None:
        return as_float(self.record.config.train.lr)

    # -- time to target ----------------------------------------------------------------------
    @cached_property
    def ttt_epochs(self) -> Crossing:
        """Epochs to the target (the shared definition, from the history)."""
        return self._crossing(by_seconds=False)

    @cached_property
    def ttt_seconds(self) -> Crossing:
        """Training seconds to the target."""
        return self._crossing(by_seconds=True)

    @property
    def reached_target(self) -> bool:
        """The run's training error fell below the target (after its first epoch counts:
        left-censored, the epoch count then only a bound)."""
        return self.ttt_epochs.kind in ("reached", "left-censored")

    def _crossing(self, by_seconds: bool) -> Crossing:
        h, target = self.history, self.target_error
        if self.status not in TRAINED_STATUSES or h is None or target is None:
            return NO_DATA
        errors = h.finite_values(self.target_column)
        if not by_seconds:
            return time_to_target(errors, target)
        seconds = h.finite_values("elapsed_s")[: len(errors)]
        if len(seconds) < len(errors):
            return NO_DATA
        return time_to_target(errors, target, seconds)

    def last_history(self, column: str) -> float | None:
        """The last finite value of a history column."""
        return self.history.last(column) if self.history is not None else None


def _seed_of(seed_dir_name: str) -> int | None:
    m = SEED_DIR.match(seed_dir_name)
    return int(m.group(1)) if m else None


def _read_gpu_csv(path: Path, notes: list[str]) -> pd.DataFrame | None:
    import numpy as np
    import pandas as pd

    df = read_csv_noted(path, notes)
    if df is None:
        return None
    for col in df.columns:
        if col != "throttle_reasons":
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.replace([np.inf, -np.inf], np.nan)


def load_run(metrics_path: Path) -> Run:
    """Load one cell from its ``metrics.json`` path (which need not exist)."""
    metrics_path = Path(metrics_path)
    run_dir = metrics_path.parent
    ablation = run_dir.parent.name
    seed = _seed_of(run_dir.name)
    notes: list[str] = []
    if not metrics_path.is_file():
        if run_dir.is_dir():
            reason = "no metrics.json in the run directory (job crashed, killed or still running)"
        else:
            reason = "run directory does not exist (job never ran or its output was removed)"
        run = Run(ablation, seed, metrics_path, "missing", reason, notes=notes)
        run.history = read_history(run_dir / "history.csv", notes)
        return run
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read ({type(exc).__name__}: {exc})"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)
    if not isinstance(metrics, dict):
        reason = f"top level is a JSON {type(metrics).__name__}, not an object"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)

    record = from_metrics(metrics)
    status, reason = record.status, record.reason
    reason = reason.strip().splitlines()[0] if reason and reason.strip() else None
    if status not in KNOWN_STATUSES:
        reason = f"unrecognised status {status!r}" + (f" ({reason})" if reason else "")
        status = "unknown"
    elif status == "diverged" and not reason:
        epoch = record.diverged_epoch
        reason = f"loss became non-finite at epoch {epoch}" if epoch else "diverged"
    elif status in ("failed", "skipped") and not reason:
        reason = "(no reason recorded)"
    assert status is not None
    run = Run(ablation, seed, metrics_path, status, reason, record, notes=notes)
    declared = record.run.ablation
    if declared is not None and declared != ablation:
        notes.append(f"metrics.json says ablation {declared!r}; using the directory name")
    run.history = read_history(run_dir / "history.csv", notes)
    run.gpu = _read_gpu_csv(run_dir / "gpu.csv", notes)
    return run


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """The runs in these directories (each holding a metrics.json, or not)."""
    return [load_run(Path(d) / "metrics.json") for d in run_dirs]


def discover(results_dir: Path) -> list[Path]:
    """metrics.json paths of every ``{ablation}/seed{N}/`` directory under ``results_dir``."""
    found: list[Path] = []
    if not results_dir.is_dir():
        return found
    for ablation_dir in sorted(results_dir.iterdir()):
        if not ablation_dir.is_dir() or ablation_dir.name.startswith((".", "_")):
            continue
        for seed_dir in sorted(ablation_dir.iterdir()):
            if seed_dir.is_dir() and SEED_DIR.match(seed_dir.name):
                found.append(seed_dir / "metrics.json")
    return found


def expected_from_study(results_dir: Path, study: dict[str, Any] | None) -> list[Path]:
    """The metrics.json paths a study defines: every ablation x seed under ``results_dir``."""
    if not isinstance(study, dict):
        return []
    ablations = study.get("ablations")
    seeds = study.get("seeds")
    if not isinstance(ablations, dict) or not isinstance(seeds, list | tuple):
        return []
    return [results_dir / str(a) / f"seed{s}" / "metrics.json" for a in ablations for s in seeds]


def _key(path: Path) -> str:
    return str(path.resolve(strict=False))


def expected_paths(
    results_dir: Path, expected: list[Path] | None, study: dict[str, Any] | None
) -> list[Path]:
    """``expected`` if given, else the cells the study defines (empty without either)."""
    if expected is None:
        return expected_from_study(Path(results_dir), study)
    return [Path(p) for p in expected]


def collect(
    results_dir: Path, expected: list[Path] | None = None, study: dict[str, Any] | None = None
) -> list[Run]:
    """The study's cells: every expected cell (absent ones as ``missing``).

    ``expected`` defaults to the cells the study defines. Without either, every run directory
    found under ``results_dir`` is a cell. With them, run directories outside the study (old
    seeds, dropped ablations) are left out; :func:`extra_runs` lists them.
    """
    results_dir = Path(results_dir)
    wanted = expected_paths(results_dir, expected, study)
    paths: dict[str, Path] = {}
    for p in wanted or discover(results_dir):
        paths.setdefault(_key(Path(p)), Path(p))
    return [load_run(p) for p in paths.values()]


def extra_runs(
    results_dir: Path, expected: list[Path] | None = None, study: dict[str, Any] | None = None
) -> list[Path]:
    """Run directories under ``results_dir`` that the study does not expect (left out)."""
    wanted = expected_paths(Path(results_dir), expected, study)
    if not wanted:
        return []
    keys = {_key(p) for p in wanted}
    return [p for p in discover(Path(results_dir)) if _key(p) not in keys]


def ablation_order(runs: list[Run], study: dict[str, Any] | None, baseline: str) -> list[str]:
    """Baseline first, then the study's ablations in definition order, then any others sorted."""
    study_names: list[str] = []
    if isinstance(study, dict) and isinstance(study.get("ablations"), dict):
        study_names = [str(a) for a in study["ablations"]]
    present = {r.ablation for r in runs}
    out: list[str] = []
    for name in [baseline, *study_names, *sorted(present)]:
        if name not in out and (name in present or name in study_names):
            out.append(name)
    return out


def sort_runs(runs: list[Run], order: list[str]) -> list[Run]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(
        runs,
        key=lambda r: (
            rank.get(r.ablation, len(rank)),
            r.ablation,
            r.seed if r.seed is not None else 1 << 30,
            str(r.path),
        ),
    )


# ----------------------------------------------------------------------------- named values


def percent(value: float | None) -> float | None:
    """A fraction as percent points (None stays None)."""
    return None if value is None else 100.0 * value


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _or_history(value: float | None, run: Run, column: str) -> float | None:
    """``value`` from metrics.json, else the last finite value of a history column (older
    records without the key)."""
    return value if value is not None else run.last_history(column)


def _history_stat(run: Run, column: str, how: str) -> float | None:
    if run.history is None:
        return None
    import numpy as np

    values = run.history.column(column)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return float(np.max(values) if how == "max" else np.median(values))


def _gpu(value: float | None, run: Run) -> float | None:
    """A GPU telemetry number, only where the run's telemetry was available."""
    return value if run.record.gpu.available is True else None


def _overfit_gap(run: Run) -> float | None:
    val, train = run_value(run, "val_top1"), run_value(run, "train_top1")
    return None if val is None or train is None else val - train


def _dead_relu_max(run: Run) -> float | None:  # % of the deadest hidden layer's units, at the end
    values = list(run.record.health.dead_relu_fraction.values())
    return percent(max(values)) if values else None


def _lrn_load(run: Run) -> float | None:  # mean alpha * sum(a**2) / k over the LRN layers
    values = list(run.record.health.lrn_alpha_sum_over_k.values())
    return sum(values) / len(values) if values else None


def _world_size(run: Run) -> float | None:  # devices the job used (DDP ranks or towers)
    p = run.record.parallel
    return as_float(_first(p.devices, p.world_size, run.record.config.runtime.gpus))


def _throughput(run: Run) -> float | None:
    r = run.record
    value = _first(r.throughput.images_per_s_median, r.step_time.images_per_s_median)
    return value if value is not None else _history_stat(run, "images_per_s", "median")


def _epochs_completed(run: Run) -> float | None:
    value = as_float(run.record.epochs_completed)
    return value if value is not None else _history_stat(run, "epoch", "max")


#: every per-run number a view uses, by name, and where it comes from (errors in percent)
RUN_VALUE_ACCESSORS: dict[str, Callable[[Run], float | None]] = {
    "val_top1": lambda r: percent(_or_history(r.record.final.val_top1_error, r, "val_top1_error")),
    "val_top5": lambda r: percent(_or_history(r.record.final.val_top5_error, r, "val_top5_error")),
    "train_top1": lambda r: percent(
        _or_history(r.record.final.train_top1_error, r, "train_top1_error")
    ),
    "val_top1_10crop": lambda r: percent(r.record.final.val_top1_error_10crop),
    "best_val_top1": lambda r: percent(r.record.best.val_top1_error),
    "overfit_gap": _overfit_gap,
    "best_epoch": lambda r: as_float(r.record.best.epoch),
    # the crossing's value (None when censored: see Run.ttt_epochs for the interval)
    "ttt_epoch": lambda r: r.ttt_epochs.value,
    "ttt_seconds": lambda r: r.ttt_seconds.value,
    "epochs_completed": _epochs_completed,
    "train_time_s": lambda r: _or_history(r.record.train_time_s, r, "elapsed_s"),
    "total_time_s": lambda r: r.record.total_time_s,
    "throughput": _throughput,
    "step_ms": lambda r: r.record.step_time.step_ms.median,
    "mfu": lambda r: r.record.flops.mfu,
    "gpu_util": lambda r: _gpu(r.record.gpu.util_gpu_pct.mean, r),
    "gpu_power_w": lambda r: _gpu(r.record.gpu.power_w.mean, r),
    "gpu_mem_peak_mib": lambda r: _gpu(r.record.gpu.mem_used_peak_mib, r),
    "energy_per_image_j": lambda r: _gpu(r.record.gpu.energy_per_image_j, r),
    "peak_rss_mib": lambda r: r.record.host.peak_rss_mib,
    "cpu_util_pct": lambda r: r.record.host.cpu_util_pct,
    "job_cpu_s": lambda r: _first(r.record.host.job_cpu_s, r.record.host.process_lifetime_cpu_s),
    "num_params": lambda r: as_float(r.record.model.num_params),
    "world_size": _world_size,
    "target_train_error": lambda r: percent(r.target_error),
    "dead_relu_max": _dead_relu_max,
    "lrn_load": _lrn_load,
    "planned_epochs": lambda r: as_float(r.record.config.train.epochs),
    "final_train_loss": lambda r: r.record.final.train_loss,
    "final_val_loss": lambda r: r.record.final.val_loss,
    "diverged_epoch": lambda r: as_float(r.record.diverged_epoch),
    "device_count": lambda r: as_float(r.record.device.count),
    "num_train": lambda r: as_float(r.record.data.num_train),
}
#: every name :func:`run_value` knows (claims' metrics are checked against it)
RUN_VALUES = tuple(RUN_VALUE_ACCESSORS)
#: run values known only as an interval when censored, and the crossing behind each
CENSORED_VALUES: dict[str, Callable[[Run], Crossing]] = {
    "ttt_epoch": lambda r: r.ttt_epochs,
    "ttt_seconds": lambda r: r.ttt_seconds,
}


def run_value(run: Run, name: str) -> float | None:
    """One per-run number by name (errors in percent); None when the run does not have it."""
    try:
        accessor = RUN_VALUE_ACCESSORS[name]
    except KeyError:
        raise KeyError(f"unknown run value {name!r}") from None
    return accessor(run)


def first_value(runs: Iterable[Run], name: str) -> float | None:
    """The first of ``runs`` that has ``name`` (e.g. the study's target training error)."""
    return next((v for r in runs if (v := run_value(r, name)) is not None), None)


def run_measure(run: Run, name: str) -> float | Crossing | None:
    """What the effects pair for ``name``: the number, or for time to target the crossing
    (an interval when censored)."""
    if name in CENSORED_VALUES:
        crossing = CENSORED_VALUES[name](run)
        return crossing if crossing.has_data else None
    return run_value(run, name)
