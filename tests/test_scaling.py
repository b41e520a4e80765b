"""Scaling efficiency of a multi-device run against its one-device reference (metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexnet_bench.config import RunConfig
from alexnet_bench.parallel.scaling import scaling_efficiency
from alexnet_bench.train import run_training

from .conftest import tiny_run


def metrics(ips: float | None, devices: int, status: str = "completed", **config) -> dict:
    return {
        "status": status,
        "throughput": {"images_per_s_median": ips},
        "parallel": {"devices": devices},
        "device": {"type": "cuda"},
        "config": {"runtime": {"gpus": devices, "parallel": "ddp"}, **config},
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_speedup_and_efficiency_are_hand_computed(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.json", metrics(1000.0, 1))
    result = scaling_efficiency(metrics(1500.0, 2), ref)
    assert result["available"] is True
    assert result["speedup"] == 1.5 and result["efficiency"] == 0.75
    assert result["config_differences"] == [] and result["note"] is None


def test_other_config_differences_are_listed(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.json", metrics(1000.0, 1, train={"batch_size": 128}))
    result = scaling_efficiency(metrics(1800.0, 2, train={"batch_size": 256}), ref)
    assert result["config_differences"] == ["train.batch_size"]
    assert result["efficiency"] == 0.9


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        (None, "no one-device reference"),
        ("missing", "unreadable"),
        (metrics(None, 1, status="failed"), "'failed'"),
        (metrics(None, 1), "throughput not measured"),
    ],
)
def test_unavailable_with_a_reason(tmp_path: Path, reference, reason: str) -> None:
    path = None
    if reference == "missing":
        path = tmp_path / "nope.json"
    elif reference is not None:
        path = write(tmp_path / "ref.json", reference)
    result = scaling_efficiency(metrics(1500.0, 2), path)
    assert result["available"] is False and reason in result["reason"]


def test_two_device_run_records_scaling_against_its_reference(tmp_path: Path) -> None:
    base = tiny_run(train={"epochs": 1})
    ref = run_training(RunConfig(base), tmp_path / "baseline")
    assert ref["status"] == "completed" and "scaling" not in ref["parallel"]
    two = tiny_run(train={"epochs": 1}, runtime={"device": "cpu", "threads": 1, "gpus": 2,
                                                 "parallel": "model"})  # fmt: skip
    run = run_training(
        RunConfig(two), tmp_path / "gpus2", scaling_reference=tmp_path / "baseline" / "metrics.json"
    )
    scaling = run["parallel"]["scaling"]
    assert scaling["available"] is True and scaling["devices"] == 2
    assert scaling["speedup"] == pytest.approx(
        run["throughput"]["images_per_s_median"] / ref["throughput"]["images_per_s_median"],
        rel=1e-3,
    )
    assert scaling["efficiency"] == pytest.approx(scaling["speedup"] / 2, rel=1e-3)
    assert "CPU stand-in" in scaling["note"] and scaling["config_differences"] == []
    on_disk = json.loads((tmp_path / "gpus2" / "metrics.json").read_text())
    assert on_disk["parallel"]["scaling"] == scaling
