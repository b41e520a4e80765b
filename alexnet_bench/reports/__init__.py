"""Study report: a forest plot of every effect, per-ablation tables vs baseline, learning curves,
speed, paper vs measured.

Entry point: :func:`build_report`; CLI: ``alexnet-bench report`` (:mod:`.cli`) or
``python -m alexnet_bench.reports``. Reads only the run output formats (metrics.json,
history.csv, gpu.csv), never the training code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

__all__ = ["build_report", "caption_path", "captions_dir", "output_captions"]


def build_report(
    results_dir: Path,
    out_dir: Path,
    study: dict[str, Any] | None = None,
    expected: list[Path] | None = None,
    snakemake_report_dir: Path | None = None,
    figure1_dir: Path | None = None,
) -> dict[str, Any]:
    """See :func:`alexnet_bench.reports.report.build_report` (imported lazily: matplotlib)."""
    from .report import build_report as _build

    return _build(results_dir, out_dir, study, expected, snakemake_report_dir, figure1_dir)


def captions_dir() -> Path:
    from .report import captions_dir as _dir

    return _dir()


def caption_path(name: str) -> Path:
    from .report import caption_path as _path

    return _path(name)


def output_captions() -> dict[str, str]:
    from .report import output_captions as _captions

    return _captions()
