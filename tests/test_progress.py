"""Progress inside an epoch: periodic lines (fake clock), the terminal bar, and the Trainer hook."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from alexnet_bench.config import RunConfig
from alexnet_bench.numbers import fmt_duration
from alexnet_bench.progress import Progress
from alexnet_bench.train import run_training

from .conftest import tiny_run


class Clock:
    """A fake monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class LossReader:
    """Counts how often the loss is read (each read would be a host-device sync)."""

    def __init__(self, value: float = 2.5) -> None:
        self.value, self.reads = value, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.value


def run_epochs(
    progress: Progress,
    clock: Clock,
    epochs: list[int],
    steps: int,
    step_s: float,
    eval_s: float = 0.0,
    loss: LossReader | None = None,
) -> None:
    loss = loss or LossReader()
    for epoch in epochs:
        progress.start_epoch(epoch)
        for _ in range(steps):
            clock.now += step_s
            progress.step(64, loss)
        progress.end_epoch()
        clock.now += eval_s


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "alexnet_bench.progress"]


def test_lines_at_the_interval_with_rate_loss_and_etas(caplog: pytest.LogCaptureFixture) -> None:
    clock, loss = Clock(), LossReader(1.23456)
    progress = Progress(
        epochs=3, steps_per_epoch=100, interval_s=30, clock=clock, stream=io.StringIO()
    )
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        run_epochs(progress, clock, [1], steps=100, step_s=0.5, loss=loss)  # 50 s
    lines = messages(caplog)
    assert lines == [
        "progress: epoch 1/3 step 60/100 (60%) | 128 img/s | loss 1.2346 | ETA epoch 20s, run 2m00s"
    ]
    assert loss.reads == 1  # read only when a line is due, never per step


def test_a_run_shorter_than_the_interval_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock, loss = Clock(), LossReader()
    progress = Progress(5, 20, interval_s=30, clock=clock, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        run_epochs(progress, clock, [1, 2, 3, 4, 5], steps=20, step_s=0.25, loss=loss)  # 25 s
    assert messages(caplog) == [] and loss.reads == 0


def test_interval_runs_across_epochs_and_run_eta_includes_evaluation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Epochs of 10 s training + 5 s evaluation, a line due every 8 s of the run (not reset at
    epoch boundaries; one due during an evaluation comes with the next step). The run ETA
    counts whole epochs (15 s) once one has been measured, before that 10 steps at the rate."""
    clock = Clock()
    progress = Progress(4, 10, interval_s=8, clock=clock, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        run_epochs(progress, clock, [1, 2, 3, 4], steps=10, step_s=1.0, eval_s=5.0)
    lines = messages(caplog)
    steps = [re.search(r"epoch (\d)/4 step (\d+)/10", line).groups() for line in lines]
    assert steps == [("1", "8"), ("2", "1"), ("2", "9"), ("3", "2"), ("3", "10"), ("4", "3")]
    etas = [line.split(" | ETA ")[1] for line in lines]
    assert etas == [
        "epoch 2s, run 32s",
        "epoch 9s, run 39s",
        "epoch 1s, run 31s",
        "epoch 8s, run 23s",
        "epoch 0s, run 15s",
        "epoch 7s, run 7s",
    ]


def test_rate_is_over_the_window_since_the_last_line() -> None:
    clock = Clock()
    progress = Progress(1, 1000, interval_s=10, clock=clock, stream=io.StringIO())
    progress.start_epoch(1)
    for _ in range(10):  # 10 s at 1 step/s
        clock.now += 1.0
        progress.step(64, LossReader())
    clock.now += 5.0  # 20 steps in 5 s
    for _ in range(20):
        progress.step(64, LossReader())
    assert "| 256 img/s |" in progress.line(clock.now, 0.0)


def test_terminal_bar_is_drawn_in_place_and_cleared(caplog: pytest.LogCaptureFixture) -> None:
    clock, term = Clock(), Terminal()
    progress = Progress(2, 40, interval_s=30, clock=clock, stream=term)
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        run_epochs(progress, clock, [1], steps=40, step_s=0.125, loss=LossReader())
    out = term.getvalue()
    frames = [f for f in out.split("\r") if f]
    assert frames[0] == "epoch 1/2 |" + "." * 24 + "| 1/40 512 img/s ETA 5s (run 10s)\x1b[K"
    assert frames[-2].startswith("epoch 1/2 |" + "#" * 22 + "..| 37/40 512 img/s ETA 0s")
    assert len(frames) == 11  # 5 s of steps redrawn every 0.5 s, then the clearing frame
    assert out.endswith("\r\x1b[K") and messages(caplog) == []  # epoch shorter than 30 s


def test_no_bar_without_a_terminal_and_nothing_when_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, plain = Clock(), io.StringIO()
    off = Progress(1, 10, interval_s=1, clock=clock, stream=Terminal(), enabled=False)
    never = Progress(1, 10, interval_s=0, clock=clock, stream=plain)
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        for progress in (off, never):
            run_epochs(progress, clock, [1], steps=10, step_s=1.0)
    assert messages(caplog) == [] and plain.getvalue() == ""


def test_unknown_epoch_length_has_no_eta() -> None:
    clock = Clock()
    progress = Progress(2, None, interval_s=60, clock=clock, stream=io.StringIO())
    progress.start_epoch(1)
    clock.now += 6
    progress.step(32, LossReader())
    assert progress.line(clock.now, 1.0) == "progress: epoch 1/2 step 1 | 5 img/s | loss 1.0000"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (206, "3m26s"), (43380, "12h3m")]
)
def test_fmt_duration(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_training_logs_progress_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Trainer hook: with a tiny interval every step logs, with the run's real counts."""
    cfg = RunConfig(tiny_run(telemetry={"progress_interval_s": 1e-9}))
    with caplog.at_level(logging.INFO, logger="alexnet_bench.progress"):
        metrics = run_training(cfg, tmp_path)
    lines = messages(caplog)
    steps = 160 // 32
    assert len(lines) == cfg.train.epochs * steps
    assert lines[0].startswith(f"progress: epoch 1/2 step 1/{steps} (20%) | ")
    assert lines[-1].startswith(f"progress: epoch 2/2 step {steps}/{steps} (100%) | ")
    last_loss = float(re.search(r"loss (\S+)", lines[-1]).group(1))
    assert last_loss == pytest.approx(metrics["final"]["train_loss"], abs=1e-4)
