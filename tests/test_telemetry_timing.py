"""StepTimer on CPU: warm-up exclusion, phases, summary shape; exact with a fake clock."""

from __future__ import annotations

import time
import types
from typing import Any

import pytest
import torch

from alexnet_bench.telemetry import timing
from alexnet_bench.telemetry.timing import StepTimer

SUMMARY_KEYS = {
    "steps_timed",
    "warmup_steps_excluded",
    "step_ms",
    "phases_ms",
    "phases_ms_mean",
    "phase_fraction",
    "images_per_s_median",
    "images_per_s_overall",
    "timing_method",
    "host_phases",
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace the timer's clock by a fake one; ``clock.sleep(ms)`` advances it."""
    state = {"t": 100.0}
    fake = types.SimpleNamespace(perf_counter=lambda: state["t"])
    monkeypatch.setattr(timing, "time", fake)

    def sleep(ms: float) -> None:
        state["t"] += ms / 1e3

    fake.sleep = sleep
    return fake


def run_step(timer: StepTimer, sleep: Any, ms: dict[str, float], batch: int = 32) -> None:
    for name, duration in ms.items():
        with timer.phase(name):
            sleep(duration)
    timer.end_step(batch)


STEP = {"data": 1.0, "forward": 4.0, "backward": 8.0, "optimizer": 2.0}  # 15 ms


def test_warmup_excluded_and_exact_medians(clock: Any) -> None:
    timer = StepTimer(torch.device("cpu"), warmup_steps=3)
    for _ in range(3):
        run_step(timer, clock.sleep, {**STEP, "forward": 500.0})  # slow warm-up steps
    for k in range(9):
        run_step(timer, clock.sleep, {**STEP, "backward": 8.0 + k})  # backward 8..16 ms
    s = timer.summary()
    assert set(s) == SUMMARY_KEYS
    assert s["steps_timed"] == 9 and s["warmup_steps_excluded"] == 3
    assert s["timing_method"] == "perf_counter"
    assert list(s["phases_ms"]) == ["data", "forward", "backward", "optimizer"]
    assert s["phases_ms"]["forward"] == pytest.approx(4.0)
    assert s["phases_ms"]["backward"] == pytest.approx(12.0)
    assert s["phases_ms_mean"]["backward"] == pytest.approx(12.0)
    assert s["step_ms"]["median"] == pytest.approx(19.0)
    assert s["step_ms"]["mean"] == pytest.approx(19.0)
    assert s["step_ms"]["p10"] == pytest.approx(15.8)  # 15 + 0.8 * 1
    assert s["step_ms"]["p90"] == pytest.approx(22.2)  # 22 + 0.2 * 1
    assert s["phase_fraction"]["backward"] == pytest.approx(12.0 / 19.0)
    assert s["images_per_s_median"] == pytest.approx(32 / 0.019)
    assert s["images_per_s_overall"] == pytest.approx(9 * 32 / (9 * 0.019))


def test_repeated_phase_adds_up_and_unnamed_gaps_count(clock: Any) -> None:
    timer = StepTimer("cpu", warmup_steps=0)
    for _ in range(3):
        with timer.phase("data"):
            clock.sleep(1)
        for _ in range(2):  # gradient accumulation: two micro-batches
            with timer.phase("forward"):
                clock.sleep(3)
            clock.sleep(0.5)  # untimed work between phases still counts in the step
        timer.end_step(8)
    s = timer.summary()
    assert s["phases_ms"] == pytest.approx({"data": 1.0, "forward": 6.0})
    assert s["step_ms"]["median"] == pytest.approx(8.0)


def test_abandoned_data_fetch_is_discarded(clock: Any) -> None:
    """The epoch's last fetch finds the loader empty; evaluation must not land in a step."""
    timer = StepTimer("cpu", warmup_steps=0)
    for _ in range(2):  # two epochs of two steps
        for _ in range(2):
            run_step(timer, clock.sleep, STEP)
        with timer.phase("data"):  # next(it, None) -> None
            clock.sleep(1)
        clock.sleep(1000)  # evaluation between epochs
    s = timer.summary()
    assert s["steps_timed"] == 4
    assert s["step_ms"]["median"] == pytest.approx(15.0)
    assert s["step_ms"]["p90"] == pytest.approx(15.0)


def test_phaseless_loop_times_between_end_steps(clock: Any) -> None:
    timer = StepTimer("cpu", warmup_steps=1)
    for _ in range(4):
        clock.sleep(10)
        timer.end_step(4)
    s = timer.summary()
    assert s["warmup_steps_excluded"] == 1 and s["steps_timed"] == 3
    assert s["step_ms"]["median"] == pytest.approx(10.0)
    assert s["phases_ms"] == {}


def test_reset_and_rewarm(clock: Any) -> None:
    timer = StepTimer("cpu", warmup_steps=2)
    for _ in range(4):
        run_step(timer, clock.sleep, STEP)
    timer.reset()
    assert timer.summary()["steps_timed"] == 0
    run_step(timer, clock.sleep, STEP)
    assert timer.summary()["steps_timed"] == 1  # warm-up is not repeated after reset()
    timer.reset(rewarm=True)
    for _ in range(3):
        run_step(timer, clock.sleep, STEP)
    s = timer.summary()
    assert s["steps_timed"] == 1 and s["warmup_steps_excluded"] == 2


def test_empty_summary_has_all_keys() -> None:
    s = StepTimer("cpu", warmup_steps=5).summary()
    assert set(s) == SUMMARY_KEYS
    assert s["steps_timed"] == 0 and s["warmup_steps_excluded"] == 0
    assert s["step_ms"] == {"median": None, "mean": None, "p10": None, "p90": None}
    assert s["images_per_s_median"] is None


def test_cuda_device_without_gpu_falls_back_to_perf_counter() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert StepTimer(torch.device("cuda"), sync=True).timing_method == "perf_counter"


def test_real_sleep_step_medians_roughly_right() -> None:
    """Real clock; tolerance is generous (shared CI machines oversleep)."""
    timer = StepTimer("cpu", warmup_steps=1)
    for _ in range(6):
        with timer.phase("data"):
            time.sleep(0.002)
        with timer.phase("forward"):
            time.sleep(0.010)
        timer.end_step(16)
    s = timer.summary()
    assert s["steps_timed"] == 5 and s["warmup_steps_excluded"] == 1
    assert 10.0 <= s["phases_ms"]["forward"] < 60.0
    assert 2.0 <= s["phases_ms"]["data"] < 50.0
    assert 12.0 <= s["step_ms"]["median"] < 100.0
    assert s["phases_ms"]["forward"] <= s["step_ms"]["median"]
    assert 0.1 < s["phase_fraction"]["forward"] <= 1.0
    assert s["images_per_s_median"] == pytest.approx(16 / (s["step_ms"]["median"] / 1e3), rel=0.5)
