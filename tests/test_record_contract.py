"""metrics.json has one contract between its writer (train.py, cli.py) and its reader (the
report): every key the report reads is listed in collect.READ_KEYS (reading any other raises
under the test suite), and a trained run's record holds every listed key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alexnet_bench import record
from alexnet_bench.config import RunConfig
from alexnet_bench.reports.collect import CONDITIONAL_KEYS, READ_KEYS, load_run
from alexnet_bench.train import run_training

from .conftest import tiny_run


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


def _required_paths(schema: dict, prefix: str = "") -> set[str]:
    """Dotted paths a schema (object branch) requires, recursing into required sub-objects."""
    paths = set()
    for key in schema.get("required", []):
        path = f"{prefix}{key}"
        paths.add(path)
        sub = schema.get("properties", {}).get(key, {})
        paths |= _required_paths(sub, f"{path}.")
    return paths


def test_the_record_schema_requires_every_key_the_report_reads() -> None:
    schema = yaml.safe_load(
        (Path(record.__file__).parent / "schemas" / "metrics.schema.yaml").read_text()
    )
    trained = schema["allOf"][0]["then"]
    required = _required_paths(schema) | _required_paths(trained)
    missing = sorted(READ_KEYS - CONDITIONAL_KEYS - required)
    assert not missing, f"the report reads keys the record schema does not require: {missing}"


def test_a_record_that_breaks_the_schema_fails_in_the_suite_and_warns_for_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"status": "completed", "run": {}, "config": {}, "config_hash": "x",
              "epochs_completed": 3}  # a trained run without its results  # fmt: skip
    with pytest.raises(ValueError, match="breaks metrics.schema.yaml"):
        record.write_metrics(tmp_path / "metrics.json", broken)
    assert not (tmp_path / "metrics.json").exists()
    monkeypatch.delenv("ALEXNET_BENCH_STRICT_RECORD")
    record.write_metrics(tmp_path / "metrics.json", broken)  # a user's results are kept
    assert (tmp_path / "metrics.json").exists() and "breaks metrics.schema.yaml" in caplog.text
    skipped = {"status": "skipped", "reason": "no GPU", "run": {}, "config": None,
               "config_hash": None, "epochs_completed": 0}  # fmt: skip
    assert record.check_record({"schema_version": record.SCHEMA_VERSION, **skipped}) is None
