"""metrics.json has one contract between its writer (record.py) and its reader (collect.py):
the reader's typed record (runrecord.RunRecord) lists every key any reader uses, the schema
requires each of them for a trained run (apart from the conditional ones), a trained run's
record holds them, and no module outside collect reads metrics.json by a dotted key."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from alexnet_bench import record
from alexnet_bench.collect import load_run
from alexnet_bench.config import RunConfig
from alexnet_bench.runrecord import RunRecord, field_paths, from_metrics
from alexnet_bench.train import run_training

from .conftest import REPO, tiny_run

#: the reading side: the typed record and the module that builds runs from files
READERS = {"alexnet_bench/collect.py", "alexnet_bench/runrecord.py"}
#: top-level keys of metrics.json (a dotted string starting with one is a record read)
RECORD_SECTIONS = (
    "status",
    "reason",
    "run",
    "config",
    "config_hash",
    "identity",
    "provenance",
    "epochs_completed",
    "diverged_epoch",
    "resumed_from_epoch",
    "notes",
    "final",
    "best",
    "time_to_target",
    "train_time_s",
    "total_time_s",
    "throughput",
    "step_time",
    "flops",
    "model",
    "health",
    "device",
    "runtime",
    "data",
    "gpu",
    "host",
    "parallel",
    "environment",
    "schema_version",
)
DOTTED = re.compile(rf"^({'|'.join(RECORD_SECTIONS)})\.[A-Za-z_][A-Za-z0-9_.]*$")
FILE_SUFFIXES = {"csv", "json", "yaml", "yml", "png", "svg", "md", "pt", "tsv", "log", "txt"}


def _has(data: dict, dotted: str) -> bool:
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _required_paths(schema: dict, prefix: str = "") -> set[str]:
    """Dotted paths a schema (object branch) requires, recursing into required sub-objects."""
    paths = set()
    for key in schema.get("required", []):
        path = f"{prefix}{key}"
        paths.add(path)
        sub = schema.get("properties", {}).get(key, {})
        paths |= _required_paths(sub, f"{path}.")
    return paths


def _read_paths() -> set[str]:
    """Every metrics.json path the typed record reads and a trained run must hold."""
    return {path for path, conditional in field_paths().items() if not conditional}


@pytest.mark.parametrize("lrn", [True, False], ids=["lrn", "no_lrn"])
def test_a_trained_run_writes_every_key_the_readers_read(tmp_path: Path, lrn: bool) -> None:
    cfg = tiny_run(model={"width": 0.125, "lrn": lrn}, train={"epochs": 1})
    run_training(RunConfig(cfg), tmp_path / "run", labels={"preset": "tiny"})
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    missing = sorted(k for k in _read_paths() if not _has(metrics, k))
    assert not missing, f"the readers read keys the writer did not write: {missing}"
    run = load_run(tmp_path / "run" / "metrics.json")
    assert run.record == from_metrics(metrics) and run.record.final.val_top1_error is not None
    assert run.history is not None and len(run.history) == 1


def test_the_record_schema_requires_every_key_the_readers_read() -> None:
    schema = yaml.safe_load(
        (Path(record.__file__).parent / "schemas" / "metrics.schema.yaml").read_text()
    )
    trained = schema["allOf"][0]["then"]
    required = _required_paths(schema) | _required_paths(trained)
    missing = sorted(_read_paths() - required)
    assert not missing, f"the readers read keys the record schema does not require: {missing}"


def test_the_typed_record_reads_any_shape_without_raising() -> None:
    assert from_metrics({}) == RunRecord()
    odd = {
        "final": {"val_top1_error": "x"},
        "best": [],
        "epochs_completed": 2.0,
        "health": {"dead_relu_fraction": {"conv1": 0.1, "conv2": None}},
        "config": "bad",
    }
    rec = from_metrics(odd)
    assert rec.final.val_top1_error is None and rec.best.epoch is None
    assert rec.epochs_completed == 2 and rec.health.dead_relu_fraction == {"conv1": 0.1}
    assert rec.config.train.lr is None


def _dotted_reads(source: str, name: str) -> list[str]:
    """String constants in ``source`` that are dotted metrics.json paths (file names aside)."""
    return [
        f"{name}:{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(source, name))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and DOTTED.match(node.value)
        and node.value.rsplit(".", 1)[-1] not in FILE_SUFFIXES
    ]


def test_no_module_outside_collect_reads_metrics_json_by_a_dotted_key() -> None:
    """A dotted metrics.json path ("final.val_top1_error", "config.data.source", ...) as a
    string anywhere in the package but the reading side is a read that bypasses the typed
    record: each value has one accessor, and each fallback is decided once, in collect."""
    found = []
    for path in sorted((REPO / "alexnet_bench").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel not in READERS:
            found += _dotted_reads(path.read_text(), rel)
    assert not found, "dotted metrics.json reads outside collect:\n" + "\n".join(found)


def test_the_dotted_read_check_catches_the_old_reads() -> None:
    """Not vacuous: the reads the report used to make are caught, file names are not."""
    old = 'src = r.get("data.source") or r.get("config.data.source")\nn = r.num("device.count")'
    assert len(_dotted_reads(old, "old.py")) == 3
    assert _dotted_reads('open("results/final.csv"); load("config.yaml")', "ok.py") == []


def test_a_record_that_breaks_the_schema_fails_in_the_suite_and_warns_for_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {
        "status": "completed",
        "run": {},
        "config": {},
        "config_hash": "x",
        "epochs_completed": 3,
    }  # a trained run without its results
    with pytest.raises(ValueError, match="breaks metrics.schema.yaml"):
        record.write_metrics(tmp_path / "metrics.json", broken)
    assert not (tmp_path / "metrics.json").exists()
    monkeypatch.delenv("ALEXNET_BENCH_STRICT_RECORD")
    record.write_metrics(tmp_path / "metrics.json", broken)  # a user's results are kept
    assert (tmp_path / "metrics.json").exists() and "breaks metrics.schema.yaml" in caplog.text
    skipped = {
        "status": "skipped",
        "reason": "no GPU",
        "run": {},
        "config": None,
        "config_hash": None,
        "epochs_completed": 0,
    }
    assert record.check_record({"schema_version": record.SCHEMA_VERSION, **skipped}) is None
