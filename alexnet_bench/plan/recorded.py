"""Rates read back from an earlier results directory (``--from-results DIR``), no probing.

Every trained run's ``metrics.json`` records its config, ``train_time_s`` (the epochs' training
loops), ``total_time_s`` (the job's ``run_training``: set-up, training, evaluation,
checkpoints) and ``epochs_completed``; Snakemake's benchmark file of the job
(``logs/benchmark/<preset>/<ablation>/seed<n>.tsv`` beside ``results/``) its whole wall time.
Per group of the planned study (:func:`.cells.timing_key`), medians over the recorded runs:

* a step: the batch over the median of the runs' images/s (images trained / ``train_time_s``);
* the in-job time besides training, per epoch: ``(total_time_s - train_time_s) / epochs``
  (evaluation and checkpoints every epoch, set-up once: taken to scale with the epochs);
* process start-up: benchmark wall minus ``total_time_s``, else the process's CPU time before
  training (``host.process_lifetime_cpu_s - host.self_cpu_s``) as a stand-in for its wall time;
* energy: the record's ``gpu.energy_per_image_j`` (NVML on that host).

A planned group no run recorded is scaled from the recorded runs by training FLOPs per image
(the achieved FLOP/s of the recorded runs, the planned model's FLOPs) and labelled so. Runs
that resumed (their ``total_time_s`` covers only the last session) are left out.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from ..collect import TRAINED_STATUSES, discover
from ..config import RunConfig
from ..errors import BenchError, ConfigError
from ..numbers import median_of
from .cells import Cell, timing_key
from .rates import GroupRates, HostRates


def read_benchmark_s(path: Path) -> float | None:
    """The wall seconds (column ``s``) of a Snakemake benchmark file, or None."""
    try:
        with open(path, newline="") as fh:
            row = next(csv.DictReader(fh, delimiter="\t"), None)
        return float(row["s"]) if row and row.get("s") else None
    except (OSError, ValueError, KeyError):
        return None


def benchmark_dir(results_dir: Path) -> Path:
    """``logs/benchmark/<preset>`` beside ``results/<preset>``."""
    results_dir = Path(results_dir).resolve()
    return results_dir.parents[1] / "logs" / "benchmark" / results_dir.name


def _load(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _num(record: dict[str, Any], *keys: str) -> float | None:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _Run:
    """What one recorded run says about time, energy and files."""

    def __init__(self, path: Path, record: dict[str, Any], cfg: RunConfig) -> None:
        self.path, self.record, self.cfg = path, record, cfg
        self.key = timing_key(cfg)
        epochs = _num(record, "epochs_completed") or 0
        n_train = _num(record, "data", "num_train") or cfg.data.num_train
        steps = int(n_train) // cfg.train.batch_size
        train = _num(record, "train_time_s") or 0.0
        total = _num(record, "total_time_s")
        self.step_s = train / (epochs * steps) if epochs and steps else None
        self.other_s_per_epoch = (total - train) / epochs if total and epochs else None
        self.images_per_s = steps * cfg.train.batch_size * epochs / train if train else None
        self.flops_per_image = _num(record, "flops", "train_flops_per_image")
        self.eval_images = (_num(record, "data", "num_val") or cfg.data.num_val) + min(
            cfg.eval.train_images, int(n_train)
        )
        bench = benchmark_dir(path.parents[2]) / path.parent.parent.name / f"{path.parent.name}.tsv"
        wall = read_benchmark_s(bench)
        if wall is not None and total is not None:
            self.startup_s, self.startup_source = wall - total, "benchmark"
        else:
            lifetime = _num(record, "host", "process_lifetime_cpu_s")
            inside = _num(record, "host", "self_cpu_s")
            ok = lifetime is not None and inside is not None
            self.startup_s = lifetime - inside if ok else None  # type: ignore[operator]
            self.startup_source = "cpu"
        self.energy_per_image_j = (
            _num(record, "gpu", "energy_per_image_j")
            if record.get("gpu", {}).get("available")
            else None
        )
        run_dir = path.parent
        self.final_bytes = _size(run_dir / "model_final.pt")
        self.checkpoint_bytes = _size(run_dir / "checkpoint.pt")
        params = _num(record, "model", "num_params")
        if self.checkpoint_bytes is None and params:  # fp32 weights + SGD momentum buffers
            self.checkpoint_bytes = int(params * 4 * 2)
        if self.final_bytes is None and params:
            self.final_bytes = int(params * 4)
        history = run_dir / "history.csv"
        self.history = _history_bytes(history)
        self.metrics_bytes = _size(path)


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _history_bytes(path: Path) -> tuple[float, float] | None:
    """(header bytes, bytes per row) of a history.csv."""
    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except OSError:
        return None
    if len(lines) < 2:
        return None
    rows = lines[1:]
    return float(len(lines[0])), sum(map(len, rows)) / len(rows)


def recorded_runs(results_dir: Path) -> tuple[list[_Run], list[_Run], list[str]]:
    """(trained runs with timing, skipped runs, notes) of a results directory."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(
            f"--from-results '{results_dir}' is not a directory; pass results/<preset>"
        )
    trained: list[_Run] = []
    skipped: list[_Run] = []
    notes: list[str] = []
    unreadable = 0
    for path in discover(results_dir):
        record = _load(path)
        if record is None or not isinstance(record.get("config"), dict):
            continue
        try:
            cfg = RunConfig(record["config"])
        except ConfigError:
            unreadable += 1
            continue
        run = _Run(path, record, cfg)
        if record.get("status") == "skipped":
            skipped.append(run)
        elif (
            record.get("status") in TRAINED_STATUSES
            and record.get("resumed_from_epoch") is None
            and run.step_s
        ):
            trained.append(run)
    if unreadable:
        notes.append(f"{unreadable} record(s) in {results_dir} have a config this version rejects")
    if not trained:
        raise BenchError(
            f"no trained run with timings in '{results_dir}'; plan by probing this host instead "
            "(leave out --from-results)"
        )
    return trained, skipped, notes


def recorded_rates(
    results_dir: Path, planned: list[Cell]
) -> tuple[dict[str, GroupRates], HostRates]:
    """Group and host rates of ``planned`` from the records in ``results_dir``."""
    trained, skipped, notes = recorded_runs(results_dir)
    where = str(results_dir)
    by_key: dict[str, list[_Run]] = {}
    for run in trained:
        by_key.setdefault(run.key, []).append(run)
    rates: dict[str, GroupRates] = {}
    for cell in planned:
        if not (cell.trains or cell.state == "resume") or cell.group in rates:
            continue
        runs = by_key.get(cell.group)
        rates[cell.group] = (
            _rates(cell.group, runs, f"recorded in {where}")
            if runs
            else _scaled(cell, trained, where)
        )
    starts = [r.startup_s for r in trained if r.startup_source == "benchmark"]
    source = "Snakemake benchmark files"
    if not starts:
        starts = [r.startup_s for r in trained]
        source = "the records' CPU time before training (no benchmark files found)"
    startup = median_of(starts) or 0.0
    bench = benchmark_dir(Path(results_dir))
    skip_walls = [
        read_benchmark_s(bench / r.path.parent.parent.name / f"{r.path.parent.name}.tsv")
        for r in skipped
    ]
    startup_cli = median_of(skip_walls)
    host = HostRates(
        source=f"recorded in {where}",
        startup_train_s=startup,
        startup_cli_s=startup_cli if startup_cli is not None else startup,
        contention_note=(
            "as the recorded study ran (its jobs' times include whatever ran beside them)"
        ),
        metrics_bytes=median_of([float(r.metrics_bytes) for r in trained if r.metrics_bytes]),
        notes=[*notes, f"process start-up from {source}"],
    )
    peak = read_benchmark_s(bench.parent / "peak_flops" / f"{Path(results_dir).name}.tsv")
    if peak is not None:
        host.peak_flops_s = max(0.0, peak - host.startup_cli_s)
    report = read_benchmark_s(bench.parents[0] / "report.tsv")
    if report is not None:
        host.report_s = max(0.0, report - host.startup_cli_s)
        host.report_note = "the recorded report job's wall time"
    else:
        host.report_note = "no recorded report job (logs/benchmark/report.tsv): start-up only"
    return rates, host


def _rates(key: str, runs: list[_Run], source: str) -> GroupRates:
    history = [r.history for r in runs if r.history]
    energy = median_of([r.energy_per_image_j for r in runs])
    return GroupRates(
        key=key,
        source=source,
        batch_size=runs[0].cfg.train.batch_size,
        step_s=runs[0].cfg.train.batch_size
        / (median_of([r.images_per_s for r in runs]) or math.inf),
        other_s_per_epoch=median_of([r.other_s_per_epoch for r in runs]) or 0.0,
        checkpoint_bytes=_int(median_of([r.checkpoint_bytes for r in runs])),
        final_weights_bytes=_int(median_of([r.final_bytes for r in runs])),
        history_header_bytes=median_of([h[0] for h in history]),
        history_row_bytes=median_of([h[1] for h in history]),
        energy_per_image_j=energy,
        energy_source=(
            f"NVML energy per image {source}"
            if energy is not None
            else "no power reading in the records"
        ),
        runs=len(runs),
    )


def _int(x: float | None) -> int | None:
    return None if x is None else int(x)


def _scaled(cell: Cell, trained: list[_Run], where: str) -> GroupRates:
    """Rates of a group no run recorded: the recorded achieved FLOP/s (training and the rest
    of each epoch) applied to this cell's FLOPs per image."""
    from ..model import build_model
    from ..telemetry.flops import train_flops_per_image

    cfg = cell.cfg
    model = build_model(cfg.model, cfg.data.num_classes, cfg.data.image_size)
    flops = float(train_flops_per_image(model, cfg.data.image_size))
    usable = [r for r in trained if r.flops_per_image and r.images_per_s]
    if not usable:
        raise BenchError(
            f"no run in '{where}' is like {cell.ablation} and none records its FLOPs; plan by "
            "probing this host instead (leave out --from-results)"
        )
    rate = statistics.median(r.flops_per_image * r.images_per_s for r in usable)  # type: ignore[operator]
    other = median_of(
        [
            r.other_s_per_epoch / (r.flops_per_image * r.eval_images)  # type: ignore[operator]
            for r in usable
            if r.other_s_per_epoch is not None
        ]
    )
    n_eval = cell.n_val + min(cfg.eval.train_images, cell.n_train)
    base = _rates(cell.group, usable, f"scaled by FLOPs from {len(usable)} runs in {where}")
    base.step_s = cfg.train.batch_size * flops / rate
    base.batch_size = cfg.train.batch_size
    base.other_s_per_epoch = (other or 0.0) * flops * n_eval
    return base
