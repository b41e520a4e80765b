"""Shared fixtures: tiny data directories and run configs."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

torch.set_num_threads(1)
# a record that breaks metrics.schema.yaml fails the suite (record.write_metrics; subprocesses
# inherit it), where a user's run only warns
os.environ["ALEXNET_BENCH_STRICT_RECORD"] = "1"
REPO = Path(__file__).resolve().parents[1]
# CI runs the property tests on a fixed set of examples (a landing never depends on a random
# draw); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def tiny_run(**sections: dict) -> dict:
    """A run config small enough to train in about a second on one CPU thread."""
    cfg: dict = {
        "model": {"width": 0.125},
        "data": {"source": "synthetic", "image_size": 32, "num_train": 160, "num_val": 40},
        # two epochs of 5 steps cannot learn shapes10: no 'collapsed' status for these mechanics
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.02, "collapse_check": False},
        "eval": {"batch_size": 40},
        "runtime": {"device": "cpu", "threads": 1},
        "telemetry": {"warmup_steps": 1},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def fit_killed_in_epoch(trainer: Any, epoch: int, exc: type[BaseException]) -> None:
    """Run ``trainer.fit()`` with ``exc`` raised as epoch ``epoch`` starts (a kill mid-run)."""
    original = trainer.train_epoch

    def killed(e: int) -> Any:
        if e == epoch:
            raise exc
        return original(e)

    trainer.train_epoch = killed
    with pytest.raises(exc):
        trainer.fit()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A Snakemake working directory holding a copy of the repository's config.yaml."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    return tmp_path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """An ImageFolder tree: 3 classes x 6 PNG images of distinct colours (20x24 px)."""
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "fox"]):
        (root / name).mkdir(parents=True)
        for i in range(6):
            arr = np.full((20, 24, 3), 60 * c, dtype=np.uint8) + rng.integers(
                0, 30, (20, 24, 3), dtype=np.uint8
            )
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """A CIFAR-10 python-pickle directory with 5 train batches of 20 images and a test batch of 10."""
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", 20) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {
            b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, n)),
        }
        with open(base / name, "wb") as fh:
            pickle.dump(batch, fh)
    return base


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated data is cached in a per-session directory (subprocesses inherit it)."""
    from alexnet_bench.data.cache import CACHE_ENV

    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("data-cache"))


@pytest.fixture(scope="session")
def proc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of every subprocess: one thread, unbuffered, this venv first on PATH.

    Where the environment forbids bytecode files (PYTHONDONTWRITEBYTECODE), each subprocess
    would compile torch from source (seconds); a session-wide PYTHONPYCACHEPREFIX avoids that.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in (
        "FAULT_PROGRESS",
        "FAULT_HOLD_AT",
        "FAULT_HOLD_ARGV",
        "FAULT_RELEASE",
        "FAULT_HOLD_TIMEOUT_S",
    ):
        env.pop(key, None)
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env
