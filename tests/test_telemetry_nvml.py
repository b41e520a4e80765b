"""GpuSampler against a scripted fake ``pynvml`` (no GPU needed), plus the no-GPU paths."""

from __future__ import annotations

import csv
import itertools
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexnet_bench.telemetry.nvml import (
    CSV_COLUMNS,
    GpuSampler,
    decode_throttle_reasons,
    resolve_nvml_indices,
)

MIB = 1 << 20


class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    pass


# One device's scripted series (5 samples, 0.1 s apart).
UTIL_GPU = [10, 20, 30, 40, 50]  # mean 30, p50 30, p95 40 + 0.8 * 10 = 48
UTIL_MEM = [5, 5, 5, 5, 25]  # mean 9, p50 5, p95 5 + 0.8 * 20 = 21
MEM_USED_MIB = [1000, 2000, 3000, 4000, 3000]  # peak 4000
POWER_W = [100, 200, 300, 200, 100]  # mean 180, p50 200, p95 200 + 0.8 * 100 = 280, max 300
SM_CLOCK = [1000, 1500, 1500, 1500, 2000]  # mean 1500, p50 1500
REASONS = [0, 0x1, 0x4, 0x4 | 0x40, 0]  # gpu_idle, sw_power_cap, hw_thermal_slowdown
ENERGY_MJ = [5_000_000 + 25_000 * k for k in range(5)]  # counter: 100 J over the run
TRAPEZOID_J = sum((a + b) / 2 * 0.1 for a, b in itertools.pairwise(POWER_W))  # 80 J by hand


class FakeGpu:
    def __init__(self, uuid: str, name: str = "Fake GPU", energy: bool = True, scale: int = 1):
        self.uuid, self.name, self.energy, self.scale = uuid, name, energy, scale
        self.calls: dict[str, int] = {}

    def next(self, what: str, series: list[Any]) -> Any:
        k = self.calls.get(what, 0)
        self.calls[what] = k + 1
        return series[min(k, len(series) - 1)]


def make_fake_nvml(gpus: list[FakeGpu], init_error: Exception | None = None) -> types.ModuleType:
    """A ``pynvml`` stand-in returning the scripted series; temperature is unsupported."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError
    m.NVMLError_NotSupported = FakeNotSupported
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.init_calls = 0
    m.shutdown_calls = 0

    def nvmlInit() -> None:
        if init_error is not None:
            raise init_error
        m.init_calls += 1

    def nvmlShutdown() -> None:
        m.shutdown_calls += 1

    def util(h: FakeGpu) -> Any:
        k = h.next("util", list(range(5)))
        return types.SimpleNamespace(gpu=UTIL_GPU[k] * h.scale, memory=UTIL_MEM[k])

    def meminfo(h: FakeGpu) -> Any:
        used = h.next("mem", MEM_USED_MIB) * MIB
        return types.SimpleNamespace(used=used, total=16000 * MIB, free=16000 * MIB - used)

    def clock(h: FakeGpu, kind: int) -> int:
        return h.next("sm", SM_CLOCK) if kind == m.NVML_CLOCK_SM else 1593

    def temperature(h: FakeGpu, sensor: int) -> int:
        h.next("temp", [0])
        raise FakeNotSupported("Not Supported")

    def energy(h: FakeGpu) -> int:
        if not h.energy:
            h.next("energy", [0])
            raise FakeNotSupported("Not Supported")
        return h.next("energy", ENERGY_MJ)

    m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    m.nvmlDeviceGetUUID = lambda h: h.uuid
    m.nvmlDeviceGetName = lambda h: h.name.encode()  # old bindings return bytes
    m.nvmlDeviceGetUtilizationRates = util
    m.nvmlDeviceGetMemoryInfo = meminfo
    m.nvmlDeviceGetPowerUsage = lambda h: h.next("power", POWER_W) * 1000
    m.nvmlDeviceGetClockInfo = clock
    m.nvmlDeviceGetTemperature = temperature
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: h.next("reasons", REASONS)
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    return m


def uuid(c: str) -> str:
    return f"GPU-{c * 8}-{c * 4}-{c * 4}-{c * 4}-{c * 12}"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Install a one-GPU fake; tests may replace it via ``install``."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def install(gpus: list[FakeGpu], **kw: Any) -> types.ModuleType:
        mod = make_fake_nvml(gpus, **kw)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    install.gpus = [FakeGpu(uuid("a"))]  # type: ignore[attr-defined]
    install.module = install(install.gpus)  # type: ignore[attr-defined]
    yield install


def ticking_clock(step: float = 0.1) -> Any:
    t = iter(np.arange(0, 1000, step))
    return lambda: float(next(t))


def scripted_run(tmp_path: Path, indices: list[int] = [0], n: int = 5) -> GpuSampler:  # noqa: B006
    """``n`` samples of every device, each device's samples exactly 0.1 s apart."""
    clock = ticking_clock(0.1 / len(indices))  # the clock is read once per device and sample
    s = GpuSampler(indices, interval_s=0.1, csv_path=tmp_path / "gpu.csv", clock=clock)
    assert s.available, s.reason
    for _ in range(n):
        s.sample()
    s.stop()
    return s


def test_csv_series_columns_and_values(fake: Any, tmp_path: Path) -> None:
    scripted_run(tmp_path)
    with open(tmp_path / "gpu.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 5
    assert [float(r["t_s"]) for r in rows] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert {r["gpu"] for r in rows} == {"0"}
    assert [int(r["util_gpu_pct"]) for r in rows] == UTIL_GPU
    assert [int(r["util_mem_pct"]) for r in rows] == UTIL_MEM
    assert [float(r["mem_used_mib"]) for r in rows] == MEM_USED_MIB
    assert {r["mem_total_mib"] for r in rows} == {"16000"}
    assert [float(r["power_w"]) for r in rows] == POWER_W
    assert [int(r["sm_clock_mhz"]) for r in rows] == SM_CLOCK
    assert {r["mem_clock_mhz"] for r in rows} == {"1593"}
    assert {r["temp_c"] for r in rows} == {""}  # NotSupported -> empty column
    assert [int(r["throttle_reasons"]) for r in rows] == REASONS
    assert [int(r["energy_mj"]) for r in rows] == ENERGY_MJ


def test_summary_matches_hand_computed_numbers(fake: Any, tmp_path: Path) -> None:
    s = scripted_run(tmp_path).summary(images=50)
    assert s["available"] is True and s["reason"] is None
    assert s["devices"] == [{"index": 0, "nvml_index": 0, "name": "Fake GPU", "uuid": uuid("a")}]
    assert s["samples"] == 5 and s["interval_s"] == 0.1
    assert s["duration_s"] == pytest.approx(0.4)
    assert s["util_gpu_pct"] == pytest.approx({"mean": 30, "p50": 30, "p95": 48})
    assert s["util_mem_pct"] == pytest.approx({"mean": 9, "p50": 5, "p95": 21})
    assert s["mem_used_peak_mib"] == 4000
    assert s["power_w"] == pytest.approx({"mean": 180, "p50": 200, "p95": 280, "max": 300})
    assert s["sm_clock_mhz"] == pytest.approx({"mean": 1500, "p50": 1500})
    assert s["mem_clock_mhz"] == pytest.approx({"mean": 1593})
    assert s["temp_c_max"] is None  # unsupported: nothing invented
    assert s["throttle_reasons_seen"] == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert s["energy_method"] == "counter"
    assert s["energy_j"] == 100.0  # (5_100_000 - 5_000_000) mJ, exact
    assert s["energy_per_image_j"] == 2.0
    assert s["per_device"]["0"]["energy_j"] == 100.0
    assert "temp_c" in s["metric_errors"]


def test_unsupported_metric_is_not_asked_again(fake: Any, tmp_path: Path) -> None:
    scripted_run(tmp_path)
    gpu = fake.gpus[0]
    assert gpu.calls["temp"] == 1 and gpu.calls["util"] == 5


def test_energy_falls_back_to_power_integral(fake: Any, tmp_path: Path) -> None:
    fake([FakeGpu(uuid("a"), energy=False)])
    s = scripted_run(tmp_path).summary(images=40)
    assert pytest.approx(80.0) == TRAPEZOID_J  # 15 + 25 + 25 + 15
    assert s["energy_method"] == "power_integral"
    assert s["energy_j"] == pytest.approx(TRAPEZOID_J)
    assert s["energy_per_image_j"] == pytest.approx(TRAPEZOID_J / 40)
    with open(tmp_path / "gpu.csv", newline="") as fh:
        assert {r["energy_mj"] for r in csv.DictReader(fh)} == {""}


def test_two_devices_pool_distributions_and_sum_energy(fake: Any, tmp_path: Path) -> None:
    fake([FakeGpu(uuid("a")), FakeGpu(uuid("b"), energy=False, scale=2)])
    s = scripted_run(tmp_path, indices=[0, 1]).summary()
    assert s["samples"] == 5
    assert s["per_device"]["0"]["util_gpu_pct"]["mean"] == pytest.approx(30)
    assert s["per_device"]["1"]["util_gpu_pct"]["mean"] == pytest.approx(60)
    assert s["util_gpu_pct"]["mean"] == pytest.approx(45)  # pooled over both GPUs
    assert s["energy_j"] == pytest.approx(100.0 + TRAPEZOID_J)
    assert s["energy_method"] == "mixed"
    assert s["power_w_total_mean"] == pytest.approx(360)
    assert "energy_per_image_j" not in s


@pytest.mark.parametrize(
    ("env", "indices", "expected"),
    [
        (None, [0, 1], [0, 1]),
        ("3", [0], [3]),
        ("2,0", [0, 1], [2, 0]),
        (" 1 , 3 ", [1], [3]),
        ("GPU-cccc", [0], [2]),  # a unique UUID prefix, as CUDA accepts
        (f"{uuid('d')},0", [0, 1], [3, 0]),
        ("1,7,2", [0], [1]),  # CUDA stops parsing at the first invalid ordinal
    ],
)
def test_cuda_visible_devices_mapping(
    fake: Any,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    indices: list[int],
    expected: list[int],
) -> None:
    fake([FakeGpu(uuid(c), name=f"gpu-{c}") for c in "abcd"])
    if env is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    s = GpuSampler(indices, interval_s=0.01)
    assert s.available, s.reason
    assert [d["nvml_index"] for d in s.devices] == expected
    assert [d["index"] for d in s.devices] == indices
    s.stop()


@pytest.mark.parametrize(
    ("env", "indices", "fragment"),
    [("1,7,2", [1], "not visible"), ("", [0], "not visible"), ("MIG-1234", [0], "MIG")],
)
def test_cuda_visible_devices_unmappable(
    fake: Any, monkeypatch: pytest.MonkeyPatch, env: str, indices: list[int], fragment: str
) -> None:
    mod = fake([FakeGpu(uuid(c)) for c in "abcd"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    s = GpuSampler(indices)
    assert not s.available and fragment in (s.reason or "")
    assert mod.shutdown_calls == 1
    assert s.summary() == {"available": False, "reason": s.reason}


def test_torch_uuids_take_precedence_over_env() -> None:
    nvml = [uuid(c) for c in "abcd"]
    cuda = [uuid("c")[4:], uuid("a")[4:].upper()]  # torch's form: no "GPU-" prefix
    indices, method = resolve_nvml_indices([0, 1], nvml, "0,1", [u.lower() for u in cuda])
    assert (indices, method) == ([2, 0], "cuda-uuid")
    # UUIDs that match nothing (e.g. MIG) fall back to the environment
    assert resolve_nvml_indices([0], nvml, "3", ["ffff"]) == ([3], "CUDA_VISIBLE_DEVICES")


def test_thread_start_stop_without_leaks(fake: Any, tmp_path: Path) -> None:
    mod = fake.module
    baseline = threading.active_count()
    sampler = GpuSampler([0], interval_s=0.01, csv_path=tmp_path / "gpu.csv")
    sampler.start()
    sampler.start()  # second start is a no-op
    assert threading.active_count() == baseline + 1
    deadline = time.monotonic() + 5
    while len(sampler.columns()["t_s"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler._thread is not None and not sampler._thread.is_alive()
    assert threading.active_count() == baseline
    assert mod.init_calls == 1 and mod.shutdown_calls == 1
    sampler.stop()  # idempotent
    assert mod.shutdown_calls == 1
    n = sampler.summary()["samples"]
    assert n >= 3
    with open(tmp_path / "gpu.csv") as fh:
        assert len(fh.readlines()) == n + 1
    t = sampler.columns()["t_s"]
    assert np.all(np.diff(t) > 0)
    sampler.sample()  # after stop: nothing, NVML is shut down
    assert len(sampler.columns()["t_s"]) == n


def test_context_manager(fake: Any, tmp_path: Path) -> None:
    baseline = threading.active_count()
    with GpuSampler([0], interval_s=0.01, csv_path=tmp_path / "g.csv") as s:
        deadline = time.monotonic() + 5  # until the sampler has sampled twice, not a fixed nap
        while len(s.columns()["t_s"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert threading.active_count() == baseline
    assert (tmp_path / "g.csv").is_file() and s.summary()["samples"] >= 2
    assert fake.module.shutdown_calls == 1


def _assert_unavailable(s: GpuSampler, fragment: str, tmp_path: Path) -> None:
    assert s.available is False
    assert isinstance(s.reason, str) and fragment in s.reason and "\n" not in s.reason
    baseline = threading.active_count()
    s.start()
    assert threading.active_count() == baseline
    s.stop()
    s.stop()
    assert s.summary() == {"available": False, "reason": s.reason}
    assert s.summary(images=10) == {"available": False, "reason": s.reason}
    assert not (tmp_path / "gpu.csv").exists()


def test_no_pynvml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    _assert_unavailable(GpuSampler([0], csv_path=tmp_path / "gpu.csv"), "pynvml", tmp_path)


def test_nvml_init_fails(fake: Any, tmp_path: Path) -> None:
    mod = fake([FakeGpu(uuid("a"))], init_error=FakeNVMLError("Driver Not Loaded"))
    s = GpuSampler([0], csv_path=tmp_path / "gpu.csv")
    _assert_unavailable(s, "nvmlInit failed", tmp_path)
    assert "Driver Not Loaded" in (s.reason or "")
    assert mod.shutdown_calls == 0  # never initialised


def test_zero_devices(fake: Any, tmp_path: Path) -> None:
    mod = fake([])
    _assert_unavailable(GpuSampler([0], csv_path=tmp_path / "gpu.csv"), "no GPUs", tmp_path)
    assert mod.shutdown_calls == 1


def test_cpu_run_needs_no_nvml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    _assert_unavailable(GpuSampler([], csv_path=tmp_path / "gpu.csv"), "CPU run", tmp_path)


def test_decode_throttle_reasons() -> None:
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x4 | 0x8) == ["sw_power_cap", "hw_slowdown"]
    assert decode_throttle_reasons(0x1000 | 0x1) == ["gpu_idle", "unknown_0x1000"]


def test_summary_before_any_sample_invents_nothing(fake: Any) -> None:
    s = GpuSampler([0], interval_s=0.1)
    summary = s.summary(images=10)
    assert summary["available"] is True and summary["samples"] == 0
    assert summary["util_gpu_pct"] is None and summary["power_w"] is None
    assert summary["energy_j"] is None and summary["energy_per_image_j"] is None
    s.stop()


def test_transient_errors_are_retried_and_old_reason_api_is_used(fake: Any) -> None:
    class FunctionNotFound(FakeNVMLError):
        pass

    mod = fake.module
    calls = {"power": 0}

    def flaky_power(h: FakeGpu) -> int:
        calls["power"] += 1
        if calls["power"] == 1:
            raise FakeNVMLError("Unknown Error")  # not NotSupported: ask again next time
        return 250_000

    def new_api(h: FakeGpu) -> int:
        raise FunctionNotFound("Function Not Found")  # driver older than the bindings

    mod.nvmlDeviceGetPowerUsage = flaky_power
    mod.nvmlDeviceGetCurrentClocksEventReasons = new_api
    mod.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x4
    s = GpuSampler([0], clock=ticking_clock())
    for _ in range(3):
        s.sample()
    s.stop()
    cols = s.columns()
    assert np.isnan(cols["power_w"][0]) and list(cols["power_w"][1:]) == [250.0, 250.0]
    assert list(cols["throttle_reasons"]) == [4.0, 4.0, 4.0]
    assert s.summary()["throttle_reasons_seen"] == ["sw_power_cap"]
    assert "power_w" in s.summary()["metric_errors"]
