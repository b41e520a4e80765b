"""1 vs 2 devices on CPU: DDP over gloo (2 processes) and the two-tower model split."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import tiny_run
from .helpers import train_cmd

EXACT = {
    "model": {"dropout": 0.0, "init": "kaiming"},
    "augment": {"crop_flip": False, "pca_lighting": False},
}


def train_cli(out: Path, run: dict) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        train_cmd(out, run), capture_output=True, text=True, timeout=300, env=env, check=False
    )


def losses(out: Path) -> list[float]:
    with open(out / "history.csv") as fh:
        return [float(r["train_loss"]) for r in csv.DictReader(fh)]


def merged(extra: dict) -> dict:
    run = tiny_run(train={"epochs": 2, "batch_size": 32})
    for section, values in {**EXACT, **extra}.items():
        run.setdefault(section, {}).update(values)
    for section, values in EXACT.items():
        run[section].update(values)
    return run


@pytest.mark.slow
def test_ddp_two_gloo_processes_follow_the_single_process_trajectory(tmp_path: Path) -> None:
    single = train_cli(tmp_path / "one", merged({}))
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = train_cli(
        tmp_path / "two", merged({"runtime": {"gpus": 2, "parallel": "ddp", "threads": 1}})
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["parallel"]["mode"] == "ddp" and metrics["parallel"]["world_size"] == 2
    assert metrics["parallel"]["backend"] == "gloo" and metrics["parallel"]["note"]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)


@pytest.mark.slow
def test_model_parallel_on_two_cpu_devices_matches_single_device(tmp_path: Path) -> None:
    single = train_cli(tmp_path / "one", merged({}))
    split = train_cli(tmp_path / "split", merged({"runtime": {"gpus": 2, "parallel": "model"}}))
    assert single.returncode == 0 and split.returncode == 0, split.stderr[-3000:]
    metrics = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert metrics["parallel"]["mode"] == "model" and metrics["parallel"]["devices"] == 2
    assert losses(tmp_path / "split") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
