"""The calibrate and figure1 targets end to end (their own file, so pytest-xdist's
--dist loadfile can run them beside tests/test_workflow.py's tiny study)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .helpers import job_counts, snakemake


@pytest.mark.slow
def test_calibrate_target_end_to_end(workdir: Path) -> None:
    """`snakemake calibrate` on a tiny sweep writes the table, Markdown and figure, judging
    every candidate by the config's criteria."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["calibration"].update(
        preset="tiny",
        arms=["baseline", "tanh"],
        seeds=[100],
        candidates={"short": {"train": {"epochs": 1}}, "longer": {"train": {"epochs": 2}}},
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry = snakemake(workdir, "-n", "--cores", "2", "calibrate")
    assert job_counts(dry.stdout) == {
        "peak_flops": 1,
        "calibration_train": 4,
        "calibration_report": 1,
        "calibrate": 1,
    }, dry.stdout[-2000:]
    result = snakemake(workdir, "--cores", "2", "calibrate", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = workdir / "reports" / "calibration"
    table = (out / "calibration.csv").read_text().splitlines()
    assert table[0].startswith("candidate,") and "projected_study_min" in table[0]
    assert [line.split(",")[0] for line in table[1:]] == ["short", "longer"]
    md = (out / "calibration.md").read_text()
    assert "Criteria, fixed before any ablation effect was looked at" in md
    assert "| `short`" in md and "| `longer`" in md
    assert (out / "calibration.png").read_bytes().startswith(b"\x89PNG")
    metrics = json.loads(
        (workdir / "results/calibration/longer/tanh/seed100/metrics.json").read_text()
    )
    assert metrics["config"]["model"]["activation"] == "tanh"
    assert metrics["config"]["train"]["epochs"] == 2 and metrics["host"]["job_cpu_s"] > 0


@pytest.mark.slow
def test_figure1_target_end_to_end(workdir: Path) -> None:
    """The figure1 target on a tiny grid, both inits: sweeps, selections, final seeds, summary
    and figure; one job per seed, so Snakemake reruns exactly the seed whose result is gone."""
    tiny = (
        "figure1={train_images: 64, val_images: 20, batch_size: 16, "
        "inits: {variance_preserving: {epochs: 2}, cuda_convnet: {epochs: 2}}}"
    )
    result = snakemake(workdir, "--cores", "2", "figure1", "--config", tiny, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert job_counts(result.stdout + result.stderr) == {
        "figure1_sweep": 12,
        "figure1_select": 2,
        "figure1_final": 12,
        "figure1_summary": 1,
        "figure1": 1,
    }
    root = workdir / "results" / "figure1"
    summary = json.loads((root / "summary.json").read_text())
    assert list(summary["inits"]) == ["variance_preserving", "cuda_convnet"]
    assert len(summary["final"]) == 12 and summary["data"]["source"] == "synthetic"
    for init, block in summary["inits"].items():
        chosen = json.loads((root / init / "selection.json").read_text())["chosen"]
        assert len(block["sweep"]) == 6 and len(block["checks"]) == 8
        assert (root / init / "sweep.csv").read_text().startswith("activation,")
        for run in (r for r in summary["final"] if r["init"] == init):
            metrics = json.loads((workdir / run["path"] / "metrics.json").read_text())
            assert metrics["config"]["train"]["lr"] == chosen[run["activation"]]["lr"]
            assert metrics["model"]["arch"] == "layers18pct"
            assert metrics["config"]["model"]["init"] == (
                "paper" if init == "cuda_convnet" else "auto"
            )
            assert 1 <= metrics["epochs_completed"] <= 2  # stops at the target, at most 2
        assert block["ratio"]["kind"] in ("estimate", "lower bound", "upper bound", "n/a")
    assert summary["interaction"]["kind"] in ("estimate", "lower bound", "upper bound", "n/a")
    assert summary["init_explains"]
    assert (root / "final.csv").read_text().startswith("init,activation,")
    assert (workdir / "reports" / "figure1" / "figure1.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        "tanh / ReLU epochs to target"
        in (workdir / "reports" / "figure1" / "summary.md").read_text()
    )
    bench = workdir / "logs" / "benchmark" / "figure1" / "cuda_convnet" / "final" / "tanh"
    assert (bench / "seed200.tsv").exists()

    again = snakemake(workdir, "-n", "--cores", "2", "figure1", "--config", tiny)
    assert job_counts(again.stdout) == {}, again.stdout[-2000:]
    # One seed lost: naming its file reruns that seed alone, then the summary (Snakemake does
    # not rebuild a missing intermediate file by itself while the summary is up to date).
    lost = root / "cuda_convnet" / "final" / "tanh" / "seed201" / "metrics.json"
    lost.unlink()
    rel = str(lost.relative_to(workdir))
    redo = snakemake(workdir, "-n", "--cores", "2", rel, "figure1", "--config", tiny)
    assert job_counts(redo.stdout) == {"figure1_final": 1, "figure1_summary": 1, "figure1": 1}
    default = snakemake(workdir, "-n", "--cores", "2")  # the default target never runs figure1
    assert set(job_counts(default.stdout)) == {"peak_flops", "train", "report", "all"}
