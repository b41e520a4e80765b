"""Command-line interface: ``alexnet-bench train | report | figure1 | compare | plan | prepare-data |
data-info | list-failed | preview-data``.

Every user-facing error is one line, ``error: <what is wrong>; <how to fix it>``, exit status 2;
an interrupted command (SIGINT/SIGTERM, see launch.py) ends with one ``interrupted: ...`` line
and status 128 + signal number.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig, deep_merge, parse_override, provenance_only
from .errors import BenchError
from .launch import (
    EXIT_USER_ERROR,
    Interrupted,
    LaunchOptions,
    install_signal_handlers,
    train_cell,
)

log = logging.getLogger("alexnet_bench")


def _parse_labels(items: Sequence[str]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        labels[key] = int(value) if value.isdigit() else value
    return labels


DEFAULT_STUDY = Path("config.yaml")


def _study_base(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run config and labels of a study cell (``--preset/--ablation/--seed`` from ``--study``).

    With no config source at all (no ``--config``, ``--config-json`` or ``--preset``) and a
    ``config.yaml`` in the working directory, the study's own preset and baseline are used, so
    ``alexnet-bench train --out DIR`` trains the CPU-sized default; without one, the schema
    defaults (the paper's full-scale settings) apply.
    """
    from .config import load_yaml
    from .study import resolve_run

    explicit = args.preset or args.ablation or args.study
    if not explicit and (args.config or args.config_json or not DEFAULT_STUDY.exists()):
        return {}, {}
    study_path = Path(args.study) if args.study else DEFAULT_STUDY
    if not study_path.exists():
        raise BenchError(
            f"study config '{study_path}' not found; pass --study PATH to the config.yaml that "
            "defines the presets, or use --config RUN.yaml"
        )
    study = load_yaml(study_path) or {}
    if not isinstance(study, dict) or "presets" not in study or "ablation_defs" not in study:
        raise BenchError(
            f"'{study_path}' is not a study config (needs 'presets' and 'ablation_defs'); pass "
            "--study PATH to the repository's config.yaml"
        )
    preset = args.preset or study.get("preset", "default")
    ablation = args.ablation or study.get("baseline", "baseline")
    seed = args.seed if args.seed is not None else 0
    cfg = resolve_run(study, preset, ablation, seed)
    if not explicit:
        log.info(
            "no --config given: using preset '%s', ablation '%s', seed %d from %s",
            preset,
            ablation,
            seed,
            study_path,
        )
    return cfg.to_dict(), {"preset": preset, "ablation": ablation, "seed": seed}


def load_run_config(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any]]:
    """Merge the study cell, ``--config`` (YAML), ``--config-json``, ``--set`` and ``--seed``.

    Returns the validated run config and the labels implied by the study cell (if any).
    """
    from .config import load_yaml

    data, labels = _study_base(args)
    if args.config:
        loaded = load_yaml(args.config) or {}
        if not isinstance(loaded, dict):
            raise BenchError(f"config file '{args.config}' must hold a mapping of sections")
        data = deep_merge(data, loaded)
    if args.config_json:
        data = deep_merge(data, _json_object(args.config_json, "--config-json"))
    if args.provenance_json:
        data = deep_merge(
            data, provenance_only(_json_object(args.provenance_json, "--provenance-json"))
        )
    for text in args.set or []:
        data = deep_merge(data, parse_override(text))
    if args.seed is not None:
        data = deep_merge(data, {"train": {"seed": args.seed}})
    return RunConfig(data), labels


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{flag} is not valid JSON ({exc.msg}); pass a JSON object") from None
    if not isinstance(value, dict) and (flag != "--expect-data" or value is not None):
        raise BenchError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run: parse, resolve the run config, launch (launch.py)."""
    from .data import DataOptions

    expect = _json_object(args.expect_data, "--expect-data") if args.expect_data else None
    options = LaunchOptions(
        gpu_lock_dir=args.gpu_lock_dir,
        gpu_wait_s=args.gpu_wait_s,
        cpu_standins=args.cpu_standins,
        peak_flops=Path(args.peak_flops) if args.peak_flops else None,
        data=DataOptions(expect=expect, rebuild_missing=args.rebuild_missing_data),
    )
    return train_cell(
        lambda: load_run_config(args),
        Path(args.out),
        _parse_labels(args.label or []),
        options,
        record_failures=args.record_failures,
        on_insufficient_gpus=args.on_insufficient_gpus,
    )


def cmd_list_failed(args: argparse.Namespace) -> int:
    """Print the metrics.json paths of runs that did not complete (for ``snakemake -R``)."""
    from .collect import load_run

    for path in sorted(Path(args.results).rglob("metrics.json")):
        status = load_run(path).status
        if status != "completed" and (args.status is None or status in args.status):
            print(path)
    return 0


def cmd_peak_flops(args: argparse.Namespace) -> int:
    """Measure the CPU peak FLOP/s for each thread count and write them (atomically)."""
    from .telemetry.peak import write_cpu_peaks

    result = write_cpu_peaks(Path(args.out), args.threads)
    peaks = ", ".join(
        f"{n} thread(s): {v / 1e9:.1f} GFLOP/s" for n, v in result["peak_flops_by_threads"].items()
    )
    print(f"{peaks}; wrote {args.out}")
    return 0


def cmd_preview_data(args: argparse.Namespace) -> int:
    """Save a PNG grid with examples of every class of the embedded data set."""
    from .data.preview import save_preview

    path = save_preview(Path(args.out), size=args.size, per_class=args.per_class)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet-bench",
        description="AlexNet benchmark and ablation suite: train one configured run, render reports.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train and evaluate one run",
        description=(
            "Train one run and write history.csv, metrics.json (atomically), gpu.csv (NVML telemetry, "
            "when available) and checkpoint.pt into --out. Rerunning with the same config resumes "
            "from the last complete epoch. Config = schema defaults (the paper's full-scale "
            "settings) <- study cell (--preset/--ablation from --study; by default, with no "
            "--config/--config-json, the preset and baseline of ./config.yaml when it exists) "
            "<- --config YAML <- --config-json <- --set overrides <- --seed (see "
            "alexnet_bench/schemas/run.schema.yaml for every key)."
        ),
    )
    train.add_argument(
        "--study",
        metavar="CONFIG_YAML",
        help="study config holding presets and ablation_defs (default: ./config.yaml if present)",
    )
    train.add_argument(
        "--preset", help="start from this preset of the study, e.g. default, tiny, cifar10"
    )
    train.add_argument(
        "--ablation", help="apply this ablation of the study, e.g. tanh (default: its baseline)"
    )
    train.add_argument("--seed", type=int, help="training seed (overrides train.seed)")
    train.add_argument(
        "--config",
        help="run config YAML (sections model/data/augment/eval/train/runtime/telemetry)",
    )
    train.add_argument("--config-json", help="run config as a JSON object, merged over --config")
    train.add_argument(
        "--provenance-json",
        help="provenance settings (data.root, data.cache, ...: never part of the run's "
        "identity) as a JSON object, merged over --config-json",
    )
    train.add_argument(
        "--expect-data",
        metavar="JSON",
        help="the data identity the run was planned for (the workflow's; identity.py): other "
        "data fails with one line ('null': generated data)",
    )
    train.add_argument(
        "--rebuild-missing-data",
        action="store_true",
        help="build a prepared store missing from data.cache's cache from data.root instead of "
        "failing (the workflow's cells)",
    )
    train.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one setting, value parsed as YAML (repeatable), e.g. --set train.epochs=5",
    )
    train.add_argument("--out", required=True, help="output directory of this run")
    train.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="label stored under 'run' in metrics.json (repeatable), e.g. --label ablation=tanh",
    )
    train.add_argument(
        "--record-failures",
        action="store_true",
        help="on a user error write metrics.json with status 'failed' and exit 0 (workflow mode)",
    )
    train.add_argument(
        "--on-insufficient-gpus",
        choices=["fail", "skip"],
        default="fail",
        help="when the job needs more GPUs than visible: fail (exit 2) or record status 'skipped'",
    )
    train.add_argument(
        "--cpu-standins",
        choices=["run", "skip"],
        default="run",
        help="a multi-device run on a host without GPUs: train it on CPU processes/threads "
        "(run, the default) or record it as skipped (skip, what the workflow does by default)",
    )
    train.add_argument(
        "--gpu-lock-dir",
        metavar="DIR",
        help="acquire runtime.gpus free GPUs via lock files in DIR and set CUDA_VISIBLE_DEVICES to them",
    )
    train.add_argument(
        "--gpu-wait-s",
        type=float,
        default=None,
        help="give up waiting for free GPUs after this many seconds (default: wait)",
    )
    train.add_argument(
        "--peak-flops",
        metavar="PEAK_JSON",
        help="the host's CPU peak FLOP/s per thread count, measured once per study by "
        "'alexnet-bench peak-flops' (default: probe it in this job)",
    )
    train.set_defaults(func=cmd_train)

    peak = sub.add_parser(
        "peak-flops",
        help="measure this host's CPU peak FLOP/s once (run it with nothing else running)",
    )
    peak.add_argument(
        "--out", required=True, help="JSON file to write, e.g. results/default/peak_flops.json"
    )
    peak.add_argument(
        "--threads", type=int, nargs="+", default=[1], help="thread counts to measure (default: 1)"
    )
    peak.set_defaults(func=cmd_peak_flops)

    failed = sub.add_parser(
        "list-failed", help="list metrics.json files of runs that did not complete"
    )
    failed.add_argument("results", help="results directory, e.g. results/default")
    failed.add_argument(
        "--status", action="append", help="only these statuses (failed, diverged, skipped, ...)"
    )
    failed.set_defaults(func=cmd_list_failed)

    preview = sub.add_parser(
        "preview-data", help="save example images of the embedded shapes10 data set"
    )
    preview.add_argument("--out", default="reports/shapes10.png")
    preview.add_argument("--size", type=int, default=37)
    preview.add_argument("--per-class", type=int, default=10)
    preview.set_defaults(func=cmd_preview_data)

    try:
        from .reports.cli import add_calibration_parser, add_report_parser
    except ImportError:  # reports extra not importable: keep training usable
        pass
    else:
        add_report_parser(sub)
        add_calibration_parser(sub)
    from .data.cli import add_data_parsers
    from .figure1.cli import add_figure1_parser
    from .plan.cli import add_plan_parser
    from .versus.cli import add_compare_parser

    add_data_parsers(sub)
    add_figure1_parser(sub)
    add_compare_parser(sub)
    add_plan_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    previous = install_signal_handlers()
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(
            f"interrupted by {signal.Signals(signum).name}: {_resume_hint(args)}", file=sys.stderr
        )
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted command left behind and how to carry on."""
    if args.command != "train":
        return "nothing was finalised; run the command again"
    checkpoint = Path(args.out) / "checkpoint.pt"
    where = f"resume from {checkpoint}" if checkpoint.exists() else "start again"
    return f"no metrics.json was written; rerun the same command to {where}"


if __name__ == "__main__":
    sys.exit(main())
