"""Progress inside an epoch: a log line every ``interval_s`` seconds, and a bar on a terminal.

An ImageNet epoch is thousands of steps, so the per-epoch log line alone says nothing for many
minutes. :class:`Progress` logs, every ``telemetry.progress_interval_s`` seconds of training
(counted from the first step of the run, so a run shorter than the interval logs nothing)::

    progress: epoch 2/90 step 1200/10009 (12%) | 2113 img/s | loss 4.1831 | ETA epoch 8m55s, run 12h3m

through :mod:`logging` (stderr: the terminal, or a Snakemake job's log file). When the stream is
a terminal it also redraws a one-line bar in place (``\\r``, at most every ``bar_interval_s``),
cleared at the end of each epoch. Per step it only reads the clock; the loss (a device tensor)
is read only when a line is due, so no step waits for the GPU because of it.

The run ETA adds the remaining epochs at the duration of the last whole epoch (training,
evaluation and checkpoint); before one has finished, at the current step rate (training only).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .numbers import fmt_duration

log = logging.getLogger(__name__)

BAR_WIDTH = 24


class Progress:
    """Progress of one run's training epochs (see the module docstring).

    ``steps_per_epoch`` may be None (unknown length: no percentage or epoch ETA); ``clock``
    and ``stream`` are injectable for tests. ``enabled=False`` (e.g. DDP ranks other than 0)
    or ``interval_s <= 0`` turns the lines off; the bar needs ``stream.isatty()``.
    """

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int | None,
        interval_s: float = 30.0,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
        logger: logging.Logger = log,
        bar_interval_s: float = 0.5,
    ) -> None:
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch if steps_per_epoch else None
        self.interval_s = interval_s
        self.lines = enabled and interval_s > 0
        stream = stream if stream is not None else sys.stderr
        self.bar = enabled and bool(getattr(stream, "isatty", lambda: False)())
        self.clock, self.stream, self.logger = clock, stream, logger
        self.bar_interval_s = bar_interval_s
        self._run_start: float | None = None
        self._next_line = 0.0
        self._next_bar = 0.0
        self._bar_shown = False
        self._last_epoch_s: float | None = None
        self._epoch = 0
        self._epoch_start = 0.0
        self._step = 0
        self._window_start = 0.0
        self._window_images = 0
        self._epoch_images = 0

    @property
    def active(self) -> bool:
        return self.lines or self.bar

    def start_epoch(self, epoch: int) -> None:
        """Call before the epoch's first step."""
        if not self.active:
            return
        now = self.clock()
        if self._run_start is None:
            self._run_start = now
            self._next_line = now + self.interval_s
        elif self._epoch:
            self._last_epoch_s = now - self._epoch_start  # a whole epoch, evaluation included
        self._epoch, self._epoch_start, self._step = epoch, now, 0
        self._window_start, self._window_images, self._epoch_images = now, 0, 0
        self._next_bar = now

    def step(self, images: int, loss: Callable[[], float]) -> None:
        """Call after each step with the images it processed (all ranks) and a loss reader."""
        if not self.active:
            return
        self._step += 1
        self._window_images += images
        self._epoch_images += images
        now = self.clock()
        if self.lines and now >= self._next_line:
            self._clear_bar()
            self.logger.info("%s", self.line(now, loss()))
            missed = (now - self._next_line) // self.interval_s  # lines due while not stepping
            self._next_line += (missed + 1) * self.interval_s
            self._window_start, self._window_images = now, 0
        if self.bar and now >= self._next_bar:
            self._draw_bar(now)
            self._next_bar = now + self.bar_interval_s

    def end_epoch(self) -> None:
        """Call after the epoch's last step (clears the bar)."""
        self._clear_bar()

    # -- text -------------------------------------------------------------------------------
    def _rate(self, now: float) -> float:
        """Seconds per step in this epoch so far."""
        return (now - self._epoch_start) / max(self._step, 1)

    def etas(self, now: float) -> tuple[float | None, float | None]:
        """Seconds left in this epoch and in the run (None when the epoch length is unknown)."""
        if self.steps_per_epoch is None:
            return None, None
        epoch_left = max(self.steps_per_epoch - self._step, 0) * self._rate(now)
        per_epoch = self._last_epoch_s or self.steps_per_epoch * self._rate(now)
        return epoch_left, epoch_left + max(self.epochs - self._epoch, 0) * per_epoch

    def line(self, now: float, loss: float) -> str:
        """The periodic log line."""
        window = max(now - self._window_start, 1e-9)
        step = f"step {self._step}"
        if self.steps_per_epoch:
            step += f"/{self.steps_per_epoch} ({100 * self._step // self.steps_per_epoch}%)"
        text = (
            f"progress: epoch {self._epoch}/{self.epochs} {step} | "
            f"{self._window_images / window:.0f} img/s | loss {loss:.4f}"
        )
        epoch_eta, run_eta = self.etas(now)
        if epoch_eta is not None and run_eta is not None:
            text += f" | ETA epoch {fmt_duration(epoch_eta)}, run {fmt_duration(run_eta)}"
        return text

    def bar_text(self, now: float) -> str:
        """The terminal bar (no loss: reading it would wait for the device)."""
        rate = self._epoch_images / max(now - self._epoch_start, 1e-9)
        head = f"epoch {self._epoch}/{self.epochs}"
        if not self.steps_per_epoch:
            return f"{head} step {self._step} {rate:.0f} img/s"
        filled = min(BAR_WIDTH, BAR_WIDTH * self._step // self.steps_per_epoch)
        epoch_eta, run_eta = self.etas(now)
        return (
            f"{head} |{'#' * filled}{'.' * (BAR_WIDTH - filled)}| {self._step}/"
            f"{self.steps_per_epoch} {rate:.0f} img/s ETA {fmt_duration(epoch_eta or 0)}"
            f" (run {fmt_duration(run_eta or 0)})"
        )

    def _draw_bar(self, now: float) -> None:
        self.stream.write("\r" + self.bar_text(now) + "\x1b[K")
        self.stream.flush()
        self._bar_shown = True

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._bar_shown = False


class CountProgress:
    """Progress of a job counted in items (a prepared-data build): a log line every
    ``interval_s`` seconds with done/total, the rate and the ETA."""

    def __init__(
        self,
        name: str,
        total: int,
        interval_s: float,
        *,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.total, self.interval_s = name, total, interval_s
        self.logger, self.clock = logger, clock
        self.start = self.last = clock()

    def update(self, done: int) -> None:
        now = self.clock()
        if self.interval_s <= 0 or now - self.last < self.interval_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        self.logger.info(
            "%s: %d/%d images (%.1f%%), %.0f images/s, ETA %s",
            self.name,
            done,
            self.total,
            100 * done / self.total,
            rate,
            fmt_duration(eta),
        )
