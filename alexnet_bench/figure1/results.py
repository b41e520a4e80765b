"""The figure1 results tree, the sweep table, the selection record and ``summary.json``.

Layout under ``results/figure1/``::

    sweep/<activation>/lr<lr>/seed<N>/{metrics.json,history.csv}   sweep runs (stop at the target)
    selection.json, sweep.csv                                       chosen rates, the sweep table
    final/<activation>/seed<N>/{metrics.json,history.csv}           fresh seeds at the chosen rates
    summary.json, final.csv                                         the ratio with its CI, checks
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from .analysis import Choice, RunResult, lr_score, paired_ratio, read_run, select_lr
from .settings import ACTIVATIONS, Figure1Settings, lr_label

SELECTION = "selection.json"
SUMMARY = "summary.json"
SWEEP_CSV = "sweep.csv"
FINAL_CSV = "final.csv"
PAPER_RATIO = 6.0
PAPER = (
    "Krizhevsky et al. 2012, Figure 1: CIFAR-10, four-layer CNN, no regularisation, learning "
    "rates chosen per network; ReLU reaches 25% training error six times faster than tanh"
)
SELECTION_RULE = (
    "per activation, the grid rate with the lowest median over sweep seeds of epochs to the "
    "target (a seed that never reaches it counts as +inf); ties go to the smaller rate"
)


def sweep_dir(root: Path, activation: str, lr: float) -> Path:
    return Path(root) / "sweep" / activation / f"lr{lr_label(lr)}"


def final_dir(root: Path, activation: str) -> Path:
    return Path(root) / "final" / activation


def sweep_results(root: Path, s: Figure1Settings) -> dict[str, dict[float, list[RunResult]]]:
    """Every sweep run, by activation and grid learning rate."""
    return {
        act: {
            lr: [
                read_run(sweep_dir(root, act, lr) / f"seed{seed}", s.target_train_error)
                for seed in s.sweep_seeds
            ]
            for lr in s.grids[act]
        }
        for act in ACTIVATIONS
    }


def choose(sweep: dict[str, dict[float, list[RunResult]]]) -> dict[str, Choice]:
    return {act: select_lr(points) for act, points in sweep.items()}


def sweep_rows(
    sweep: dict[str, dict[float, list[RunResult]]], choices: dict[str, Choice]
) -> list[dict[str, Any]]:
    """One row per (activation, lr): epochs to the target per seed, the median, chosen or not."""
    rows = []
    for act, points in sweep.items():
        for lr, runs in sorted(points.items()):
            score = lr_score(runs)
            rows.append(
                {
                    "activation": act,
                    "lr": lr,
                    "epochs_to_target": "; ".join(
                        f"seed {r.seed if r.seed is not None else r.path.name}: "
                        f"{r.crossing.text()}"
                        + (f" ({r.status})" if r.status != "completed" else "")
                        for r in runs
                    ),
                    "median_epochs": None if math.isinf(score) else round(score, 4),
                    "median_text": "never" if math.isinf(score) else f"{score:.1f}",
                    "chosen": choices[act].lr == lr,
                }
            )
    return rows


def selection_record(root: Path, s: Figure1Settings) -> dict[str, Any]:
    """The content of ``selection.json``: chosen rates, the rule and the sweep table."""
    sweep = sweep_results(root, s)
    choices = choose(sweep)
    return {
        "rule": SELECTION_RULE,
        "target_train_error": s.target_train_error,
        "chosen": {act: c.to_dict() for act, c in choices.items()},
        "sweep": sweep_rows(sweep, choices),
    }


def _final_run(r: RunResult, activation: str) -> dict[str, Any]:
    return {
        "activation": activation,
        "seed": r.seed,
        "lr": r.lr,
        "status": r.status,
        "path": str(r.path),
        "train_error_per_epoch": list(r.errors),
        "val_error_at_target": r.val_error_at_target,
        **{f"crossing_{k}": v for k, v in r.crossing.to_dict().items()},
    }


def _data_used(root: Path, s: Figure1Settings) -> dict[str, Any]:
    """Data set as the final runs recorded it (metrics.json ``data``), else as configured."""
    for act in ACTIVATIONS:
        for seed in s.final_seeds:
            try:
                metrics = json.loads(
                    (final_dir(root, act) / f"seed{seed}" / "metrics.json").read_text()
                )
            except (OSError, ValueError):
                continue
            data = metrics.get("data") if isinstance(metrics, dict) else None
            if isinstance(data, dict) and data.get("source"):
                return {k: data.get(k) for k in ("source", "root", "num_train", "num_val",
                                                 "num_classes", "image_size")}  # fmt: skip
    return {"source": s.data, "root": s.cifar10_root if s.data == "cifar10" else None}


def data_name(data: dict[str, Any]) -> str:
    """``shapes10 (embedded, generated), 2000 training images`` or the CIFAR-10 equivalent."""
    source = data.get("source")
    name = {"synthetic": "shapes10 (embedded, generated)", "cifar10": "CIFAR-10"}.get(
        str(source), str(source)
    )
    if data.get("source") == "cifar10" and data.get("root"):
        name += f" from {data['root']}"
    if data.get("num_train"):
        name += f", {data['num_train']} training images"
    if data.get("image_size"):
        name += f", {data['image_size']} px"
    return name


def _checks(
    choices: dict[str, Choice], used: dict[str, set[float]], finals: dict[str, list[RunResult]]
) -> list[dict[str, Any]]:
    """The criteria fixed before looking at the ratio, each with ok and a detail."""
    out = []
    for act in ACTIVATIONS:
        c = choices[act]
        out.append({
            "check": f"{act}: a grid rate reached the target in the sweep",
            "ok": c.reached,
            "detail": "" if c.reached else "no rate reached it: raise figure1.epochs or widen lr_grid",
        })  # fmt: skip
        out.append({
            "check": f"{act}: chosen rate inside the grid (the optimum is bracketed)",
            "ok": c.edge is None,
            "detail": "" if c.edge is None else
            f"chosen rate {lr_label(c.lr)} is the grid's {c.edge}: widen figure1.lr_grid.{act}",
        })  # fmt: skip
        bad = [f"seed {r.seed}: {r.crossing.text()}" for r in finals[act]
               if r.crossing.kind != "reached"]  # fmt: skip
        out.append({
            "check": f"{act}: every final run reached the target (no censoring)",
            "ok": not bad,
            "detail": "; ".join(bad),
        })  # fmt: skip
        wrong = sorted(used[act] - {c.lr})
        out.append({
            "check": f"{act}: final runs used the selected rate",
            "ok": not wrong and bool(used[act]),
            "detail": f"final runs used {wrong}, selection says {c.lr}" if wrong else "",
        })  # fmt: skip
    return out


def build_summary(root: Path, s: Figure1Settings) -> dict[str, Any]:
    """Everything the figure1 outputs and the study report show, from the run directories."""
    root = Path(root)
    sweep = sweep_results(root, s)
    choices = choose(sweep)
    finals = {
        act: [read_run(final_dir(root, act) / f"seed{seed}", s.target_train_error)
              for seed in s.final_seeds]
        for act in ACTIVATIONS
    }  # fmt: skip
    by_seed = {
        act: {seed: r.crossing for seed, r in zip(s.final_seeds, finals[act], strict=True)}
        for act in ACTIVATIONS
    }
    ratio = paired_ratio(by_seed["relu"], by_seed["tanh"])
    used = {act: {r.lr for r in finals[act] if r.lr is not None} for act in ACTIVATIONS}
    per_arm = {}
    for act in ACTIVATIONS:
        values = [r.crossing.value for r in finals[act] if r.crossing.kind == "reached"]
        per_arm[act] = {
            "lr": choices[act].lr,
            "reached": f"{len(values)}/{len(finals[act])}",
            "mean_epochs": statistics.fmean(values) if values else None,
            "geomean_epochs": statistics.geometric_mean(values) if values else None,
        }
    return {
        "schema_version": 1,
        "study": "figure1",
        "paper": {"ratio": PAPER_RATIO, "text": PAPER},
        "data": _data_used(root, s),
        "protocol": {
            **s.to_dict(),
            "network": "cuda-convnet layers-18pct without LRN (alexnet_bench.cifar_net)",
            "training_error": "running top-1 error over each epoch's training batches",
            "epochs_to_target": "linear interpolation between epoch-end points; censored runs "
            "keep their bound",
            "selection_rule": SELECTION_RULE,
        },
        "chosen": {act: c.to_dict() for act, c in choices.items()},
        "sweep": sweep_rows(sweep, choices),
        "final": [_final_run(r, act) for act in ACTIVATIONS for r in finals[act]],
        "arms": per_arm,
        "ratio": ratio.to_dict(),
        "checks": _checks(choices, used, finals),
    }
