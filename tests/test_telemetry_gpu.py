"""Real NVML sampling and CUDA-event step timing (skipped without a CUDA GPU)."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import pytest
import torch

from alexnet_bench.telemetry import GpuSampler, StepTimer, device_peak_flops
from alexnet_bench.telemetry.nvml import CSV_COLUMNS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def busy(seconds: float, n: int = 4096) -> None:
    a = torch.randn(n, n, device="cuda")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


def test_real_nvml_sampler(tmp_path: Path) -> None:
    torch.cuda.init()
    baseline = threading.active_count()
    with GpuSampler([0], interval_s=0.05, csv_path=tmp_path / "gpu.csv") as sampler:
        assert sampler.available, sampler.reason
        busy(1.0)
    assert threading.active_count() == baseline
    s = sampler.summary(images=1000)
    assert s["available"] and s["samples"] >= 5
    assert s["devices"][0]["name"] == torch.cuda.get_device_name(0)
    assert s["util_gpu_pct"]["p95"] > 0
    assert 0 < s["mem_used_peak_mib"] <= s["per_device"]["0"]["mem_total_mib"]
    assert s["power_w"]["mean"] > 0
    assert s["energy_j"] > 0 and s["energy_method"] in ("counter", "power_integral")
    assert s["energy_per_image_j"] == pytest.approx(s["energy_j"] / 1000)
    with open(tmp_path / "gpu.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        assert len(list(reader)) == s["samples"]


def test_cuda_event_timer() -> None:
    device = torch.device("cuda", 0)
    timer = StepTimer(device, warmup_steps=2)
    assert timer.timing_method == "cuda_events"
    a = torch.randn(2048, 2048, device=device)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(40):
        with timer.phase("data"):
            b = a
        with timer.phase("forward"):
            c = b @ b
        with timer.phase("backward"):
            c = c @ b @ b
        timer.end_step(64)
        assert len(timer._pending) <= 256  # resolved lazily, bounded
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - t0) * 1e3
    s = timer.summary()
    assert s["steps_timed"] == 38 and s["warmup_steps_excluded"] == 2
    assert s["step_ms"]["median"] > 0
    assert s["phases_ms"]["backward"] > s["phases_ms"]["forward"] > 0  # 2 matmuls vs 1
    assert s["phases_ms"]["forward"] + s["phases_ms"]["backward"] <= 1.1 * s["step_ms"]["median"]
    assert s["step_ms"]["mean"] * 38 <= 1.1 * wall_ms
    assert s["images_per_s_median"] > 0


def test_cuda_peak_flops() -> None:
    p = device_peak_flops(torch.device("cuda", 0), torch.bfloat16)
    assert p["peak_flops"] > 1e12
    assert p["source"].startswith(("spec-table:", "measured-matmul"))
