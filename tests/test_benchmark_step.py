"""The training-step benchmark: pytest-benchmark of the suite's step, and the script's table.

In the normal test run (``--benchmark-disable`` in pyproject) the benchmark executes once as a
correctness smoke test; ``uv run pytest tests/test_benchmark_step.py --benchmark-enable`` times it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from alexnet_bench.config import RunConfig
from alexnet_bench.train import Trainer

from .conftest import REPO, tiny_run


def load_script(name: str) -> ModuleType:
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_training_step_default_preset_size(benchmark, tmp_path: Path) -> None:
    run = tiny_run(
        model={"width": 0.25, "init": "kaiming"}, train={"batch_size": 64}, data={"num_train": 128}
    )
    trainer = Trainer(RunConfig(run), tmp_path)
    images, target = next(iter(trainer.data.train))
    gen = torch.Generator().manual_seed(0)

    def step() -> float:
        loss, _ = trainer.train_step(images, target, gen)
        return float(loss)

    loss = benchmark(step)
    assert 0 < loss < 10  # finite, positive cross-entropy


def test_train_step_script_writes_a_consistent_table(tmp_path: Path) -> None:
    bench = load_script("train_step")
    out = tmp_path / "bench.json"
    args = [
        "--device",
        "cpu",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--steps",
        "3",
        "--repeats",
        "2",
        "--epoch-batches",
        "2",
        "--batch-sizes",
        "8",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    rows = {r["loop"]: r for r in result["rows"]}
    assert set(rows) == {"reference", "suite", "input_pipeline", "limit"}
    flops, peak = result["train_flops_per_image"], result["peak_flops"]
    assert flops > 0 and peak > 0
    for name in ("reference", "suite"):
        r = rows[name]
        assert r["images_per_s"] == pytest.approx(8 / (r["step_ms_median"] / 1000), rel=1e-2)
        assert r["mfu"] == pytest.approx(r["images_per_s"] * flops / peak, rel=1e-2)
        assert r["images_per_s"] < rows["limit"]["images_per_s"]  # nothing beats the limit
    overhead = result["harness_overhead_bs8"]
    assert len(overhead["ratios"]) == 2 and overhead["ratio_median"] > 0
    assert result["environment"]["torch"] == torch.__version__
    with open(out.with_suffix(".csv")) as fh:
        table = list(csv.DictReader(fh))
    assert [r["loop"] for r in table] == [r["loop"] for r in result["rows"]]


def test_reference_model_is_torchvision_alexnet_at_full_size() -> None:
    bench = load_script("train_step")
    ours = bench.reference_model(224, 1.0, 10)
    assert type(ours).__module__.startswith("torchvision")
    small = bench.reference_model(32, 0.25, 10)  # the suite's architecture at the CPU size
    names = {type(m).__name__ for m in small.modules()}
    assert "PaperLRN" not in names and "LocalResponseNorm" not in names
