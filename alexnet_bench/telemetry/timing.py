"""Per-step timing of a training loop, warm-up excluded, with a breakdown into phases.

:class:`StepTimer` times each training step and named phases inside it (``"data"``, ``"h2d"``,
``"forward"``, ``"backward"``, ``"optimizer"`` or any name)::

    timer = StepTimer(device, warmup_steps=5)
    it = iter(loader)
    while True:
        with timer.phase("data"):
            batch = next(it, None)
        if batch is None:
            break
        with timer.phase("forward"): ...
        with timer.phase("backward"): ...
        with timer.phase("optimizer"): ...
        timer.end_step(batch_size)

A step starts when its first phase is entered (or, with no phases, at the previous
``end_step``) and ends at :meth:`StepTimer.end_step`. The first ``warmup_steps`` steps (cuDNN
autotuning, allocator growth, lazy initialisation) are excluded from every statistic and
counted separately.

How time is measured:

* **CPU** (or ``sync=False``): ``time.perf_counter`` for everything. CPU execution is
  synchronous, so phase times are the work done in them. On CUDA with ``sync=False`` phase
  times are only kernel *launch* times; the step time is still about right in steady state
  (the host is throttled by the full launch queue) but the breakdown is not.
* **CUDA** with ``sync=True``: device phases and the step span are timed with pairs of
  ``torch.cuda.Event`` recorded on the current stream, i.e. on the GPU's own timeline, without a
  host synchronisation per step. Events are resolved lazily: at each ``end_step`` the finished
  ones are read (``Event.query``, non-blocking) and recycled, so memory stays bounded; the rest
  at :meth:`StepTimer.summary`, which synchronises the device once. *Host phases* (default:
  ``"data"``, the host waiting for the loader) are timed with ``perf_counter``; they can overlap
  GPU work of the previous step, so on CUDA the phases need not add up to the step time.

An epoch's last ``data`` phase (the one that finds the iterator exhausted) leaves an open step
that never reaches ``end_step``; when the next step re-enters the same host phase before any
device phase, that abandoned step is discarded rather than stretched over the evaluation.
:meth:`StepTimer.discard_step` does the same explicitly.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["StepTimer"]

_MAX_PENDING = 256  # CUDA steps kept unresolved before end_step blocks on the oldest one


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Step:
    """One step in flight: host times (ms) and, on CUDA, unresolved event pairs."""

    host_start: float
    start_event: Any = None
    end_event: Any = None
    host_ms: dict[str, float] = field(default_factory=dict)
    event_pairs: list[tuple[str, Any, Any]] = field(default_factory=list)
    device_phase_seen: bool = False
    batch: int = 0
    timed: bool = True
    step_ms: float = 0.0


class StepTimer:
    """Time training steps and their phases on ``device`` (see the module docstring).

    ``host_phases`` are phases timed on the host even on CUDA (default: ``"data"``).
    """

    def __init__(
        self,
        device: torch.device | str,
        warmup_steps: int = 5,
        sync: bool = True,
        *,
        host_phases: Iterable[str] = ("data",),
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.device = torch.device(device)
        self.warmup_steps = int(warmup_steps)
        self.sync = bool(sync)
        self.host_phases = frozenset(host_phases)
        self.use_events = self.device.type == "cuda" and self.sync and torch.cuda.is_available()
        self.timing_method = "cuda_events" if self.use_events else "perf_counter"
        self._free_events: list[Any] = []
        self.reset(rewarm=True)

    # -- state ------------------------------------------------------------------------------
    def reset(self, rewarm: bool = False) -> None:
        """Forget all timed steps (e.g. per epoch). ``rewarm=True`` also re-applies warm-up."""
        if rewarm:
            self._steps_seen = 0
            self._warmup_excluded = 0
        self._open: _Step | None = None
        self._pending: deque[_Step] = deque()
        self._last_end: tuple[float, Any] | None = None
        self._step_ms: list[float] = []
        self._batches: list[int] = []
        self._phases: list[dict[str, float]] = []
        self._phase_names: dict[str, None] = {}  # insertion-ordered set

    def discard_step(self) -> None:
        """Abandon the open step (entered phases but will never reach ``end_step``)."""
        if self._open is not None:
            self._recycle(self._open)
            self._open = None

    # -- events -----------------------------------------------------------------------------
    def _event(self) -> Any:
        ev = self._free_events.pop() if self._free_events else torch.cuda.Event(enable_timing=True)
        ev.record(torch.cuda.current_stream(self.device))
        return ev

    def _recycle(self, step: _Step) -> None:
        """Return a *completed* step's events to the pool (in-flight ones are just dropped)."""
        if not self.use_events or step.end_event is None or not step.end_event.query():
            return
        seen: set[int] = set()  # every event belongs to exactly one step; dedupe start == end
        for ev in (
            step.start_event,
            step.end_event,
            *(e for _, a, b in step.event_pairs for e in (a, b)),
        ):
            if id(ev) not in seen:
                seen.add(id(ev))
                self._free_events.append(ev)

    def _resolve(self, step: _Step) -> None:
        """Read a completed CUDA step's events and record it."""
        step.step_ms = step.start_event.elapsed_time(step.end_event)
        for name, a, b in step.event_pairs:
            step.host_ms[name] = step.host_ms.get(name, 0.0) + a.elapsed_time(b)
        self._record(step)
        self._recycle(step)

    def _drain(self, block: bool) -> None:
        while self._pending:
            head = self._pending[0]
            if not block and len(self._pending) <= _MAX_PENDING and not head.end_event.query():
                return
            head.end_event.synchronize()
            self._resolve(self._pending.popleft())

    # -- recording --------------------------------------------------------------------------
    def _begin_step(self) -> _Step:
        step = _Step(host_start=time.perf_counter())
        if self.use_events:
            step.start_event = self._event()
        self._open = step
        return step

    def _record(self, step: _Step) -> None:
        if not step.timed:
            return
        self._step_ms.append(step.step_ms)
        self._batches.append(step.batch)
        self._phases.append(step.host_ms)
        for name in step.host_ms:
            self._phase_names.setdefault(name)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name`` of the current step (repeats add up)."""
        step = self._open
        host_phase = name in self.host_phases
        if step is None:
            step = self._begin_step()
        elif host_phase and not step.device_phase_seen and name in step.host_ms:
            self.discard_step()  # an abandoned step (e.g. the epoch's exhausted-iterator fetch)
            step = self._begin_step()
        if not host_phase:
            step.device_phase_seen = True
        if host_phase or not self.use_events:
            t0 = time.perf_counter()
            try:
                yield
            finally:
                step.host_ms[name] = step.host_ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
        else:
            start = self._event()
            try:
                yield
            finally:
                step.event_pairs.append((name, start, self._event()))

    def end_step(self, batch_size: int) -> None:
        """Close the current step, which processed ``batch_size`` samples."""
        step = self._open
        now = time.perf_counter()
        phaseless = step is None
        if step is None:  # no phases used: the step spans from the previous end_step
            if self._last_end is None:
                step = _Step(host_start=now, timed=False)
            else:
                step = _Step(host_start=self._last_end[0], start_event=self._last_end[1])
        self._open = None
        self._steps_seen += 1
        if self._steps_seen <= self.warmup_steps:
            step.timed = False
            self._warmup_excluded += 1
        step.batch = int(batch_size)
        if self.use_events:
            step.end_event = self._event()
            if step.start_event is None:  # nothing marks this step's start on the GPU
                step.start_event = step.end_event
                step.timed = False
            # A phase-less loop: the next step starts here; its own event (recorded right after
            # this one) so that no event is shared between two steps.
            self._last_end = (now, self._event()) if phaseless else None
            self._pending.append(step)
            self._drain(block=False)
        else:
            step.step_ms = (now - step.host_start) * 1e3
            self._last_end = (now, None)
            self._record(step)

    # -- results ----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The ``"step_time"`` section of ``metrics.json`` (synchronises CUDA once)."""
        if self.use_events and self._pending:
            torch.cuda.synchronize(self.device)
            self._drain(block=True)
        out: dict[str, Any] = {
            "steps_timed": len(self._step_ms),
            "warmup_steps_excluded": self._warmup_excluded,
            "step_ms": {"median": None, "mean": None, "p10": None, "p90": None},
            "phases_ms": {},
            "phases_ms_mean": {},
            "phase_fraction": {},
            "images_per_s_median": None,
            "images_per_s_overall": None,
            "timing_method": self.timing_method,
            "host_phases": sorted(self.host_phases),
        }
        if not self._step_ms:
            return out
        step = np.asarray(self._step_ms, dtype=np.float64)
        batch = np.asarray(self._batches, dtype=np.float64)
        median = float(np.median(step))
        out["step_ms"] = {
            "median": median,
            "mean": float(step.mean()),
            "p10": float(np.percentile(step, 10)),
            "p90": float(np.percentile(step, 90)),
        }
        for name in self._phase_names:
            per_step = np.asarray([p.get(name, 0.0) for p in self._phases], dtype=np.float64)
            out["phases_ms"][name] = float(np.median(per_step))
            out["phases_ms_mean"][name] = float(per_step.mean())
            out["phase_fraction"][name] = (
                float(np.median(per_step)) / median if median > 0 else None
            )
        positive = step > 0
        if positive.any():
            out["images_per_s_median"] = float(np.median(batch[positive] / (step[positive] / 1e3)))
            out["images_per_s_overall"] = float(batch.sum() / (step.sum() / 1e3))
        return out
