"""Fault injection for ``tests/test_reliability.py``, loaded as ``sitecustomize`` via PYTHONPATH.

Every Python process started with this directory on ``PYTHONPATH`` (the CLI, Snakemake's jobs,
torchrun's workers) patches :class:`alexnet_bench.train.Trainer` when that module is imported,
if ``FAULT_PROGRESS`` is set:

* each training step appends ``<pid> <rank> <epoch> <step>`` to the file ``FAULT_PROGRESS``, so a
  test can wait until a job is demonstrably mid-epoch before killing it;
* with ``FAULT_HOLD_AT=<epoch>:<step>``, each process stops right before that step (so after
  ``step - 1`` complete steps of that epoch), appends ``<pid> <rank> <epoch> <step> held`` to
  the progress file and waits until the file ``FAULT_RELEASE`` exists. A test thereby controls
  the event it races against: it kills the held job (the kill provably lands mid-epoch, however
  slow the machine), or does what it must do while the job cannot finish and then releases it.
  With ``FAULT_HOLD_ARGV`` set, only processes whose command line contains that string hold
  (one cell of a study, e.g. ``/baseline/``). A hold never released fails the step after
  ``FAULT_HOLD_TIMEOUT_S`` (default 600 s) instead of hanging for ever.

No test waits on a sleep or a slowed step: on a slower machine a kill timed by a delay lands
in the wrong epoch. The numerics are untouched: a held run computes exactly what an unpatched
one does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

TARGET = "alexnet_bench.train"


def _patch(trainer: Any) -> None:
    progress = os.environ["FAULT_PROGRESS"]
    hold_at = os.environ.get("FAULT_HOLD_AT")
    hold = tuple(int(x) for x in hold_at.split(":")) if hold_at else None
    if hold and os.environ.get("FAULT_HOLD_ARGV", "") not in " ".join(sys.argv):
        hold = None  # another cell's process
    release = os.environ.get("FAULT_RELEASE") or ""
    hold_timeout = float(os.environ.get("FAULT_HOLD_TIMEOUT_S") or 600)
    train_epoch, train_step = trainer.train_epoch, trainer.train_step

    def wait_for_release(self: Any, epoch: int, step: int) -> None:
        with open(progress, "a") as fh:
            fh.write(f"{os.getpid()} {self.dist.rank} {epoch} {step} held\n")
        deadline = time.monotonic() + hold_timeout
        while not (release and os.path.exists(release)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"fault hold at epoch {epoch} step {step} never released")
            time.sleep(0.05)  # a signal handler still runs here (SIGINT/SIGTERM tests)

    def epoch_hook(self: Any, epoch: int) -> Any:
        self._fault_epoch, self._fault_step = epoch, 0
        return train_epoch(self, epoch)

    def step_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        epoch = getattr(self, "_fault_epoch", 0)
        self._fault_step = getattr(self, "_fault_step", 0) + 1
        if hold == (epoch, self._fault_step):
            wait_for_release(self, epoch, self._fault_step)
        result = train_step(self, *args, **kwargs)
        with open(progress, "a") as fh:
            fh.write(f"{os.getpid()} {self.dist.rank} {epoch} {self._fault_step}\n")
        return result

    trainer.train_epoch, trainer.train_step = epoch_hook, step_hook


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Find ``alexnet_bench.train`` as usual, then patch it right after it executes."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _patch(module.Trainer)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("FAULT_PROGRESS"):
    sys.meta_path.insert(0, _PatchOnImport())
