"""Helpers shared by the benchmark scripts: device sync, robust statistics, result files."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet_bench.io import write_json, write_text
from alexnet_bench.telemetry.timing import synchronize as sync


def time_steps(
    step: Callable[[], object], device: torch.device, warmup: int, steps: int
) -> list[float]:
    """Seconds per call of ``step()`` for ``steps`` calls after ``warmup`` untimed ones.

    CUDA events bracket each step on GPU (no host-clock skew from asynchronous launches);
    ``perf_counter`` on CPU.
    """
    for _ in range(warmup):
        step()
    sync(device)
    times: list[float] = []
    for _ in range(steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return times


def pct(values: list[float], q: float) -> float:
    """The q-th percentile."""
    return float(np.percentile(values, q))


def median_ci95(values: list[float], resamples: int = 5000, seed: int = 0) -> list[float]:
    """Bootstrap 95 % confidence interval of the median (percentile method)."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=np.float64)
    medians = np.median(rng.choice(v, size=(resamples, v.size), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def write_results(json_path: Path, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write ``result`` as JSON and ``rows`` as a CSV beside it (same stem), atomically."""
    write_json(json_path, result)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(json_path.with_suffix(".csv"), buf.getvalue())
