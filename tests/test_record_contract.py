"""metrics.json has one contract between its writer (train.py, cli.py) and its reader (the
report): every key the report reads is listed in collect.READ_KEYS (reading any other raises
under the test suite), and a trained run's record holds every listed key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet_bench.config import RunConfig
from alexnet_bench.reports.collect import CONDITIONAL_KEYS, READ_KEYS, load_run
from alexnet_bench.train import run_training

from .conftest import tiny_run

_ABSENT = object()


def _has(data: dict, dotted: str) -> bool:
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


@pytest.mark.parametrize("lrn", [True, False], ids=["lrn", "no_lrn"])
def test_a_trained_run_writes_every_key_the_report_reads(tmp_path: Path, lrn: bool) -> None:
    cfg = tiny_run(model={"width": 0.125, "lrn": lrn}, train={"epochs": 1})
    run_training(RunConfig(cfg), tmp_path / "run", labels={"preset": "tiny"})
    metrics = load_run(tmp_path / "run" / "metrics.json").metrics
    missing = sorted(k for k in READ_KEYS - CONDITIONAL_KEYS if not _has(metrics, k))
    assert not missing, f"the report reads keys the writer did not write: {missing}"


def test_reading_an_unlisted_key_fails_under_the_suite(tmp_path: Path) -> None:
    cfg = tiny_run(train={"epochs": 1})
    run_training(RunConfig(cfg), tmp_path / "run")
    run = load_run(tmp_path / "run" / "metrics.json")
    assert run.get("final.val_top1_error") is not None
    with pytest.raises(KeyError, match="not in READ_KEYS"):
        run.get("environment.gpu_names")  # a key the writer never wrote
