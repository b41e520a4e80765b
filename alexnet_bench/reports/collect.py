"""Read run results from ``results/{preset}/{ablation}/seed{seed}/``: the reading side of the
record contract (``READ_KEYS``, the named per-run values of :func:`run_value`).

Only the file formats are relied on (``metrics.json``, ``history.csv``, optional ``gpu.csv``),
never the training code. Everything is read defensively: a field may be missing or null, a
``metrics.json`` may be truncated, an expected cell may not exist at all. Such cells become
:class:`Run` objects with status ``missing`` or ``unparseable`` so that the report can list
them; they never raise.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: every metrics.json path the report reads. schemas/metrics.schema.yaml (checked by the
#: writer, record.py) requires each of them apart from CONDITIONAL_KEYS, which
#: tests/test_record_contract.py checks; with ALEXNET_BENCH_STRICT_RECORD=1 (the test suite sets it) reading any
#: other path raises, so a new read cannot go unchecked.
READ_KEYS = frozenset({
    "best.epoch", "best.val_top1_error", "config.data.image_size", "config.data.source",
    "config.model.init", "config.model.lrn", "config.model.variant", "config.train.epochs",
    "config.train.target_train_error", "config_hash", "device.count", "device.name",
    "device.type", "diverged_epoch", "environment.git_commit", "environment.git_dirty",
    "environment.torch", "environment.torch_cuda", "environment.cuda_gpus",
    "environment.nvml_gpus", "environment.driver_version", "environment.cudnn",
    "environment.cpu_model", "environment.logical_cpus", "environment.python",
    "environment.hostname", "environment.timestamp_utc", "epochs_completed", "final.train_loss",
    "final.val_loss", "final.val_top1_error", "final.val_top1_error_10crop",
    "final.val_top5_error", "final.train_top1_error", "flops.mfu", "flops.peak_source",
    "gpu.available", "gpu.devices", "gpu.energy_per_image_j", "gpu.mem_used_peak_mib",
    "gpu.power_w.mean", "gpu.reason", "gpu.util_gpu_pct.mean", "health.dead_relu_fraction",
    "health.lrn_alpha_sum_over_k", "host.cpu_util_pct", "host.job_cpu_s", "host.peak_rss_mib",
    "host.process_lifetime_cpu_s", "model.num_params", "model.variant", "parallel.mode",
    "parallel.world_size", "run.preset", "step_time.images_per_s_median",
    "step_time.step_ms.median", "throughput.images_per_s_median", "time_to_target.epoch",
    "time_to_target.epoch_interpolated", "time_to_target.error", "time_to_target.seconds",
    "time_to_target.seconds_interpolated", "time_to_target.target_train_error",
    "total_time_s", "train_time_s", "parallel.devices", "config.runtime.gpus", "data.source",
    "data.image_size", "data.num_train", "data.num_classes", "data.skipped_files",
    "data.skipped_examples", "data.ignored_files", "data.prepared_cache", "data.prepared_format",
    "notes",
})  # fmt: skip
#: READ_KEYS a trained (completed) CPU run need not hold: GPU telemetry, the 10-crop test,
#: divergence, LRN/ReLU health of arms without LRN or ReLUs, cell labels of a run outside a
#: study, the reason GPU telemetry is unavailable (absent when it is available), AlexNet's
#: variant (the Figure 1 net has none)
CONDITIONAL_KEYS = frozenset({
    "gpu.devices", "gpu.energy_per_image_j", "gpu.mem_used_peak_mib", "gpu.power_w.mean",
    "gpu.util_gpu_pct.mean", "final.val_top1_error_10crop", "diverged_epoch",
    "environment.driver_version", "environment.nvml_gpus", "environment.cuda_gpus",
    "health.lrn_alpha_sum_over_k", "health.dead_relu_fraction", "run.preset", "gpu.reason",
    "model.variant",
})  # fmt: skip
STRICT_READS = os.environ.get("ALEXNET_BENCH_STRICT_RECORD") == "1"

KNOWN_STATUSES = ("completed", "collapsed", "diverged", "failed", "skipped")
#: every status a Run can have, in the order the report lists them
ALL_STATUSES = (*KNOWN_STATUSES, "missing", "unparseable", "unknown")
SEED_DIR = re.compile(r"^seed(\d+)$")


def nested_get(data: Any, dotted: str, default: Any = None) -> Any:
    """``data['a']['b']['c']`` for ``'a.b.c'``; ``default`` if any level is absent or not a dict."""
    cur = data
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return default
        cur = cur[key]
    return default if cur is None else cur


def as_float(value: Any) -> float | None:
    """A finite float, or None (for None, NaN, inf, booleans and non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class Run:
    """One expected or discovered cell of the study grid."""

    ablation: str
    seed: int | None
    path: Path  # the metrics.json path (it may not exist)
    status: str
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    gpu: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def cell(self) -> str:
        seed = f"seed{self.seed}" if self.seed is not None else self.path.parent.name
        return f"{self.ablation}/{seed}"

    def get(self, dotted: str, default: Any = None) -> Any:
        """A value of the run's metrics.json by dotted path; every path read is in READ_KEYS."""
        if STRICT_READS and dotted not in READ_KEYS:
            raise KeyError(f"the report reads metrics.json key {dotted!r}, not in READ_KEYS")
        return nested_get(self.metrics, dotted, default)

    def num(self, dotted: str) -> float | None:
        return as_float(self.get(dotted))

    def last_history(self, column: str) -> float | None:
        """The value of ``column`` in the last history row that has a finite one."""
        if self.history is None or column not in self.history:
            return None
        col = self.history[column].dropna()
        return as_float(col.iloc[-1]) if len(col) else None


def _read_csv(path: Path, notes: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        notes.append(f"{path.name} unreadable ({type(exc).__name__}: {str(exc).strip()[:120]})")
        return None
    for col in df.columns:
        if col != "throttle_reasons":
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df.replace([np.inf, -np.inf], np.nan)


def _seed_of(seed_dir_name: str) -> int | None:
    m = SEED_DIR.match(seed_dir_name)
    return int(m.group(1)) if m else None


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
        run.history = _read_csv(run_dir / "history.csv", notes)
        return run
    try:
        text = metrics_path.read_text(encoding="utf-8")
        metrics = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read ({type(exc).__name__}: {exc})"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)
    if not isinstance(metrics, dict):
        reason = f"top level is a JSON {type(metrics).__name__}, not an object"
        return Run(ablation, seed, metrics_path, "unparseable", reason, notes=notes)

    status = metrics.get("status")
    reason = metrics.get("reason")
    reason = str(reason).strip().splitlines()[0] if reason not in (None, "") else None
    if status not in KNOWN_STATUSES:
        reason = f"unrecognised status {status!r}" + (f" ({reason})" if reason else "")
        status = "unknown"
    elif status == "diverged" and not reason:
        epoch = nested_get(metrics, "diverged_epoch")
        reason = f"loss became non-finite at epoch {epoch}" if epoch else "diverged"
    elif status in ("failed", "skipped") and not reason:
        reason = "(no reason recorded)"

    run = Run(ablation, seed, metrics_path, status, reason, metrics, notes=notes)
    declared = nested_get(metrics, "run.ablation")
    if declared is not None and str(declared) != ablation:
        notes.append(f"metrics.json says ablation {declared!r}; using the directory name")
    run.history = _read_csv(run_dir / "history.csv", notes)
    run.gpu = _read_csv(run_dir / "gpu.csv", notes)
    return run


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


def percent(value: float | None) -> float | None:
    """A fraction as percent points (None stays None)."""
    return None if value is None else 100.0 * value


def _ratio_value(run: Run, dotted: str, history_col: str | None = None) -> float | None:
    value = run.num(dotted)
    if value is None and history_col is not None:
        value = run.last_history(history_col)
    return value


def _first_num(run: Run, *dotted: str) -> float | None:
    """The first of ``dotted`` the run has a number for."""
    return next((v for key in dotted if (v := run.num(key)) is not None), None)


def _gpu_num(dotted: str) -> Callable[[Run], float | None]:
    """A GPU telemetry number, only where the run's telemetry was available."""
    return lambda run: run.num(dotted) if run.get("gpu.available") is True else None


def _history_value(run: Run, column: str, how: str) -> float | None:
    if run.history is None or column not in run.history:
        return None
    return as_float(getattr(run.history[column], how)())


def _or_history(run: Run, dotted: tuple[str, ...], column: str, how: str) -> float | None:
    """The first of ``dotted`` in metrics.json, else ``how`` of a history column (old records)."""
    value = _first_num(run, *dotted)
    return value if value is not None else _history_value(run, column, how)


def _overfit_gap(run: Run) -> float | None:
    val, train = run_value(run, "val_top1"), run_value(run, "train_top1")
    return None if val is None or train is None else val - train


def _values_of(run: Run, dotted: str) -> list[float]:
    data = run.get(dotted)
    values = [as_float(x) for x in data.values()] if isinstance(data, dict) else []
    return [x for x in values if x is not None]


def _dead_relu_max(run: Run) -> float | None:  # % of the deadest hidden layer's units, at the end
    values = _values_of(run, "health.dead_relu_fraction")
    return percent(max(values)) if values else None


def _lrn_load(run: Run) -> float | None:  # mean alpha * sum(a**2) / k over the LRN layers
    values = _values_of(run, "health.lrn_alpha_sum_over_k")
    return sum(values) / len(values) if values else None


#: every per-run number the report uses, by name: the one place that says where in a run's
#: metrics.json (or history.csv, for older records) it comes from; errors in percent
RUN_VALUE_ACCESSORS: dict[str, Callable[[Run], float | None]] = {
    "val_top1": lambda r: percent(_ratio_value(r, "final.val_top1_error", "val_top1_error")),
    "val_top5": lambda r: percent(_ratio_value(r, "final.val_top5_error", "val_top5_error")),
    "train_top1": lambda r: percent(_ratio_value(r, "final.train_top1_error", "train_top1_error")),
    "val_top1_10crop": lambda r: percent(r.num("final.val_top1_error_10crop")),
    "overfit_gap": _overfit_gap,
    "best_epoch": lambda r: r.num("best.epoch"),
    # interpolated between epochs where recorded (finer ratios)
    "ttt_epoch": lambda r: _first_num(
        r, "time_to_target.epoch_interpolated", "time_to_target.epoch"
    ),
    "ttt_seconds": lambda r: _first_num(
        r, "time_to_target.seconds_interpolated", "time_to_target.seconds"
    ),
    "epochs_completed": lambda r: _or_history(r, ("epochs_completed",), "epoch", "max"),
    "train_time_s": lambda r: _ratio_value(r, "train_time_s", "elapsed_s"),
    "throughput": lambda r: _or_history(
        r,
        ("throughput.images_per_s_median", "step_time.images_per_s_median"),
        "images_per_s",
        "median",
    ),
    "step_ms": lambda r: r.num("step_time.step_ms.median"),
    "mfu": lambda r: r.num("flops.mfu"),
    "gpu_util": _gpu_num("gpu.util_gpu_pct.mean"),
    "gpu_power_w": _gpu_num("gpu.power_w.mean"),
    "gpu_mem_peak_mib": _gpu_num("gpu.mem_used_peak_mib"),
    "energy_per_image_j": _gpu_num("gpu.energy_per_image_j"),
    "peak_rss_mib": lambda r: r.num("host.peak_rss_mib"),
    "cpu_util_pct": lambda r: r.num("host.cpu_util_pct"),
    "num_params": lambda r: r.num("model.num_params"),
    # devices the job used (DDP ranks or model-parallel towers)
    "world_size": lambda r: _first_num(
        r, "parallel.devices", "parallel.world_size", "config.runtime.gpus"
    ),
    "target_train_error": lambda r: percent(
        _first_num(r, "time_to_target.target_train_error", "config.train.target_train_error")
    ),
    "dead_relu_max": _dead_relu_max,
    "lrn_load": _lrn_load,
    "planned_epochs": lambda r: r.num("config.train.epochs"),
}
#: every name :func:`run_value` knows (claims' metrics are checked against it)
RUN_VALUES = tuple(RUN_VALUE_ACCESSORS)


def run_value(run: Run, name: str) -> float | None:
    """One per-run number by name (errors in percent); None when the run does not have it."""
    try:
        accessor = RUN_VALUE_ACCESSORS[name]
    except KeyError:
        raise KeyError(f"unknown run value {name!r}") from None
    return accessor(run)
