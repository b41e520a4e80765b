"""The ``report`` subcommand: ``alexnet-bench report --results results/default --out reports``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BenchError, ConfigError


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        default="results/default",
        help="one preset's results directory, holding {ablation}/seed{N}/metrics.json",
    )
    parser.add_argument("--out", default="reports", help="output directory (index.html, ...)")
    study = parser.add_mutually_exclusive_group()
    study.add_argument(
        "--study-json",
        metavar="JSON|FILE",
        help="the study config as a JSON object, or a file holding one",
    )
    study.add_argument("--study-yaml", metavar="FILE", help="the study config as a YAML file")
    parser.add_argument(
        "--expected",
        nargs="+",
        action="extend",
        metavar="METRICS_JSON",
        default=None,
        help="metrics.json paths the study expects; absent ones are reported as missing "
        "(default: every ablation x seed of the study)",
    )
    parser.add_argument(
        "--expected-from",
        metavar="FILE",
        help="a file listing expected metrics.json paths, one per line",
    )
    parser.add_argument(
        "--figure1",
        metavar="DIR",
        help="the figure1 study's results (results/figure1): adds its section and paper-vs-"
        "measured row when DIR/summary.json exists, a note otherwise",
    )
    parser.add_argument(
        "--snakemake-report-dir",
        metavar="DIR",
        help="also copy the RST figure/table captions into DIR",
    )
    parser.set_defaults(func=run_report)


def add_report_parser(subparsers: Any) -> None:
    """Register the ``report`` subcommand on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "report",
        help="render the study report (HTML, Markdown, CSV, PNG/SVG) from run results",
        description=(
            "Collect every run under --results (metrics.json, history.csv, gpu.csv), aggregate "
            "per ablation over completed seeds, compare with the paper's claims and write "
            "index.html (self-contained), summary.md, tables/*.csv and figures/* into --out. "
            "Missing, failed, skipped, diverged and unparseable cells are listed, not averaged."
        ),
    )
    _configure(parser)


def add_calibration_parser(subparsers: Any) -> None:
    """Register the ``calibration-report`` subcommand (judges the ``calibrate`` sweep)."""
    parser = subparsers.add_parser(
        "calibration-report",
        help="judge the calibration sweep (table, Markdown, figure, chosen candidate)",
        description=(
            "Read results/calibration/<candidate>/<arm>/seed<N>/, measure the criteria of the "
            "study's calibration block for every candidate and write calibration.csv, "
            "calibration.md and calibration.png into --out (see docs/calibration.md)."
        ),
    )
    parser.add_argument("--results", default="results/calibration")
    parser.add_argument("--out", default="reports/calibration")
    study = parser.add_mutually_exclusive_group()
    study.add_argument("--study-json", metavar="JSON|FILE", help="the study config as JSON")
    study.add_argument(
        "--study-yaml", metavar="FILE", default="config.yaml", help="the study config as YAML"
    )
    parser.set_defaults(func=run_calibration_report)


def run_calibration_report(args: argparse.Namespace) -> int:
    """Handler of ``calibration-report``; prints a one-line JSON summary."""
    from .calibration import write_calibration
    from .study_input import load_study

    study = load_study(args.study_json, None if args.study_json else args.study_yaml)
    if not study or not study.get("calibration"):
        raise ConfigError("the study config has no 'calibration' block; add one (config.yaml)")
    results = Path(args.results)
    if not results.is_dir():
        raise ConfigError(
            f"calibration results '{results}' do not exist; run 'snakemake --cores all calibrate'"
        )
    print(json.dumps(write_calibration(results, Path(args.out), study), sort_keys=True))
    return 0


def check_results_dir(results: Path, expected: list[Path] | None) -> None:
    """Refuse a results directory that does not exist or holds no run directory.

    A report of runs that all failed or never finished is valid (the cells are listed as
    such); a report of nothing is a wrong ``--results`` path, so it is an error.
    """
    from ..collect import discover

    if not results.is_dir():
        raise BenchError(
            f"results directory '{results}' does not exist; pass --results results/<preset> "
            "of a study that has run (e.g. results/default after 'snakemake --cores all')"
        )
    if not discover(results) and not any(p.parent.is_dir() for p in expected or []):
        raise BenchError(
            f"no run directories (<ablation>/seed<N>/) under '{results}'; pass the "
            "results/<preset> directory that holds them, or run the study first"
        )


def run_report(args: argparse.Namespace) -> int:
    """Handler of the ``report`` subcommand; prints a one-line JSON summary."""
    from .report import build_report
    from .study_input import load_study

    study = load_study(args.study_json, args.study_yaml)
    expected: list[Path] | None = None
    if args.expected is not None:
        expected = [Path(p) for p in args.expected]
    if args.expected_from:
        listing = Path(args.expected_from)
        if not listing.is_file():
            raise ConfigError(f"--expected-from '{listing}' does not exist")
        lines = listing.read_text(encoding="utf-8").splitlines()
        expected = (expected or []) + [Path(x.strip()) for x in lines if x.strip()]
    check_results_dir(Path(args.results), expected)
    result = build_report(
        Path(args.results),
        Path(args.out),
        study=study,
        expected=expected,
        snakemake_report_dir=Path(args.snakemake_report_dir) if args.snakemake_report_dir else None,
        figure1_dir=Path(args.figure1) if args.figure1 else None,
    )
    summary = {
        k: result[k] for k in ("index_html", "summary_md", "runs", "counts", "figures_skipped")
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_bench.reports",
        description="Render the alexnet-bench study report (same options as 'alexnet-bench report').",
    )
    _configure(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_report(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
