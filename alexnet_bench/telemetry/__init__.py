"""Run telemetry: GPU sampling (NVML), step timing, FLOPs/MFU, host stats and environment.

See ``docs/telemetry.md`` for the output formats and the pitfalls of each measurement.
"""

from __future__ import annotations

from .environment import collect_environment, git_state
from .flops import (
    device_peak_flops,
    forward_flops_per_image,
    measure_matmul_flops,
    mfu,
    train_flops_per_image,
)
from .host import HostStats
from .nvml import CSV_COLUMNS, GpuSampler, decode_throttle_reasons
from .timing import StepTimer

__all__ = [
    "CSV_COLUMNS",
    "GpuSampler",
    "HostStats",
    "StepTimer",
    "collect_environment",
    "decode_throttle_reasons",
    "device_peak_flops",
    "forward_flops_per_image",
    "git_state",
    "measure_matmul_flops",
    "mfu",
    "train_flops_per_image",
]
