"""Load run results from ``results/{preset}/{ablation}/seed{seed}/``.

Only the file formats are relied on (``metrics.json``, ``history.csv``, optional ``gpu.csv``),
never the training code. Everything is read defensively: a field may be missing or null, a
``metrics.json`` may be truncated, an expected cell may not exist at all. Such cells become
:class:`Run` objects with status ``missing`` or ``unparseable`` so that the report can list
them; they never raise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


#: every name :func:`run_value` knows (claims' metrics are checked against it)
RUN_VALUES = (
    "val_top1", "val_top5", "train_top1", "val_top1_10crop", "overfit_gap", "best_epoch",
    "ttt_epoch", "ttt_seconds", "epochs_completed", "train_time_s", "throughput", "step_ms",
    "mfu", "gpu_util", "gpu_power_w", "gpu_mem_peak_mib", "energy_per_image_j", "peak_rss_mib",
    "cpu_util_pct", "num_params", "world_size", "target_train_error", "dead_relu_max",
    "lrn_load", "planned_epochs",
)  # fmt: skip


def run_value(run: Run, name: str) -> float | None:
    """One per-run number by name (errors in percent); None when the run does not have it."""
    gpu_ok = run.get("gpu.available") is True
    if name == "val_top1":
        return percent(_ratio_value(run, "final.val_top1_error", "val_top1_error"))
    if name == "val_top5":
        return percent(_ratio_value(run, "final.val_top5_error", "val_top5_error"))
    if name == "train_top1":
        return percent(_ratio_value(run, "final.train_top1_error", "train_top1_error"))
    if name == "val_top1_10crop":
        return percent(run.num("final.val_top1_error_10crop"))
    if name == "overfit_gap":
        val, train = run_value(run, "val_top1"), run_value(run, "train_top1")
        return None if val is None or train is None else val - train
    if name == "best_epoch":
        return run.num("best.epoch")
    if name == "ttt_epoch":  # interpolated between epochs where recorded (finer ratios)
        value = run.num("time_to_target.epoch_interpolated")
        return value if value is not None else run.num("time_to_target.epoch")
    if name == "ttt_seconds":
        value = run.num("time_to_target.seconds_interpolated")
        return value if value is not None else run.num("time_to_target.seconds")
    if name == "epochs_completed":
        value = run.num("epochs_completed")
        if value is None and run.history is not None and "epoch" in run.history:
            value = as_float(run.history["epoch"].max())
        return value
    if name == "train_time_s":
        return _ratio_value(run, "train_time_s", "elapsed_s")
    if name == "throughput":
        value = run.num("throughput.images_per_s_median")
        if value is None:
            value = run.num("step_time.images_per_s_median")
        if value is None and run.history is not None and "images_per_s" in run.history:
            value = as_float(run.history["images_per_s"].median())
        return value
    if name == "step_ms":
        return run.num("step_time.step_ms.median")
    if name == "mfu":
        return run.num("flops.mfu")
    if name == "gpu_util":
        return run.num("gpu.util_gpu_pct.mean") if gpu_ok else None
    if name == "gpu_power_w":
        return run.num("gpu.power_w.mean") if gpu_ok else None
    if name == "gpu_mem_peak_mib":
        return run.num("gpu.mem_used_peak_mib") if gpu_ok else None
    if name == "energy_per_image_j":
        return run.num("gpu.energy_per_image_j") if gpu_ok else None
    if name == "peak_rss_mib":
        return run.num("host.peak_rss_mib")
    if name == "cpu_util_pct":
        return run.num("host.cpu_util_pct")
    if name == "num_params":
        return run.num("model.num_params")
    if name == "world_size":  # devices the job used (DDP ranks or model-parallel towers)
        for key in ("parallel.devices", "parallel.world_size", "config.runtime.gpus"):
            value = run.num(key)
            if value is not None:
                return value
        return None
    if name == "target_train_error":
        value = run.num("time_to_target.target_train_error")
        if value is None:
            value = run.num("config.train.target_train_error")
        return percent(value)
    if name == "dead_relu_max":  # % of the units of the deadest hidden layer, at the end
        dead = run.get("health.dead_relu_fraction")
        values = [as_float(x) for x in dead.values()] if isinstance(dead, dict) else []
        values = [x for x in values if x is not None]
        return percent(max(values)) if values else None
    if name == "lrn_load":  # mean alpha * sum(a**2) / k over the LRN layers, at the end
        load = run.get("health.lrn_alpha_sum_over_k")
        values = [as_float(x) for x in load.values()] if isinstance(load, dict) else []
        values = [x for x in values if x is not None]
        return sum(values) / len(values) if values else None
    if name == "planned_epochs":
        return run.num("config.train.epochs")
    raise KeyError(f"unknown run value {name!r}")
