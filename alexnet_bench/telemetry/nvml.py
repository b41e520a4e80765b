"""Background NVML sampler: GPU utilisation, memory, power, clocks, temperature and energy.

:class:`GpuSampler` polls NVML from a daemon thread every ``interval_s`` seconds, keeps the
series in compact arrays, writes them (long format, one row per sample and GPU) to a CSV file
atomically on :meth:`GpuSampler.stop`, and reduces them to the ``"gpu"`` section of
``metrics.json`` with :meth:`GpuSampler.summary`. Every NVML call is guarded on its own: a
metric the GPU or driver does not support (``NVMLError_NotSupported``) leaves its column empty
and is not asked again; nothing ever kills the training job. Without NVML, without a GPU, or for
a CPU run the sampler is *unavailable*: ``available`` is False, ``reason`` says why in one line,
``start``/``stop`` do nothing and the summary contains no numbers.

Device indices are the job's CUDA indices (``cuda:0`` ...). NVML ignores
``CUDA_VISIBLE_DEVICES`` and enumerates GPUs in PCI bus order, so they are mapped to NVML
indices: by UUID through torch when CUDA is already initialised in this process (exact, also
under ``CUDA_DEVICE_ORDER=FASTEST_FIRST``), else by parsing ``CUDA_VISIBLE_DEVICES`` (integers or
``GPU-`` UUIDs / unique UUID prefixes; parsing stops at the first invalid entry, as CUDA does).

How to read the numbers (utilisation is not occupancy, power is smoothed, the energy counter
is coarse in time, board scope): docs/telemetry.md, "Pitfalls".
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import logging
import math
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..io import atomic_path

__all__ = ["CSV_COLUMNS", "THROTTLE_REASONS", "GpuSampler", "decode_throttle_reasons"]

log = logging.getLogger(__name__)

#: Columns of the CSV written by :meth:`GpuSampler.stop` (long format: one row per sample and GPU).
CSV_COLUMNS = (
    "t_s",
    "gpu",
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_mib",
    "mem_total_mib",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temp_c",
    "throttle_reasons",
    "energy_mj",
)
_METRICS = CSV_COLUMNS[2:]
_INT_COLUMNS = frozenset({"gpu", "throttle_reasons", "energy_mj"})

#: NVML clock-event ("throttle") reason bits (nvml.h ``nvmlClocksEventReason*``).
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}

_MIB = float(1 << 20)
_NAN = float("nan")


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock-event reason bitmask (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"unknown_{unknown:#x}")
    return names


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bare_uuid(uuid: str) -> str:
    """``GPU-58e0...`` / ``58E0...`` -> ``58e0...`` (for comparing NVML and CUDA UUIDs)."""
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def _torch_cuda_uuids() -> list[str] | None:
    """UUIDs of the CUDA devices this process sees, only if torch already initialised CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        return [
            _bare_uuid(str(torch.cuda.get_device_properties(i).uuid))
            for i in range(torch.cuda.device_count())
        ]
    except Exception:  # ROCm, old torch without .uuid, a broken context: use the env mapping
        return None


def resolve_nvml_indices(
    device_indices: Sequence[int],
    nvml_uuids: Sequence[str],
    cuda_visible_devices: str | None,
    cuda_uuids: Sequence[str] | None = None,
) -> tuple[list[int], str]:
    """Map job-local CUDA indices to NVML indices; return ``(indices, method)``.

    ``nvml_uuids`` are the UUIDs of all GPUs in NVML order. ``cuda_uuids`` (the UUIDs torch
    reports for each visible CUDA device) give an exact mapping when they all match NVML;
    otherwise ``cuda_visible_devices`` is parsed like CUDA does. Raises :class:`ValueError` with
    a one-line message when an index cannot be mapped.
    """
    bare_nvml = [_bare_uuid(u) for u in nvml_uuids]
    if cuda_uuids and all(u in bare_nvml for u in cuda_uuids):
        if any(not 0 <= i < len(cuda_uuids) for i in device_indices):
            raise ValueError(
                f"device index out of range: {list(device_indices)} (CUDA sees {len(cuda_uuids)})"
            )
        return [bare_nvml.index(cuda_uuids[i]) for i in device_indices], "cuda-uuid"
    if cuda_visible_devices is None:
        visible = list(range(len(nvml_uuids)))
        method = "identity"
    else:
        visible = []
        for entry in (e.strip() for e in cuda_visible_devices.split(",")):
            if entry.lower().startswith("mig-"):
                raise ValueError(
                    f"CUDA_VISIBLE_DEVICES has a MIG device ({entry}); per-MIG-instance NVML "
                    "sampling is not supported"
                )
            if entry.lstrip("-").isdigit():
                idx = int(entry)
                if idx < 0 or idx >= len(nvml_uuids) or idx in visible:
                    break  # CUDA stops at the first invalid ordinal
                visible.append(idx)
                continue
            prefix = _bare_uuid(entry)
            matches = [i for i, u in enumerate(bare_nvml) if prefix and u.startswith(prefix)]
            if len(matches) != 1 or matches[0] in visible:
                break  # unknown or ambiguous UUID: CUDA stops here too
            visible.append(matches[0])
        method = "CUDA_VISIBLE_DEVICES"
    bad = [i for i in device_indices if not 0 <= i < len(visible)]
    if bad:
        raise ValueError(
            f"device index {bad[0]} is not visible (CUDA_VISIBLE_DEVICES="
            f"{cuda_visible_devices if cuda_visible_devices is not None else 'unset'}, "
            f"{len(visible)} visible of {len(nvml_uuids)} NVML GPUs)"
        )
    return [visible[i] for i in device_indices], method


def _stats(values: np.ndarray, keys: Sequence[str]) -> dict[str, float | None] | None:
    """mean/p50/p95/max of the finite values (None when there are none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    fns = {
        "mean": lambda: float(np.mean(v)),
        "p50": lambda: float(np.percentile(v, 50)),
        "p95": lambda: float(np.percentile(v, 95)),
        "max": lambda: float(np.max(v)),
    }
    return {k: fns[k]() for k in keys}


def _max(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(v.max()) if v.size else None


def _energy(
    t: np.ndarray, energy_mj: np.ndarray, power_w: np.ndarray
) -> tuple[float | None, str | None]:
    """Energy (J) of one device: counter delta if possible, else trapezoid of power over time."""
    ok = np.isfinite(energy_mj)
    if ok.sum() >= 2:
        e = energy_mj[ok]
        delta = float(e[-1] - e[0])
        if delta >= 0 and np.all(np.diff(e) >= 0):  # a counter reset (driver reload) -> integral
            return delta / 1000.0, "counter"
    ok = np.isfinite(power_w)
    if ok.sum() >= 2:
        p, tt = power_w[ok], t[ok]
        return float(np.sum((p[1:] + p[:-1]) * np.diff(tt)) / 2.0), "power_integral"
    return None, None


class GpuSampler:
    """Sample NVML metrics of ``device_indices`` every ``interval_s`` seconds in a daemon thread.

    ``device_indices`` are the job's CUDA indices (mapped to NVML indices, see the module
    docstring); an empty sequence gives an unavailable sampler (a CPU run). ``clock`` (seconds,
    monotonic) can be injected for tests; :meth:`sample` takes one sample synchronously.
    """

    def __init__(
        self,
        device_indices: Sequence[int],
        interval_s: float = 0.1,
        csv_path: str | Path | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.device_indices = [int(i) for i in device_indices]
        self.interval_s = float(interval_s)
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.available = False
        self.reason: str | None = None
        self.devices: list[dict[str, Any]] = []
        self.index_mapping: str | None = None
        self.metric_errors: dict[str, str] = {}  # metric -> first error seen
        self._clock = clock
        self._nvml: ModuleType | None = None
        self._handles: list[Any] = []
        self._t0: float | None = None
        self._cols: dict[str, array] = {c: array("d") for c in CSV_COLUMNS}
        self._old_reasons_api = False
        self._skip: set[tuple[int, str]] = set()  # (device position, metric) not supported
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._shutdown_done = False
        self._init_nvml()

    # -- set-up -----------------------------------------------------------------------------
    def _unavailable(self, reason: str) -> None:
        self.available = False
        self.reason = reason
        self._handles = []
        if self._nvml is not None and not self._shutdown_done:
            self._shutdown_done = True
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _init_nvml(self) -> None:
        if not self.device_indices:
            self.reason = "no GPU devices to sample (CPU run)"
            return
        try:
            nvml = importlib.import_module("pynvml")
        except Exception as exc:
            self.reason = f"pynvml not importable ({type(exc).__name__}: {exc})"
            return
        try:
            nvml.nvmlInit()
        except Exception as exc:
            self.reason = f"nvmlInit failed ({type(exc).__name__}: {exc})"
            return
        self._nvml = nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
            if count == 0:
                self._unavailable("NVML reports no GPUs")
                return
            all_handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in all_handles]
            indices, self.index_mapping = resolve_nvml_indices(
                self.device_indices,
                uuids,
                os.environ.get("CUDA_VISIBLE_DEVICES"),
                _torch_cuda_uuids(),
            )
            self._handles = [all_handles[i] for i in indices]
            for local, nvml_index, handle in zip(
                self.device_indices, indices, self._handles, strict=True
            ):
                try:
                    name = _text(nvml.nvmlDeviceGetName(handle))
                except Exception:
                    name = None
                self.devices.append(
                    {
                        "index": local,
                        "nvml_index": nvml_index,
                        "name": name,
                        "uuid": uuids[nvml_index],
                    }
                )
        except ValueError as exc:
            self._unavailable(str(exc))
            return
        except Exception as exc:
            self._unavailable(f"NVML device query failed ({type(exc).__name__}: {exc})")
            return
        self.available = True

    # -- sampling ---------------------------------------------------------------------------
    def _query(self, pos: int, metric: str, fn: Callable[[], float]) -> float:
        """One guarded NVML call; NaN (empty CSV cell) when it fails."""
        if (pos, metric) in self._skip:
            return _NAN
        try:
            return float(fn())
        except Exception as exc:
            not_supported = getattr(self._nvml, "NVMLError_NotSupported", None)
            if not_supported is not None and isinstance(exc, not_supported):
                self._skip.add((pos, metric))
            with self._lock:
                self.metric_errors.setdefault(metric, f"{type(exc).__name__}: {exc}"[:160])
            return _NAN

    def _clock_reasons(self, handle: Any) -> int:
        """Clock-event ("throttle") reasons: the newer NVML name first, the old one as fallback."""
        nvml = self._nvml
        fn = (
            None
            if self._old_reasons_api
            else getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        )
        if fn is not None:
            try:
                return fn(handle)
            except Exception as exc:  # a driver older than the binding lacks the new symbol
                if "FunctionNotFound" not in type(exc).__name__:
                    raise
                self._old_reasons_api = True
        return nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)

    def _sample_device(self, pos: int, handle: Any) -> dict[str, float]:
        nvml = self._nvml
        assert nvml is not None
        q = self._query
        util = None

        def utilisation(field: str) -> float:
            nonlocal util
            if util is None:
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
            return getattr(util, field)

        mem = None

        def memory(field: str) -> float:
            nonlocal mem
            if mem is None:
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            return getattr(mem, field) / _MIB

        return {
            "util_gpu_pct": q(pos, "util_gpu_pct", lambda: utilisation("gpu")),
            "util_mem_pct": q(pos, "util_mem_pct", lambda: utilisation("memory")),
            "mem_used_mib": q(pos, "mem_used_mib", lambda: memory("used")),
            "mem_total_mib": q(pos, "mem_total_mib", lambda: memory("total")),
            "power_w": q(pos, "power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
            "sm_clock_mhz": q(
                pos, "sm_clock_mhz", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
            ),
            "mem_clock_mhz": q(
                pos,
                "mem_clock_mhz",
                lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
            ),
            "temp_c": q(
                pos,
                "temp_c",
                lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
            ),
            "throttle_reasons": q(pos, "throttle_reasons", lambda: self._clock_reasons(handle)),
            "energy_mj": q(
                pos, "energy_mj", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            ),
        }

    def sample(self) -> None:
        """Take one sample of every device now (the thread calls this; usable directly)."""
        if not self.available or self._shutdown_done:
            return
        for pos, handle in enumerate(self._handles):
            now = self._clock()
            if self._t0 is None:
                self._t0 = now
            row = self._sample_device(pos, handle)
            with self._lock:
                self._cols["t_s"].append(now - self._t0)
                self._cols["gpu"].append(self.device_indices[pos])
                for metric in _METRICS:
                    self._cols[metric].append(row[metric])

    def _run(self) -> None:
        next_t = time.perf_counter()
        try:
            while True:
                self.sample()
                next_t += self.interval_s
                now = time.perf_counter()
                if next_t < now:  # fell behind (slow NVML call): skip, don't burst
                    next_t = now
                if self._stop_event.wait(next_t - now):
                    break
            self.sample()  # a final sample at stop, so the energy counter covers the whole run
        except Exception as exc:  # never propagate into the job; keep what was sampled
            log.warning("GPU sampler thread stopped: %s: %s", type(exc).__name__, exc)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sampling thread (daemon). No-op when unavailable or already started."""
        if not self.available or self._thread is not None or self._stopped:
            return
        if self._t0 is None:
            self._t0 = self._clock()
        self._thread = threading.Thread(target=self._run, name="GpuSampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Join the thread, write ``csv_path`` atomically, shut NVML down. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        thread_alive = False
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join(timeout=max(10.0, 5 * self.interval_s))
            thread_alive = self._thread.is_alive()
            if thread_alive:
                log.warning("GPU sampler thread did not stop (hung NVML call?); leaving NVML up")
        if self.available and self.csv_path is not None:
            try:
                self.write_csv(self.csv_path)
            except OSError as exc:
                log.warning("could not write %s: %s", self.csv_path, exc)
        if self._nvml is not None and not self._shutdown_done and not thread_alive:
            self._shutdown_done = True
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)

    def __enter__(self) -> GpuSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- output -----------------------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """The sampled series as float arrays (NaN where a metric was unavailable)."""
        with self._lock:
            return {c: np.frombuffer(a, dtype=np.float64).copy() for c, a in self._cols.items()}

    def write_csv(self, path: str | Path) -> None:
        """Write the samples (long format, :data:`CSV_COLUMNS`) atomically; empty cell = no data."""
        cols = self.columns()
        n = len(cols["t_s"])

        def cell(col: str, v: float) -> str:
            if not math.isfinite(v):
                return ""
            if col in _INT_COLUMNS:
                return str(int(v))
            return f"{v:.4f}" if col == "t_s" else f"{v:.6g}"

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for i in range(n):
                writer.writerow([cell(c, cols[c][i]) for c in CSV_COLUMNS])

    def _device_summary(self, cols: dict[str, np.ndarray]) -> dict[str, Any]:
        t = cols["t_s"]
        energy_j, method = _energy(t, cols["energy_mj"], cols["power_w"])
        masks = cols["throttle_reasons"][np.isfinite(cols["throttle_reasons"])]
        seen = 0
        for m in masks.astype(np.int64):
            seen |= int(m)
        return {
            "samples": len(t),
            "duration_s": float(t[-1] - t[0]) if len(t) else 0.0,
            "util_gpu_pct": _stats(cols["util_gpu_pct"], ("mean", "p50", "p95")),
            "util_mem_pct": _stats(cols["util_mem_pct"], ("mean", "p50", "p95")),
            "mem_used_peak_mib": _max(cols["mem_used_mib"]),
            "mem_total_mib": _max(cols["mem_total_mib"]),
            "power_w": _stats(cols["power_w"], ("mean", "p50", "p95", "max")),
            "sm_clock_mhz": _stats(cols["sm_clock_mhz"], ("mean", "p50")),
            "mem_clock_mhz": _stats(cols["mem_clock_mhz"], ("mean",)),
            "temp_c_max": _max(cols["temp_c"]),
            "throttle_reasons_seen": decode_throttle_reasons(seen),
            "energy_j": energy_j,
            "energy_method": method,
        }

    def summary(self, images: int | None = None) -> dict[str, Any]:
        """The ``"gpu"`` section of ``metrics.json`` (see ``docs/telemetry.md`` for the shape).

        Top-level distributions pool the samples of all devices (per-GPU values);
        ``energy_j`` and ``power_w_total_mean`` are sums over devices. ``images`` (processed
        during sampling) adds ``energy_per_image_j``.
        """
        if not self.available:
            return {"available": False, "reason": self.reason}
        cols = self.columns()
        per_device: dict[str, dict[str, Any]] = {}
        for dev in self.devices:
            mask = cols["gpu"] == dev["index"]
            per_device[str(dev["index"])] = self._device_summary(
                {c: a[mask] for c, a in cols.items()}
            )
        pooled = self._device_summary(cols)
        with self._lock:
            metric_errors = dict(self.metric_errors)
        energies = [d["energy_j"] for d in per_device.values()]
        methods = {d["energy_method"] for d in per_device.values()}
        if any(e is None for e in energies):
            energy_j, method = None, None
        else:
            energy_j = float(sum(energies))
            method = methods.pop() if len(methods) == 1 else "mixed"
        power_means = [(d["power_w"] or {}).get("mean") for d in per_device.values()]
        out: dict[str, Any] = {
            "available": True,
            "reason": None,
            "devices": self.devices,
            "index_mapping": self.index_mapping,
            "interval_s": self.interval_s,
            "samples": min((d["samples"] for d in per_device.values()), default=0),
            "duration_s": pooled["duration_s"],
            **{
                k: pooled[k]
                for k in (
                    "util_gpu_pct",
                    "util_mem_pct",
                    "mem_used_peak_mib",
                    "power_w",
                    "sm_clock_mhz",
                    "mem_clock_mhz",
                    "temp_c_max",
                    "throttle_reasons_seen",
                )
            },
            "power_w_total_mean": (
                float(sum(power_means)) if power_means and None not in power_means else None
            ),
            "energy_j": energy_j,
            "energy_method": method,
            "metric_errors": metric_errors,
            "per_device": per_device,
        }
        if images:
            out["images"] = int(images)
            out["energy_per_image_j"] = energy_j / images if energy_j is not None else None
        return out
