"""scripts/gpu_acceptance.sh on CPU: --plan, the refusal, the step orchestration (with a fake
GPU and stubbed steps) and every assertion of its checker on hand-made result files."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_acceptance.sh"
STEPS = [
    "environment",
    "gpu_tests",
    "train_step",
    "real_data",
    "telemetry_overhead",
    "study",
    "check",
]


def load_checker() -> ModuleType:
    path = REPO / "scripts" / "gpu_acceptance_check.py"
    spec = importlib.util.spec_from_file_location("gpu_acceptance_check", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check = load_checker()


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=timeout,
        cwd=REPO,
    )


# --------------------------------------------------------------------------- the script


def test_plan_lists_every_step_with_its_budget_within_nine_minutes() -> None:
    proc = run_script("--plan")
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\s+\d+\. (\w+)\s+(\d+) s  (.+)$", proc.stdout, re.M)
    assert [r[0] for r in rows] == STEPS
    budgets = [int(r[1]) for r in rows]
    assert all(b > 0 for b in budgets) and sum(budgets) <= 540
    assert f"total budget: {sum(budgets)} s (limit 540 s" in proc.stdout
    assert "--device cuda --size 224" in proc.stdout and "gpus2" in proc.stdout
    raised = run_script("--plan", "--budget", "study=600")
    assert "EXCEEDED" in raised.stdout and " 600 s  snakemake" in raised.stdout


def test_refuses_in_one_line_without_a_gpu(tmp_path: Path) -> None:
    """No nvidia-smi (this machine), or one whose GPUs torch cannot see: one line, status 2,
    nothing written."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = run_script("--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_acceptance: refused: "), proc.stderr
    assert "NVIDIA GPU" in lines[0] or "CUDA device" in lines[0]
    assert not (tmp_path / "out").exists()


FAKE_PYTHON = r"""#!/usr/bin/env bash
# A GPU machine as far as gpu_acceptance.sh can tell, with its GPU steps stubbed.
case "$*" in
  *"torch.cuda.device_count()"*) echo 1 ;;
  *"-m pytest"*)
    for arg in "$@"; do case "$arg" in --junitxml=*) xml=${arg#--junitxml=} ;; esac; done
    echo '<testsuites><testsuite><testcase classname="t" name="test_real_nvml_sampler"/></testsuite></testsuites>' > "$xml"
    echo "1 passed" ;;
  *benchmarks/train_step.py*) echo "compiling..."; sleep 30 ;;
  *benchmarks/input_pipeline.py*)
    for arg in "$@"; do case "$prev" in --make-tree) tree=$arg ;; esac; prev=$arg; done
    mkdir -p "$tree" && echo "tree: $tree" ;;
  *benchmarks/telemetry_overhead.py*) echo "no CUDA here" >&2; exit 1 ;;
  *"-m snakemake"*)
    mkdir -p results/gpu_acceptance/baseline/seed0 .snakemake/log
    echo "snakemake log" > .snakemake/log/run.snakemake.log
    alexnet-bench --version > shim.txt 2>&1
    echo '{"status": "completed"}' > results/gpu_acceptance/baseline/seed0/metrics.json ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def test_steps_run_in_order_under_their_budgets_and_the_check_fails_them(tmp_path: Path) -> None:
    """Fake nvidia-smi and python: every step runs in order, its output in logs/, a row in
    steps.tsv; a step over its budget is killed (124) and the later steps still run; the
    study gets the alexnet-bench shim; the check's table marks the failures and exits 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {
        "nvidia-smi": "#!/bin/sh\necho 'GPU 0: Fake H100 (UUID: GPU-0)'\n",
        "python": FAKE_PYTHON,
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IXUSR)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": str(bin_dir / "python"),
        "REAL_PYTHON": sys.executable,
    }
    out = tmp_path / "acceptance"
    # environment (imports torch): a generous budget, for a CI machine busy with other jobs
    proc = run_script(
        "--out",
        str(out),
        "--budget",
        "train_step=1",
        "--budget",
        "environment=400",
        env=env,
        timeout=560,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == STEPS
    status = {r[0]: r[3] for r in rows}
    assert status == {
        "environment": "0",
        "gpu_tests": "0",
        "train_step": "124",
        "real_data": "0",
        "telemetry_overhead": "1",
        "study": "0",
        "check": "1",
    }
    assert f"tree: {out}/.real_data/tree" in (out / "logs" / "real_data.log").read_text()
    assert not (out / ".real_data").exists()  # the generated tree and cache are not kept
    assert int(rows[2][2]) < 10  # killed at its 1 s budget, not after the stub's 30 s
    for name in STEPS:
        assert (out / "logs" / f"{name}.log").is_file()
    assert "compiling..." in (out / "logs" / "train_step.log").read_text()
    env_json = json.loads((out / "environment.json").read_text())
    assert env_json["python_executable"] == str(bin_dir / "python") and "torch" in env_json
    assert (out / "study" / "config.yaml").is_file()
    assert (out / "study" / "shim.txt").read_text().startswith("alexnet-bench ")
    assert not (out / "study" / ".snakemake").exists()
    assert (out / "logs" / "run.snakemake.log").is_file()
    table = (out / "acceptance.md").read_text()
    assert "| FAIL | step train_step ends with exit 0 within its budget | timed out after" in table
    assert "| PASS | step study ends with exit 0 within its budget |" in table
    assert proc.stdout.rstrip().splitlines()[-1].startswith("gpu_acceptance: FAIL after ")


# ------------------------------------------------------------------------- the checker

INTERVAL_MS = 100


def _metrics(ablation: str, seed: int, gpus: int = 1) -> dict[str, Any]:
    return {
        "status": "completed",
        "reason": None,
        "run": {"preset": "gpu_acceptance", "ablation": ablation, "seed": seed},
        "config": {
            "runtime": {"compile": True, "gpus": gpus},
            "telemetry": {"interval_ms": INTERVAL_MS},
        },
        "runtime": {"compile": "on (default)"},
        "step_time": {"timing_method": "cuda_events", "images_per_s_overall": 10000.0},
        "flops": {"mfu": 0.21},
        "gpu": {
            "available": True,
            "energy_j": 900.0,
            "energy_method": "counter",
            "util_gpu_pct": {"mean": 71.0},
        },
        "parallel": {"world_size": 1},
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_run(out: Path, ablation: str, seed: int, metrics: dict[str, Any]) -> Path:
    cell = out / "study" / "results" / "gpu_acceptance" / ablation / f"seed{seed}"
    cell.mkdir(parents=True, exist_ok=True)
    (cell / "metrics.json").write_text(json.dumps(metrics))
    if metrics["status"] != "completed":
        return cell
    _write_csv(
        cell / "history.csv",
        [
            {"epoch": e, "epoch_time_s": 0.5, "images_per_s": 9800.0 if e > 1 else 2000.0}
            for e in range(1, 6)
        ],
    )
    _write_csv(
        cell / "gpu.csv",
        [
            {
                "t_s": round(i * 0.1 + (0.004 if i % 3 else 0), 4),
                "gpu": 0,
                "util_gpu_pct": 70,
                "power_w": 400,
                "energy_mj": 1_000_000 + 40_000 * i,
            }
            for i in range(60)
        ],
    )
    return cell


def write_passing_folder(out: Path, gpus: int = 1) -> None:
    """What a fully passing 1-GPU acceptance run leaves behind."""
    out.mkdir(parents=True, exist_ok=True)
    budgets = {
        "environment": 15,
        "gpu_tests": 65,
        "train_step": 135,
        "real_data": 45,
        "telemetry_overhead": 60,
        "study": 195,
    }
    (out / "steps.tsv").write_text("".join(f"{k}\t{b}\t{b // 2}\t0\n" for k, b in budgets.items()))
    (out / "environment.json").write_text(json.dumps({"cuda_device_count": gpus}))
    (out / "gpu_tests.xml").write_text(
        '<testsuites><testsuite name="pytest" tests="3">'
        '<testcase classname="tests.test_telemetry_gpu" name="test_real_nvml_sampler"/>'
        '<testcase classname="tests.test_model_parallel" name="test_two_gpus">'
        '<skipped message="needs 2 CUDA devices"/></testcase>'
        '<testcase classname="tests.test_fast_path" name="test_bf16_step_matches_fp32_on_cuda">'
        "<properties>"
        '<property name="fp32_loss" value="2.3031"/><property name="bf16_loss" value="2.3047"/>'
        '<property name="bf16_loss_rel_diff" value="0.0007"/>'
        '<property name="bf16_loss_rel_tolerance" value="0.01"/>'
        "</properties></testcase></testsuite></testsuites>"
    )
    rows = [
        {"loop": "reference", "batch_size": 256, "images_per_s": 9000.0, "mfu": 0.09},
        {"loop": "suite", "batch_size": 256, "images_per_s": 31000.0, "mfu": 0.32},
        {"loop": "input_pipeline", "batch_size": 256, "images_per_s": 400000.0},
        {"loop": "limit", "batch_size": 256, "images_per_s": 97000.0, "mfu": 1.0},
    ]
    (out / "train_step_cuda.json").write_text(
        json.dumps(
            {
                "device": "cuda",
                "image_size": 224,
                "peak_source": "spec-table: H100 bf16",
                "rows": rows,
                "suite_runtime_bs256": {"compile": "on (default)"},
            }
        )
    )
    (out / "input_pipeline_cuda.json").write_text(
        json.dumps(
            {
                "mode": "device",
                "device": "cuda",
                "rows": [
                    {"name": "streaming_loader_w15", "images_per_s": 4100.0},
                    {"name": "cached_loader_raw_w2", "images_per_s": 52000.0},
                    {"name": "cached_loader_raw_w4", "images_per_s": 71000.0},
                ],
            }
        )
    )
    (out / "telemetry_overhead_cuda.json").write_text(
        json.dumps(
            {
                "device": "cuda:0",
                "nvml": "real NVML",
                "results": {
                    "overhead_pct_median": 0.3,
                    "overhead_pct_median_ci95": [-0.2, 0.7],
                    "target_pct": 1.0,
                },
            }
        )
    )
    for seed in (0, 1):
        for ablation in ("baseline", "tanh"):
            write_run(out, ablation, seed, _metrics(ablation, seed))
        for ablation in ("gpus2", "gpus2_model"):
            if gpus >= 2:
                write_run(out, ablation, seed, _metrics(ablation, seed, gpus=2))
            else:
                write_run(
                    out,
                    ablation,
                    seed,
                    {"status": "skipped", "reason": "needs 2 GPUs but 1 is visible (...)"},
                )
    (out / "study" / "reports").mkdir(parents=True, exist_ok=True)
    (out / "study" / "reports" / "index.html").write_text("<html></html>")


def results(out: Path, gpus: int | None = None) -> dict[str, Any]:
    return {c.name: c for c in check.evaluate(out, gpus)}


def test_a_passing_folder_passes_every_assertion(tmp_path: Path, capsys) -> None:
    write_passing_folder(tmp_path)
    assert check.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "FAIL |" not in printed and printed.rstrip().endswith(" passed, 0 failed")
    names = set(results(tmp_path))
    for needle in (
        "NVML series",
        "energy",
        "utilisation",
        "MFU between 0 and 1",
        "compile",
        "CUDA-event",
        "bf16",
        "2x the reference",
        "MFU >= 30%",
        "input pipeline",
        "real data: cached loader",
        "telemetry overhead",
        "study cell gpus2 ",
        "gpu-marked tests",
    ):
        assert any(needle in n for n in names), needle
    saved = json.loads((tmp_path / "acceptance.json").read_text())
    assert saved["passed"] is True and len(saved["checks"]) == len(names)
    assert (tmp_path / "acceptance.md").read_text().startswith("# GPU acceptance")


def test_two_gpus_expect_the_two_gpu_cells_to_run(tmp_path: Path) -> None:
    write_passing_folder(tmp_path, gpus=2)
    assert all(c.passed for c in results(tmp_path).values())
    one_gpu = tmp_path / "one"
    write_passing_folder(one_gpu)  # cells skipped, but the machine has 2 GPUs: they should run
    failed = [n for n, c in results(one_gpu, gpus=2).items() if not c.passed]
    assert failed == ["study cell gpus2 (2 GPUs)", "study cell gpus2_model (2 GPUs)"]


def _cell(out: Path, name: str = "baseline/seed0") -> Path:
    return out / "study" / "results" / "gpu_acceptance" / name


def _edit_metrics(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((path / "metrics.json").read_text())
    edit(data)
    (path / "metrics.json").write_text(json.dumps(data))


def _edit_csv(path: Path, edit: Callable[[list[dict[str, str]]], list[dict[str, str]]]) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    _write_csv(path, edit(rows))


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def _suite(data: dict, key: str, value: float) -> None:
    next(r for r in data["rows"] if r["loop"] == "suite")[key] = value


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "step_timed_out": (
        lambda o: (o / "steps.tsv").write_text(
            (o / "steps.tsv").read_text().replace("study\t195\t97\t0", "study\t195\t195\t124")
        ),
        "step study ends with exit 0 within its budget",
    ),
    "gpu_test_failed": (
        lambda o: (o / "gpu_tests.xml").write_text(
            (o / "gpu_tests.xml")
            .read_text()
            .replace(
                'name="test_real_nvml_sampler"/>',
                'name="test_real_nvml_sampler"><failure message="boom"/></testcase>',
            )
        ),
        "gpu-marked tests pass (pytest -m gpu)",
    ),
    "bf16_out_of_tolerance": (
        lambda o: (o / "gpu_tests.xml").write_text(
            (o / "gpu_tests.xml").read_text().replace('value="0.0007"', 'value="0.03"')
        ),
        "bf16 step loss within the tested tolerance of fp32 (GPU)",
    ),
    "no_nvml_samples": (
        lambda o: _edit_csv(_cell(o) / "gpu.csv", lambda rows: rows[:1]),
        (
            "NVML series non-empty at the configured interval",
            "energy counter monotonic and energy positive",
        ),
    ),
    "nvml_interval_off": (
        lambda o: _edit_csv(
            _cell(o) / "gpu.csv",
            lambda rows: [{**r, "t_s": str(float(r["t_s"]) * 2)} for r in rows],
        ),
        "NVML series non-empty at the configured interval",
    ),
    "energy_counter_goes_back": (
        lambda o: _edit_csv(
            _cell(o) / "gpu.csv",
            lambda rows: [
                {**r, "energy_mj": "5" if i == 30 else r["energy_mj"]} for i, r in enumerate(rows)
            ],
        ),
        "energy counter monotonic and energy positive",
    ),
    "energy_zero": (
        lambda o: _edit_metrics(_cell(o), lambda m: _set(m, "gpu.energy_j", 0.0)),
        "energy counter monotonic and energy positive",
    ),
    "utilisation_zero": (
        lambda o: _edit_metrics(
            _cell(o, "tanh/seed1"), lambda m: _set(m, "gpu.util_gpu_pct.mean", 0.0)
        ),
        "GPU utilisation above 0 during training",
    ),
    "mfu_above_one": (
        lambda o: _edit_metrics(_cell(o), lambda m: _set(m, "flops.mfu", 1.7)),
        "MFU between 0 and 1",
    ),
    "silent_compile_fallback": (
        lambda o: _edit_metrics(_cell(o), lambda m: _set(m, "runtime.compile", "off")),
        "no silent torch.compile fallback",
    ),
    "dynamo_ran_frames_eagerly": (
        lambda o: (
            (o / "study" / "logs" / "train" / "gpu_acceptance" / "baseline").mkdir(parents=True),
            (
                o / "study" / "logs" / "train" / "gpu_acceptance" / "baseline" / "seed0.log"
            ).write_text("torch._dynamo hit config.recompile_limit (8)\n"),
        ),
        "no silent torch.compile fallback",
    ),
    "event_times_disagree": (
        lambda o: _edit_metrics(
            _cell(o), lambda m: _set(m, "step_time.images_per_s_overall", 15000.0)
        ),
        "CUDA-event step times agree with wall time",
    ),
    "perf_timer_instead_of_events": (
        lambda o: _edit_metrics(
            _cell(o), lambda m: _set(m, "step_time.timing_method", "perf_counter")
        ),
        "CUDA-event step times agree with wall time",
    ),
    "suite_not_2x_reference": (
        lambda o: _edit_json(
            o / "train_step_cuda.json", lambda d: _suite(d, "images_per_s", 17000.0)
        ),
        "suite step >= 2x the reference loop (224 px)",
    ),
    "mfu_below_target": (
        lambda o: _edit_json(o / "train_step_cuda.json", lambda d: _suite(d, "mfu", 0.12)),
        "suite MFU >= 30% at 224 px",
    ),
    "mfu_not_at_224": (
        lambda o: _edit_json(o / "train_step_cuda.json", lambda d: d.update(image_size=128)),
        "suite MFU >= 30% at 224 px",
    ),
    "input_pipeline_too_slow": (
        lambda o: _edit_json(
            o / "train_step_cuda.json",
            lambda d: next(r for r in d["rows"] if r["loop"] == "input_pipeline").update(
                images_per_s=50000.0
            ),
        ),
        "input pipeline >= 2x the suite step",
    ),
    "real_data_cache_too_slow": (
        lambda o: _edit_json(
            o / "input_pipeline_cuda.json",
            lambda d: [
                r.update(images_per_s=40000.0) for r in d["rows"] if r["name"].startswith("cached")
            ],
        ),
        "real data: cached loader (JPEG tree, raw cache) >= 2x the suite step",
    ),
    "real_data_not_on_gpu": (
        lambda o: _edit_json(o / "input_pipeline_cuda.json", lambda d: d.update(device="cpu")),
        "real data: cached loader (JPEG tree, raw cache) >= 2x the suite step",
    ),
    "telemetry_overhead_high": (
        lambda o: _edit_json(
            o / "telemetry_overhead_cuda.json",
            lambda d: d["results"].update(overhead_pct_median=2.5),
        ),
        "telemetry overhead below its target on the GPU (real NVML)",
    ),
    "telemetry_simulated_nvml": (
        lambda o: _edit_json(
            o / "telemetry_overhead_cuda.json",
            lambda d: d.update(nvml="simulated: in-process fake pynvml"),
        ),
        "telemetry overhead below its target on the GPU (real NVML)",
    ),
    "cell_failed": (
        lambda o: _edit_metrics(
            _cell(o, "tanh/seed1"), lambda m: m.update(status="failed", reason="CUDA out of memory")
        ),
        "study cell tanh (1 GPU)",
    ),
    "cell_missing": (
        lambda o: shutil.rmtree(_cell(o, "baseline/seed1")),
        "study cell baseline (1 GPU)",
    ),
    "report_missing": (
        lambda o: (o / "study" / "reports" / "index.html").unlink(),
        "study report rendered",
    ),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_each_assertion_fails_when_its_evidence_is_wrong(tmp_path: Path, fault: tuple) -> None:
    inject, failing = fault
    write_passing_folder(tmp_path)
    inject(tmp_path)
    checks = results(tmp_path)
    expected = list(failing) if isinstance(failing, tuple) else [failing]
    assert [n for n, c in checks.items() if not c.passed] == expected
    assert check.main([str(tmp_path)]) == 1


def test_a_recorded_compile_fallback_passes_with_its_reason(tmp_path: Path) -> None:
    write_passing_folder(tmp_path)
    reason = "failed at first step: BackendCompilerFailed: triton not found"
    _edit_metrics(_cell(tmp_path), lambda m: _set(m, "runtime.compile", reason))
    row = results(tmp_path)["no silent torch.compile fallback"]
    assert row.passed and reason in row.measured


def test_an_empty_folder_fails_every_assertion_without_crashing(tmp_path: Path) -> None:
    checks = check.evaluate(tmp_path, gpus=1)
    assert len(checks) >= 15 and not any(c.passed for c in checks)
