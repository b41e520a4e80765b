"""The Snakemake workflow end to end on the tiny preset, plus dry-run and fail-fast checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import REPO
from .helpers import job_counts, snakemake

STUDY = yaml.safe_load((REPO / "config.yaml").read_text())
EXPECTED_CELLS = [(a, s) for a in STUDY["ablations"] for s in STUDY["seeds"]]


def test_dry_run_lists_exactly_the_default_grid(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--cores", "2")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {
        "peak_flops": 1,
        "train": len(EXPECTED_CELLS),
        "report": 1,
        "all": 1,
    }
    assert len(STUDY["seeds"]) >= 3
    for ablation, seed in EXPECTED_CELLS:
        assert f"results/default/{ablation}/seed{seed}/metrics.json" in result.stdout


def test_family_target_runs_baseline_and_family(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--cores", "1", "ablation_lrn")
    assert job_counts(result.stdout) == {
        "peak_flops": 1,
        "train": 2 * len(STUDY["seeds"]),
        "ablation_lrn": 1,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "ablations=[baseline,no_relu]"], "unknown ablation 'no_relu'"),
        (["--config", "preset=cifar10"], "data directory 'data/cifar-10-batches-py'"),
        (["--config", "seeds=zero"], "seeds"),
        (["--config", "run={model: {activation: sigmoid}}"], "model.activation"),
        (["--config", "figure1={sweep_seeds: []}"], "sweep_seeds"),
        (["--config", "figure1={inits: {xavier: {epochs: 2}}}"], "figure1"),
        (["--config", "figure1={final_seeds: [100, 5, 6]}"], "also appear in sweep_seeds"),
    ],
)
def test_bad_config_fails_before_any_job(workdir: Path, args: list[str], message: str) -> None:
    result = snakemake(workdir, "-n", "--cores", "1", *args)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_malformed_yaml_config_fails_clearly(workdir: Path) -> None:
    (workdir / "config.yaml").write_text("preset: default\nseeds: [0, 1\n")
    result = snakemake(workdir, "-n", "--cores", "1")
    assert result.returncode != 0
    assert "config.yaml" in result.stdout + result.stderr


def test_slurm_profile_parses(workdir: Path) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    result = snakemake(workdir, "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "-n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout)["train"] == len(EXPECTED_CELLS)


TINY_SEEDS = [0, 1]  # two seeds: the report's paired statistics have pairs
# Every kind of cell, not every ablation (each job is a process start, ~9 CPU-s of torch and
# Dynamo imports): the baseline, a module swap (tanh), a module removed (no_lrn), and the two
# 2-device cells as CPU stand-ins (DDP over gloo, the two towers), so their code paths run.
# The other ablations are config overrides: test_dry_run_lists_exactly_the_default_grid plans
# them, tests/test_config_properties.py builds and trains every accepted config in-process.
TINY_ABLATIONS = ["baseline", "tanh", "no_lrn", "gpus2", "gpus2_model"]
TINY = [
    "--config",
    "preset=tiny",
    f"seeds={TINY_SEEDS}".replace(" ", ""),
    "cpu_standins=run",
    f"ablations=[{','.join(TINY_ABLATIONS)}]",
]
TINY_CELLS = [(a, s) for a in TINY_ABLATIONS for s in TINY_SEEDS]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~2 min on the idle 2-vCPU VM; room for a slower, shared one
def test_tiny_study_end_to_end(workdir: Path) -> None:
    """Whole grid on the tiny preset; rerun of one target; idempotent second run."""
    result = snakemake(workdir, "--cores", "2", *TINY, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    peak = json.loads((workdir / "results" / "tiny" / "peak_flops.json").read_text())
    assert set(peak["peak_flops_by_threads"]) == {"1", "2"}  # 1-thread jobs, 2-thread towers
    statuses = {}
    multi_device = 0
    for ablation, seed in TINY_CELLS:
        cell = workdir / "results" / "tiny" / ablation / f"seed{seed}"
        metrics = json.loads((cell / "metrics.json").read_text())
        assert (cell / "history.csv").read_text().startswith("epoch,")
        assert metrics["run"] == {"preset": "tiny", "ablation": ablation, "seed": seed}
        statuses[ablation, seed] = metrics["status"]
        # MFU is never above 1: every job divides by the study's once-measured peak
        flops = metrics.get("flops") or {}
        if metrics["status"] == "completed":
            assert flops["peak_source"] == "measured-matmul-once", flops
            assert flops["mfu"] is None or 0 < flops["mfu"] <= 1, flops
        trained = metrics["status"] in ("completed", "collapsed")
        if trained:
            assert (
                metrics["epochs_completed"] == 2 and metrics["final"]["val_top1_error"] is not None
            )
        # 2-device cells run as CPU stand-ins; the report computes their scaling
        if metrics["parallel"]["devices"] == 2 and trained:
            assert "scaling" not in metrics["parallel"]
            multi_device += 1
    assert multi_device == 2 * len(TINY_SEEDS)  # gpus2 and gpus2_model (CPU stand-ins)
    # two tiny epochs may not get past chance: such runs are flagged, never 'completed'
    assert set(statuses.values()) <= {"completed", "collapsed", "diverged"}, statuses
    assert (workdir / "reports" / "index.html").stat().st_size > 1000
    assert (workdir / "reports" / "summary.md").exists()

    target = workdir / "results" / "tiny" / "tanh" / "seed0" / "metrics.json"
    target.unlink()
    rel = str(target.relative_to(workdir))
    dry = snakemake(workdir, rel, "-n", "--cores", "2", *TINY)
    assert job_counts(dry.stdout) == {"train": 1}, dry.stdout[-2000:]
    rerun = snakemake(workdir, rel, "--cores", "2", *TINY)
    assert rerun.returncode == 0 and target.exists()

    again = snakemake(workdir, "-n", "--cores", "2", *TINY)
    assert again.returncode == 0
    assert job_counts(again.stdout) in ({}, {"report": 1, "all": 1}), again.stdout[-2000:]

    bundle = workdir / "reports" / "snakemake-report.zip"
    packed = snakemake(workdir, "--report", str(bundle), *TINY)
    assert packed.returncode == 0, packed.stderr[-3000:]
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
    assert any(n.endswith("index.html") for n in names)
    assert any(n.endswith("learning_curves_epoch.png") for n in names)
    assert any(n.endswith("ablations.csv") for n in names)


def test_a_new_ablation_family_gets_its_target_from_config_alone(workdir: Path) -> None:
    """Family targets are generated from config.yaml: a new family needs no rule edit."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["ablation_defs"]["wide"] = {
        "family": "width",
        "description": "twice the width",
        "overrides": {"model": {"width": 0.5}},
    }
    config["ablations"].append("wide")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry = snakemake(workdir, "-n", "--cores", "2", "ablation_width")
    assert dry.returncode == 0, dry.stderr[-2000:]
    seeds = len(config["seeds"])
    assert job_counts(dry.stdout) == {"peak_flops": 1, "train": 2 * seeds, "ablation_width": 1}
