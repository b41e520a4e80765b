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


class FakeCuda:
    """CUDA events on a fake GPU timeline: an event records the fake clock's time and completes
    once the 'GPU' has reached it (``done_until``); reading an incomplete event raises."""

    def __init__(self, state: dict[str, float]) -> None:
        self.state = state
        self.done_until = float("-inf")
        self.created = 0
        cuda = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing
                cuda.created += 1
                self.t: float | None = None

            def record(self, stream: object = None) -> None:
                self.t = cuda.state["t"]

            def query(self) -> bool:
                return self.t is not None and self.t <= cuda.done_until

            def synchronize(self) -> None:
                assert self.t is not None
                cuda.done_until = max(cuda.done_until, self.t)

            def elapsed_time(self, end: Event) -> float:
                if not (self.query() and end.query()):
                    raise RuntimeError("event not complete")
                return (end.t - self.t) * 1e3  # type: ignore[operator]

        self.Event = Event

    def lag(self, ms: float) -> None:
        """The GPU has finished everything recorded up to ``ms`` before now."""
        self.done_until = max(self.done_until, self.state["t"] - ms / 1e3)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    state = {"t": 100.0}
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: state["t"]))
    gpu = FakeCuda(state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", gpu.Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(
        torch.cuda, "synchronize", lambda device=None: setattr(gpu, "done_until", float("inf"))
    )

    def sleep(ms: float) -> None:
        state["t"] += ms / 1e3

    gpu.sleep = sleep
    return gpu


def test_cuda_event_path_resolves_lazily_with_bounded_memory(fake_cuda: Any) -> None:
    timer = StepTimer(torch.device("cuda", 0), warmup_steps=2)
    assert timer.timing_method == "cuda_events"
    max_pending = 0
    for _ in range(30):
        run_step(timer, fake_cuda.sleep, STEP)
        fake_cuda.lag(40)  # the GPU runs ~2-3 steps behind the host
        max_pending = max(max_pending, len(timer._pending))
    assert max_pending <= 4
    assert fake_cuda.created <= 40  # events are recycled (8 per step x 30 steps otherwise)
    s = timer.summary()
    assert s["timing_method"] == "cuda_events"
    assert s["steps_timed"] == 28 and s["warmup_steps_excluded"] == 2
    assert s["step_ms"]["median"] == pytest.approx(15.0)
    assert s["step_ms"]["p10"] == pytest.approx(15.0) and s["step_ms"]["p90"] == pytest.approx(15.0)
    assert s["phases_ms"] == pytest.approx(STEP)
    assert not timer._pending


def test_cuda_event_path_phaseless_loop_with_lag(fake_cuda: Any) -> None:
    timer = StepTimer(torch.device("cuda"), warmup_steps=0)
    for k in range(20):
        fake_cuda.sleep(10 + (k % 3))  # 10, 11, 12 ms
        timer.end_step(4)
        fake_cuda.lag(25)
    s = timer.summary()
    assert s["steps_timed"] == 19  # nothing marks the first step's start
    assert s["step_ms"]["mean"] == pytest.approx(sum(10 + (k % 3) for k in range(1, 20)) / 19)
    assert s["step_ms"]["median"] == pytest.approx(11.0)


def test_cuda_event_path_blocks_only_when_far_behind(fake_cuda: Any) -> None:
    timer = StepTimer(torch.device("cuda", 0), warmup_steps=0)
    for _ in range(300):  # the GPU never catches up on its own
        run_step(timer, fake_cuda.sleep, {"forward": 1.0})
        assert len(timer._pending) <= timing._MAX_PENDING
    assert timer.summary()["steps_timed"] == 300
