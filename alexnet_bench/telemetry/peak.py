"""The host's CPU peak FLOP/s, measured once per study with nothing else running.

A per-job matmul probe is disturbed by the jobs running beside it (1-thread probes ranged
66-98 GFLOP/s within one study), which put recorded MFU above 1. The workflow therefore runs
``alexnet-bench peak-flops`` once, before any training job, and every job divides by the
peak for its own thread count from that file (``results/<preset>/peak_flops.json``).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import torch

from ..io import write_json
from .flops import measure_matmul_flops
from .host import cpu_model

__all__ = ["cpu_peak_for", "measure_cpu_peaks", "write_cpu_peaks"]

REPEATS = 30


def measure_cpu_peaks(threads: list[int], repeats: int = REPEATS) -> dict[str, Any]:
    """Best-of-``repeats`` square fp32 matmul FLOP/s on the CPU for each thread count."""
    previous = torch.get_num_threads()
    peaks: dict[str, float] = {}
    try:
        for n in sorted(set(threads)):
            torch.set_num_threads(n)
            peaks[str(n)] = measure_matmul_flops("cpu", torch.float32, repeats=repeats)
    finally:
        torch.set_num_threads(previous)
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "peak_flops_by_threads": peaks,
        "method": f"best of {repeats} timed 1024x1024 fp32 matmuls after 2 warm-up ones",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
    }


def write_cpu_peaks(path: Path, threads: list[int], repeats: int = REPEATS) -> dict[str, Any]:
    """Measure and write the peaks atomically; returns what was written."""
    result = measure_cpu_peaks(threads, repeats)
    write_json(path, result)
    return result


def cpu_peak_for(path: Path | None, threads: int) -> tuple[float, str] | None:
    """(peak FLOP/s of one process with ``threads`` threads, note) from a peaks file, or None
    when there is no file, it was measured on another host, or lacks that thread count."""
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text())
        peak = float(data["peak_flops_by_threads"][str(threads)])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("host") != socket.gethostname() or not peak > 0:
        return None
    note = f"{data.get('method', 'matmul probe')}, {threads} thread(s), once per study ({path})"
    return peak, note
