"""``alexnet-bench figure1 train | select | summarize``: the commands the figure1 rules call.

An entry point: it may import the report's rendering (``reports.figure1_view``) to write the study's
own figure; the figure1 package itself never imports ``reports``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import write_json, write_text
from .settings import INIT_RULES

log = logging.getLogger(__name__)


def _json_arg(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON ({exc.msg}); pass a JSON object") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object")
    return data


def _settings(args: argparse.Namespace) -> Any:
    from .settings import Figure1Settings

    return Figure1Settings.from_config(_json_arg(args.settings_json, "--settings-json"))


def _labels(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = int(value) if value.isdigit() else value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train one seed of one arm (a sweep point, or a final arm at the selected rate) through
    the same launcher as every study cell (launch.train_cell)."""
    from ..config import RunConfig, deep_merge, provenance_only
    from ..data import DataOptions
    from ..launch import LaunchOptions, train_cell
    from .results import chosen_lr

    if args.lr_from and not args.activation:
        raise ConfigError("--lr-from needs --activation relu|tanh")

    def resolve() -> tuple[RunConfig, dict[str, Any]]:
        base = _json_arg(args.config_json, "--config-json")
        if getattr(args, "provenance_json", None):
            provenance = _json_arg(args.provenance_json, "--provenance-json")
            base = deep_merge(base, provenance_only(provenance))
        if args.lr_from:
            lr = chosen_lr(Path(args.lr_from), args.activation)
            base = deep_merge(base, {"train": {"lr": lr}})
        cfg = RunConfig(deep_merge(base, {"train": {"seed": args.seed}}))
        return cfg, {"seed": cfg.train.seed, "lr": cfg.train.lr}

    given = getattr(args, "expect_data", None)
    expect = None if given in (None, "null") else _json_arg(given, "--expect-data")
    options = LaunchOptions(gpu_lock_dir=args.gpu_lock_dir, data=DataOptions(expect=expect))
    return train_cell(
        resolve, Path(args.out), _labels(args.label), options, record_failures=args.record_failures
    )


def cmd_select(args: argparse.Namespace) -> int:
    """Choose each activation's learning rate from the sweep; write selection.json, sweep.csv."""
    from ..reports.tables import to_csv
    from .results import SELECTION, SWEEP_CSV, init_dir, selection_record

    settings = _settings(args)
    if args.init not in settings.inits:
        raise ConfigError(f"--init {args.init} is not in figure1.inits {list(settings.inits)}")
    root = Path(args.results)
    record = selection_record(root, settings, args.init)
    write_json(init_dir(root, args.init) / SELECTION, record)
    write_text(init_dir(root, args.init) / SWEEP_CSV, to_csv(record["sweep"]))
    print(json.dumps({"init": args.init, "chosen": record["chosen"]}))
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    """Ratio with its CI, checks, the figure and summary.md from the sweep and final runs."""
    from ..reports.figure1_view import final_records, write_outputs
    from ..reports.tables import to_csv
    from .results import FINAL_CSV, SUMMARY, build_summary, check_summary

    root = Path(args.results)
    summary = check_summary(build_summary(root, _settings(args)))
    write_json(root / SUMMARY, summary)
    write_text(root / FINAL_CSV, to_csv(final_records(summary)))
    write_outputs(summary, Path(args.out))
    blocks = summary["inits"]
    failed = [c["check"] for b in blocks.values() for c in b["checks"] if not c["ok"]]
    ratios = {init: b["ratio"]["text"] for init, b in blocks.items()}
    print(
        json.dumps(
            {
                "ratios": ratios,
                "interaction": summary["interaction"]["text"],
                "failed_checks": failed,
            }
        )
    )
    return 0


def add_figure1_parser(subparsers: Any) -> None:
    """Register ``alexnet-bench figure1 ...`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "figure1",
        help="the paper's Figure 1 study (four-layer CNN, ReLU vs tanh): train, select, summarize",
        description="Commands behind `snakemake figure1` (workflow/rules/figure1.smk).",
    )
    sub = parser.add_subparsers(dest="figure1_command", required=True)

    train = sub.add_parser("train", help="train one seed of one arm into OUT")
    train.add_argument("--config-json", required=True, help="run config (without the seed)")
    train.add_argument(
        "--provenance-json",
        help="the run config's provenance keys (data.root, ...), merged over it",
    )
    train.add_argument(
        "--expect-data", help="the data identity the run was planned for (JSON; null: generated)"
    )
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--out", required=True, help="the run directory (…/seed<N>)")
    train.add_argument(
        "--lr-from", metavar="SELECTION_JSON", help="take train.lr from this selection.json"
    )
    train.add_argument("--activation", choices=["relu", "tanh"], help="arm for --lr-from")
    train.add_argument("--label", action="append", metavar="KEY=VALUE")
    train.add_argument(
        "--record-failures",
        action="store_true",
        help="a user error of one seed is recorded as status 'failed'",
    )
    train.add_argument("--gpu-lock-dir", metavar="DIR", help="lock one free GPU via DIR")
    train.set_defaults(func=cmd_train)

    for name, func, text in (
        ("select", cmd_select, "choose the learning rates: selection.json and sweep.csv"),
        ("summarize", cmd_summarize, "ratio, checks, figure: summary.json, final.csv, OUT/*"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--settings-json", required=True, help="config.yaml's figure1 block")
        p.add_argument("--results", default="results/figure1", help="the figure1 results root")
        if name == "select":
            p.add_argument(
                "--init",
                required=True,
                choices=list(INIT_RULES),
                help="whose sweep to select from (one of figure1.inits)",
            )
        if name == "summarize":
            p.add_argument("--out", default="reports/figure1", help="figure1.png|svg, summary.md")
        p.set_defaults(func=func)
