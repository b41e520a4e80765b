"""``alexnet-bench compare BASE NEW``: register the subcommand and run it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import ConfigError

#: the default speed threshold (percent) and numerics margin
THRESHOLD_PCT = 5.0
MARGIN = "1sd"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


def parse_threshold(text: str) -> float:
    """``5`` or ``5%`` -> 0.05."""
    m = _PERCENT.match(str(text))
    value = float(m.group(1)) if m else -1.0
    if not 0 < value < 100:
        raise ConfigError(
            f"--threshold {text!r} is not a percentage between 0 and 100; pass e.g. 5 (for 5%)"
        )
    return value / 100.0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare, print the table, write the files; exit 1 on a regression."""
    from .comparison import compare
    from .numerics import Margin
    from .render import terminal, write_outputs

    threshold = parse_threshold(args.threshold)
    result = compare(Path(args.base), Path(args.new), threshold, Margin.parse(args.margin))
    written = write_outputs(result, Path(args.out)) if args.out else []
    print(terminal(result, written, args.report_only))
    return 0 if args.report_only else result.exit_status


def add_compare_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``compare`` subcommand."""
    parser = sub.add_parser(
        "compare",
        help="compare two results directories (versions, environments) cell by cell",
        description=(
            "Pair the cells (ablation, seed) of BASE and NEW, each a results directory (e.g. "
            "results/default) or one cell (e.g. results/default/tanh/seed0), and judge per "
            "cell, per ablation and over all cells: speed (NEW/BASE ratios with 95%% "
            "intervals: faster, slower, unchanged or insufficient data at --threshold), "
            "numerics (bit-identical, within noise at --margin, different) and the settings "
            "and environment that differ. Exit status 1 when an ablation is slower or "
            "numerically different, 0 otherwise, 2 on bad input (docs/compare.md)."
        ),
    )
    parser.add_argument("base", metavar="BASE", help="the reference results (directory or cell)")
    parser.add_argument("new", metavar="NEW", help="the results to judge against BASE")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="also write index.html, compare.md, compare.json and curves.png into DIR",
    )
    parser.add_argument(
        "--threshold",
        default=str(THRESHOLD_PCT),
        metavar="PCT",
        help=f"speed change that counts, in percent (default {THRESHOLD_PCT:g})",
    )
    parser.add_argument(
        "--margin",
        default=MARGIN,
        metavar="PTS|Nsd",
        help="equivalence margin of the numerics test: points of final validation top-1 error "
        f"(e.g. 2) or multiples of BASE's seed sd (e.g. 1sd; default {MARGIN})",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 even on a regression (the verdicts are still printed and written); bad "
        "input still exits 2",
    )
    parser.set_defaults(func=cmd_compare)
