"""Multi-device scaling is computed once, by the report, from the runs it aggregates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from alexnet_bench.config import RunConfig
from alexnet_bench.reports import build_report
from alexnet_bench.train import run_training
from tests.fixtures_reports import STUDY, build_study_results

from .conftest import tiny_run
from .helpers import job_counts, snakemake


def test_report_computes_speedup_and_efficiency_from_the_runs(tmp_path: Path) -> None:
    res, expected = build_study_results(tmp_path)
    build_report(res, tmp_path / "reports", study=STUDY, expected=expected)
    md = (tmp_path / "reports" / "summary.md").read_text()
    # baseline 800 / 820 img/s, gpus2 1200 / 1240 img/s: speedup 1220 / 810 = 1.51, over 2 devices
    rows = [line for line in md.splitlines() if re.match(r"\| gpus2 +\| 2 \(ddp\) ", line)]
    assert len(rows) == 1 and "1.51×" in rows[0] and "75%" in rows[0], rows


def test_a_two_device_run_records_no_scaling_of_its_own(tmp_path: Path) -> None:
    two = tiny_run(
        train={"epochs": 1}, runtime={"device": "cpu", "threads": 1, "gpus": 2, "parallel": "model"}
    )
    metrics = run_training(RunConfig(two), tmp_path / "gpus2")
    on_disk = json.loads((tmp_path / "gpus2" / "metrics.json").read_text())
    assert metrics["parallel"]["devices"] == 2 and "scaling" not in on_disk["parallel"]


def test_a_multi_device_job_reads_no_other_jobs_output(tmp_path: Path) -> None:
    """Forcing one 2-device cell plans that cell and the peak probe only, not the baseline."""
    (tmp_path / "config.yaml").write_text((Path(__file__).parents[1] / "config.yaml").read_text())
    dry = snakemake(
        tmp_path,
        "results/tiny/gpus2/seed0/metrics.json",
        "-n",
        "--forceall",
        "--cores",
        "2",
        "--config",
        "preset=tiny",
        "cpu_standins=run",
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert job_counts(dry.stdout) == {"peak_flops": 1, "train": 1}, dry.stdout[-2000:]
