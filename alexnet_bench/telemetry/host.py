"""Host-side process statistics: CPU time, CPU utilisation, peak memory, threads, CPU model.

:class:`HostStats` brackets a run (``start()`` ... ``stop()``) and reports, for that interval,
the CPU time of this process and of its child processes (e.g. data-loader workers), the wall
time, their ratio as a utilisation (100 % = one fully busy core; it can exceed 100), and the
peak resident memory; also the CPU time of the whole process since it started
(``process_lifetime_cpu_s``, start-up included).

Notes: child CPU time comes from two places: children already reaped by the time of
``stop()`` (``RUSAGE_CHILDREN``, counted only once a child has exited *and* been waited for)
and children still alive at ``stop()`` (read directly, minus what they had used at
``start()``). ``peak_rss_mib`` is the process's high-water mark since it began
(``ru_maxrss``, or the RSS read beside it if larger), not since ``start()``.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
import time
from functools import cache
from typing import Any

import psutil

__all__ = ["HostStats", "cpu_isa_flags", "cpu_model", "logical_cpus", "usable_cpus"]

_MIB = float(1 << 20)


@cache
def cpu_model() -> str | None:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
                    return value.strip() or None
    except OSError:
        pass
    return platform.processor() or None


#: /proc/cpuinfo flags that select the kernels torch and oneDNN run (their floating-point results)
ISA_FLAG = re.compile(r"^(avx\w*|amx\w*|fma|f16c|sse4_[12]|ssse3|asimd\w*|sve\w*|neon)$")


@cache
def cpu_isa_flags() -> list[str] | None:
    """The CPU's vector-ISA flags (AVX2, AVX-512, AMX, ...; NEON/SVE on ARM), sorted; None where
    ``/proc/cpuinfo`` is unreadable."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return sorted({f for f in value.split() if ISA_FLAG.match(f)})
    except OSError:
        pass
    return None


def logical_cpus() -> int | None:
    """Logical CPUs of the machine."""
    return os.cpu_count()


def usable_cpus() -> int | None:
    """CPUs this process may run on (affinity mask: cgroups, taskset, SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _maxrss_mib(who: int) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return rss / _MIB if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, else KiB


def _live_children(proc: psutil.Process) -> dict[int, float]:
    """CPU seconds (user + system) of each live descendant, by pid."""
    out: dict[int, float] = {}
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        return out
    for child in children:
        try:
            t = child.cpu_times()
            out[child.pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


class HostStats:
    """CPU time, utilisation and memory of this process (and its children) over an interval."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._start: tuple[float, Any, dict[int, float]] | None = None
        self._stop: tuple[float, Any, dict[int, float]] | None = None

    def _snapshot(self) -> tuple[float, Any, dict[int, float]]:
        return time.perf_counter(), self._proc.cpu_times(), _live_children(self._proc)

    def start(self) -> None:
        """Begin the interval (again, if called twice)."""
        self._start = self._snapshot()
        self._stop = None

    def stop(self) -> None:
        """End the interval (idempotent: the first stop wins)."""
        if self._start is not None and self._stop is None:
            self._stop = self._snapshot()

    def __enter__(self) -> HostStats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        """The ``"host"`` section of ``metrics.json`` (up to now if not stopped)."""
        import torch  # deferred: keeps this module importable without initialising torch

        start = self._start or self._snapshot()
        end = self._stop or self._snapshot()
        wall = end[0] - start[0]
        t0, t1 = start[1], end[1]
        self_cpu = (t1.user - t0.user) + (t1.system - t0.system)
        reaped = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
        live = sum(cpu - start[2].get(pid, 0.0) for pid, cpu in end[2].items())
        children_cpu = max(0.0, reaped + live)
        cpu_s = self_cpu + children_cpu
        try:
            rss_now = self._proc.memory_info().rss / _MIB
        except psutil.Error:
            rss_now = None
        # The kernel's high-water mark and psutil's RSS are read from counters that lag each
        # other by a few pages: the peak is at least any RSS seen.
        peak_rss = max(_maxrss_mib(resource.RUSAGE_SELF), rss_now or 0.0)
        lifetime = end[1]
        return {
            "process_cpu_s": round(cpu_s, 4),
            # the whole process so far, start-up (imports, data, model) included: what the job
            # costs a study's CPU budget, however busy the machine was
            "process_lifetime_cpu_s": round(lifetime.user + lifetime.system, 4),
            "self_cpu_s": round(self_cpu, 4),
            "children_cpu_s": round(children_cpu, 4),
            "wall_s": round(wall, 4),
            "cpu_util_pct": round(100.0 * cpu_s / wall, 2) if wall > 0 else None,
            "peak_rss_mib": round(peak_rss, 1),
            "rss_mib": round(rss_now, 1) if rss_now is not None else None,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_model": cpu_model(),
            "logical_cpus": logical_cpus(),
            "usable_cpus": usable_cpus(),
        }
