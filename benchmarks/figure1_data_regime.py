"""The Figure 1 study's data regime, indicatively: final seeds at fixed learning rates on a larger
shapes10 set, per init and activation (no sweep, so not a protocol result).

For each init of config.yaml's ``figure1.inits`` and each activation, the final seeds train at
the rates a figure1 study chose (its ``selection.json`` files, ``--selections``; default the
1000-image study in results/figure1) on ``--train-images`` shapes10
images, through ``alexnet-bench figure1 train`` with the protocol's run config
(``Figure1Settings.run_config``), one thread per process, ``--jobs`` processes at once. Reported
per init: the tanh / ReLU ratio of epochs to the target (``effects.paired``, the study's own
statistic) and the ReLU arm's generalisation gap at the first epoch below the target (validation
minus running training error, median over seeds), the data-regime criterion of the study; then,
within this one data size, the interaction (paper-era ratio / variance-preserving ratio, paired
by seed) and how much of the log-distance from the variance-preserving ratio to 6x the init
explains, with its Fieller interval (``figure1.results.explained_record``, the study's own
sentence). Per-seed epochs are written at full precision (``epochs_to_target_exact``).

Run::

    uv run python benchmarks/figure1_data_regime.py --train-images 5000 \\
        --out benchmarks/results/figure1_data_regime_5000.json
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from alexnet_bench.collect import load_run
from alexnet_bench.effects import paired
from alexnet_bench.figure1.analysis import generalisation_gap
from alexnet_bench.figure1.results import (
    chosen_lr,
    explained_record,
    init_dir,
    interaction_record,
    per_seed_ratios,
    ratio_record,
)
from alexnet_bench.figure1.settings import ACTIVATIONS, Figure1Settings
from alexnet_bench.telemetry.host import cpu_isa_flags, cpu_model

REPO = Path(__file__).resolve().parents[1]


def chosen_rates(results: Path, settings: Figure1Settings) -> dict[tuple[str, str], float]:
    """The rates a figure1 study chose, per (init, activation), from its ``selection.json``
    files (``results/figure1/<init>/selection.json``; a one-line error when one is missing)."""
    return {
        (init, act): chosen_lr(init_dir(str(results), init) / "selection.json", act)
        for init in settings.inits
        for act in ACTIVATIONS
    }


def train(
    settings: Figure1Settings, rates: dict, init: str, act: str, seed: int, out: Path
) -> Path:
    """One final-seed run at the chosen rate; returns its metrics.json."""
    cfg = settings.run_config(init, act, rates[(init, act)])
    run_dir = out / init / act / f"seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cli = shutil.which("alexnet-bench") or str(Path(sys.executable).with_name("alexnet-bench"))
    cmd = [
        cli,
        "figure1",
        "train",
        "--config-json",
        json.dumps(cfg),
        "--seed",
        str(seed),
        "--out",
        str(run_dir),
    ]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return run_dir / "metrics.json"


def _cpu() -> str:
    """The CPU model and its widest vector extension (results differ between them)."""
    flags = cpu_isa_flags() or []
    widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
    return f"{cpu_model() or 'unknown'}, {widest}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument(
        "--selections",
        type=Path,
        default=REPO / "results" / "figure1",
        help="the figure1 study whose chosen rates to train at: its results directory, which "
        "holds <init>/selection.json (default: results/figure1, from snakemake figure1)",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=Path, help="keep the run directories here")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    block = yaml.safe_load((REPO / "config.yaml").read_text())["figure1"]
    block.update(data="synthetic", train_images=args.train_images)
    settings = Figure1Settings.from_config(block, base_dir=REPO)
    rates = chosen_rates(args.selections, settings)
    runs_root = args.runs or Path(tempfile.mkdtemp(prefix="figure1-regime-"))
    jobs = [(i, a, s) for i in settings.inits for a in ACTIVATIONS for s in settings.final_seeds]
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        paths = list(pool.map(lambda j: train(settings, rates, *j, runs_root), jobs))
    runs = {job: load_run(path) for job, path in zip(jobs, paths, strict=True)}

    result: dict[str, Any] = {
        "train_images": args.train_images,
        "cpu": _cpu(),
        "rates": {f"{i}/{a}": lr for (i, a), lr in rates.items()},
        "rates_from": str(args.selections),
        "final_seeds": list(settings.final_seeds),
        "inits": {},
    }
    for init in settings.inits:
        arms = {a: {s: runs[(init, a, s)] for s in settings.final_seeds} for a in ACTIVATIONS}
        ratio = paired(
            {s: r.ttt_epochs for s, r in arms["tanh"].items()},
            {s: r.ttt_epochs for s, r in arms["relu"].items()},
            ratio=True,
        )
        gaps = [g for r in arms["relu"].values() if (g := generalisation_gap(r)) is not None]
        result["inits"][init] = {
            "epochs_to_target": {
                a: {str(s): r.ttt_epochs.text() for s, r in arms[a].items()} for a in ACTIVATIONS
            },
            "epochs_to_target_exact": {
                a: {str(s): r.ttt_epochs.to_dict()["epochs"] for s, r in arms[a].items()}
                for a in ACTIVATIONS
            },
            "tanh_over_relu": ratio.text(),
            "relu_gap_median_pts": 100 * statistics.median(gaps) if gaps else None,
        }
    finals = {
        i: {a: [runs[(i, a, s)] for s in settings.final_seeds] for a in ACTIVATIONS}
        for i in settings.inits
    }
    interaction = interaction_record(finals, settings.inits)
    ratios = {i: ratio_record(finals[i]["relu"], finals[i]["tanh"]) for i in settings.inits}
    per_seed = {i: per_seed_ratios(finals[i]) for i in settings.inits}
    explained = explained_record(ratios, interaction, per_seed)
    result["interaction"] = interaction["text"]
    result["explained"] = {k: explained[k] for k in ("kind", "value", "ci95_low", "ci95_high")}
    result["init_explains"] = explained["text"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
