"""``alexnet-bench compare`` measured: channels_last on vs off on this CPU, and a rerun.

Three copies of a subset of the study (default: the default preset, ablations baseline and
tanh, seeds 0-4: the preset's five) are trained by the workflow, each in its own Snakemake
working directory under ``--runs`` (default ``benchmarks/results/compare_runs/``):

* ``on``: the preset as it is (``runtime.channels_last: true`` in the default preset);
* ``off``: the same with ``run={runtime: {channels_last: false}}``;
* ``rerun``: ``on`` again, same code, same environment.

The three are trained seed by seed, interleaved (on, off, rerun for seed 0, then seed 1, ...),
so that slow drift of the machine falls on all three alike. Then

* ``alexnet-bench compare on off`` writes ``benchmarks/results/compare_channels_last/``;
* ``alexnet-bench compare on rerun`` writes ``benchmarks/results/compare_rerun/``, which must
  read ``bit-identical`` for every ablation and ``unchanged`` over all cells, with no ablation
  reading ``faster`` or ``slower`` (the script checks it and exits 1 if not). One ablation's
  five pairs may read ``insufficient data`` for speed: on a VM whose speed drifts by ~5% (sd)
  from run to run, five pairs give an interval of about ±6%, wider than the ±5% threshold.

``--no-train`` compares the runs already under ``--runs`` again (after a change to the
comparison, say) without training.

Run it with nothing else on the machine, and leave the repository alone while it runs (each
cell records the git commit; the default subset trains 30 cells: about 11 minutes of both cores
on a 2-vCPU VM). Five seeds, because this VM's speed drifts by up to 10% from one minute to the
next: with three, a rerun's paired interval did not fit inside ±5% and read "insufficient data"::

    uv run --locked python benchmarks/compare_channels_last.py

A quick check of the mechanics (not a measurement)::

    uv run --locked python benchmarks/compare_channels_last.py --preset tiny --seeds 0 1 \\
        --runs /tmp/compare_runs --out-prefix /tmp/compare
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from alexnet_bench.versus.comparison import ALL

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"on": None, "off": "run={runtime: {channels_last: false}}", "rerun": None}


def snakemake(
    workdir: Path, targets: list[str], args: argparse.Namespace, extra: str | None
) -> None:
    """Train ``targets`` (metrics.json paths) in ``workdir`` with the study's settings."""
    config = [
        f"preset={args.preset}",
        f"ablations=[{','.join(args.ablations)}]",
        f"seeds=[{','.join(map(str, args.seeds))}]",
    ]
    if extra:
        config.append(extra)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(args.cores),
        *targets,
        "--config",  # last: it takes every argument after it
        *config,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        print(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"snakemake failed in {workdir} (its logs/ say why)")


def compare(base: Path, new: Path, out: Path, margin: str) -> dict:
    """``alexnet-bench compare`` (report only), run from the repository with paths relative to
    it (the committed pages name no one's home directory); its compare.json."""
    cli = Path(sys.executable).with_name("alexnet-bench")
    cmd = [
        str(cli),
        "compare",
        os.path.relpath(base, REPO),
        os.path.relpath(new, REPO),
        "--out",
        os.path.relpath(out, REPO),
        "--margin",
        margin,
        "--report-only",
    ]
    print(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout)
    return json.loads((out / "compare.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--ablations", nargs="+", default=["baseline", "tanh"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--margin", default="1sd", help="numerics margin (alexnet-bench compare)")
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks/results/compare_runs")
    parser.add_argument(
        "--out-prefix",
        type=Path,
        default=REPO / "benchmarks/results/compare",
        help="writes <prefix>_channels_last/ and <prefix>_rerun/",
    )
    parser.add_argument(
        "--no-train", action="store_true", help="compare the runs already under --runs"
    )
    args = parser.parse_args()

    for name in [] if args.no_train else VARIANTS:
        (args.runs / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "config.yaml", args.runs / name / "config.yaml")
    for seed in [] if args.no_train else args.seeds:
        targets = [f"results/{args.preset}/{a}/seed{seed}/metrics.json" for a in args.ablations]
        for name, extra in VARIANTS.items():
            start = time.monotonic()
            snakemake(args.runs / name, targets, args, extra)
            print(f"seed {seed} ({name}): {time.monotonic() - start:.0f} s", flush=True)
    results = {name: args.runs / name / "results" / args.preset for name in VARIANTS}
    compare(results["on"], results["off"], Path(f"{args.out_prefix}_channels_last"), args.margin)
    rerun = compare(results["on"], results["rerun"], Path(f"{args.out_prefix}_rerun"), args.margin)
    failed = [
        f"{g['label']}: numerics {g['numerics']['verdict']}"
        for g in rerun["groups"]
        if g["numerics"]["verdict"] != "bit-identical"
    ]
    for g in rerun["groups"]:
        speed = next((s for s in g["speed"] if s["measure"] == "throughput"), None)
        verdict = speed["verdict"] if speed else "no throughput recorded"
        pooled = g["label"] == ALL or len(rerun["groups"]) == 1
        if verdict in ("faster", "slower") or (pooled and verdict != "unchanged"):
            failed.append(f"{g['label']}: speed {verdict}")
    if failed:
        print("the rerun does not read bit-identical and unchanged: " + "; ".join(failed))
        return 1
    print("the rerun reads bit-identical and unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
