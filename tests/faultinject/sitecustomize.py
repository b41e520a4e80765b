"""Fault injection for ``tests/test_reliability.py``, loaded as ``sitecustomize`` via PYTHONPATH.

Every Python process started with this directory on ``PYTHONPATH`` (the CLI, Snakemake's jobs,
torchrun's workers) patches :class:`alexnet_bench.train.Trainer` when that module is imported,
if ``FAULT_PROGRESS`` is set:

* each training step appends ``<pid> <rank> <epoch> <step>`` to the file ``FAULT_PROGRESS``, so a
  test can wait until a job is demonstrably mid-epoch before killing it;
* from epoch ``FAULT_SLOW_FROM_EPOCH`` (default 2) on, each step first sleeps
  ``FAULT_STEP_DELAY_S`` seconds, so the kill lands inside that epoch, not after it.

The numerics are untouched: a slowed run computes exactly what an unpatched one does.
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
    delay = float(os.environ.get("FAULT_STEP_DELAY_S") or 0)
    slow_from = int(os.environ.get("FAULT_SLOW_FROM_EPOCH") or 2)
    train_epoch, train_step = trainer.train_epoch, trainer.train_step

    def epoch_hook(self: Any, epoch: int) -> Any:
        self._fault_epoch, self._fault_step = epoch, 0
        return train_epoch(self, epoch)

    def step_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        epoch = getattr(self, "_fault_epoch", 0)
        self._fault_step = getattr(self, "_fault_step", 0) + 1
        if delay and epoch >= slow_from:
            time.sleep(delay)
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
