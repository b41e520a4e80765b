"""The figure1 results tree, the sweep table, the selection record and ``summary.json``.

Layout under ``results/figure1/`` (one Snakemake job per run directory)::

    sweep/<activation>/lr<lr>/seed<N>/{metrics.json,history.csv}   sweep runs (stop at the target)
    selection.json, sweep.csv                                       chosen rates, the sweep table
    final/<activation>/seed<N>/{metrics.json,history.csv}           fresh seeds at the chosen rates
    summary.json, final.csv                                         the ratio with its CI, checks

Runs are read through :mod:`alexnet_bench.collect`; the tanh / ReLU ratio is the paired
log-ratio of :func:`alexnet_bench.effects.paired`. ``summary.json`` follows
``schemas/figure1_summary.schema.yaml`` (:func:`check_summary` before it is written,
:func:`load_summary` when it is read).
"""

from __future__ import annotations

import json
import math
import statistics
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..collect import Run, load_run
from ..effects import Paired, paired
from ..errors import ConfigError
from .analysis import Choice, curve, lr_score, select_lr, val_error_at_target
from .settings import ACTIVATIONS, Figure1Settings, lr_label

SELECTION = "selection.json"
SUMMARY = "summary.json"
SWEEP_CSV = "sweep.csv"
FINAL_CSV = "final.csv"
SUMMARY_VERSION = 2  # 2: the ratio from effects.paired; runs read through collect
PAPER_RATIO = 6.0
PAPER = (
    "Krizhevsky et al. 2012, Figure 1: CIFAR-10, four-layer CNN, no regularisation, learning "
    "rates chosen per network; ReLU reaches 25% training error six times faster than tanh"
)
SELECTION_RULE = (
    "per activation, the grid rate with the lowest median over sweep seeds of epochs to the "
    "target (a seed that never reaches it counts as +inf); ties go to the smaller rate"
)
RATIO_METHOD = (
    "geometric mean of per-seed ratios tanh/ReLU (seeds paired); 95% Student-t interval on the "
    "mean log ratio, n-1 degrees of freedom; a censored seed makes it a bound"
)


def sweep_dir(root: Path, activation: str, lr: float) -> Path:
    return Path(root) / "sweep" / activation / f"lr{lr_label(lr)}"


def final_dir(root: Path, activation: str) -> Path:
    return Path(root) / "final" / activation


def chosen_lr(selection: Path, activation: str) -> float:
    """The learning rate ``selection.json`` chose for ``activation``."""
    try:
        lr = json.loads(Path(selection).read_text())["chosen"][activation]["lr"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the chosen {activation} learning rate from '{selection}' ({exc}); "
            "rerun the sweep (snakemake figure1)"
        ) from None
    return float(lr)


def sweep_results(root: Path, s: Figure1Settings) -> dict[str, dict[float, list[Run]]]:
    """Every sweep run, by activation and grid learning rate."""
    return {
        act: {
            lr: [load_run(sweep_dir(root, act, lr) / f"seed{seed}" / "metrics.json")
                 for seed in s.sweep_seeds]
            for lr in s.grids[act]
        }
        for act in ACTIVATIONS
    }  # fmt: skip


def choose(sweep: dict[str, dict[float, list[Run]]]) -> dict[str, Choice]:
    return {act: select_lr(points) for act, points in sweep.items()}


def _status_note(r: Run) -> str:
    return f" ({r.status})" if r.status != "completed" else ""


def sweep_rows(
    sweep: dict[str, dict[float, list[Run]]], choices: dict[str, Choice]
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
                        f"seed {r.seed if r.seed is not None else r.path.parent.name}: "
                        f"{r.ttt_epochs.text()}{_status_note(r)}"
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


def _final_run(r: Run, activation: str) -> dict[str, Any]:
    return {
        "activation": activation,
        "seed": r.seed,
        "lr": r.lr,
        "status": r.status,
        "path": str(r.path.parent),
        "train_error_per_epoch": curve(r) if r.status not in ("missing", "unparseable") else [],
        "val_error_at_target": val_error_at_target(r),
        **{f"crossing_{k}": v for k, v in r.ttt_epochs.to_dict().items()},
    }


def _data_used(finals: dict[str, list[Run]], s: Figure1Settings) -> dict[str, Any]:
    """The data set as the final runs recorded it, else as configured."""
    for act in ACTIVATIONS:
        for r in finals[act]:
            d = r.record.data
            if d.source:
                return {"source": d.source, "root": d.root, "num_train": d.num_train,
                        "num_val": d.num_val, "num_classes": d.num_classes,
                        "image_size": d.image_size}  # fmt: skip
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
    choices: dict[str, Choice], used: dict[str, set[float]], finals: dict[str, list[Run]]
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
        bad = [f"seed {r.seed}: {r.ttt_epochs.text()}" for r in finals[act]
               if r.ttt_epochs.kind != "reached"]  # fmt: skip
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


def ratio_record(relu: list[Run], tanh: list[Run]) -> dict[str, Any]:
    """The tanh / ReLU ratio of epochs to the target over paired seeds (``summary.json``)."""
    p: Paired = paired(
        {r.seed: r.ttt_epochs for r in tanh if r.seed is not None},
        {r.seed: r.ttt_epochs for r in relu if r.seed is not None},
        ratio=True,
    )
    by_seed = {
        act: {r.seed: r.ttt_epochs.text() for r in runs}
        for act, runs in (("relu", relu), ("tanh", tanh))
    }
    note = f"seeds without data in both arms left out: {list(p.unpaired)}" if p.unpaired else ""
    return {
        "kind": p.kind,
        "value": p.value,
        "ci95_low": p.ci_low,
        "ci95_high": p.ci_high,
        "sd": p.sd,
        "n": p.n,
        "seeds": list(p.seeds),
        "censored": list(p.censored),
        "per_seed": [f"seed {s}: {by_seed['tanh'][s]} / {by_seed['relu'][s]}" for s in p.seeds],
        "note": note,
        "text": p.text()
        if p.value is not None
        else f"n/a ({note or 'no seed has data in both arms'})",
        "method": RATIO_METHOD,
    }


def build_summary(root: Path, s: Figure1Settings) -> dict[str, Any]:
    """Everything the figure1 outputs and the study report show, from the run directories."""
    root = Path(root)
    sweep = sweep_results(root, s)
    choices = choose(sweep)
    finals = {
        act: [load_run(final_dir(root, act) / f"seed{seed}" / "metrics.json")
              for seed in s.final_seeds]
        for act in ACTIVATIONS
    }  # fmt: skip
    used = {act: {r.lr for r in finals[act] if r.lr is not None} for act in ACTIVATIONS}
    per_arm = {}
    for act in ACTIVATIONS:
        values = [v for r in finals[act] if (v := r.ttt_epochs.value) is not None]
        per_arm[act] = {
            "lr": choices[act].lr,
            "reached": f"{len(values)}/{len(finals[act])}",
            "mean_epochs": statistics.fmean(values) if values else None,
            "geomean_epochs": statistics.geometric_mean(values) if values else None,
        }
    summary = {
        "schema_version": SUMMARY_VERSION,
        "study": "figure1",
        "paper": {"ratio": PAPER_RATIO, "text": PAPER},
        "data": _data_used(finals, s),
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
        "ratio": ratio_record(finals["relu"], finals["tanh"]),
        "checks": _checks(choices, used, finals),
    }
    return json.loads(json.dumps(summary))  # what the file will hold (tuples become lists)


@cache
def _summary_schema() -> dict[str, Any]:
    path = resources.files("alexnet_bench").joinpath("schemas/figure1_summary.schema.yaml")
    return yaml.safe_load(path.read_text())


def check_summary(summary: Any, where: str = "figure1 summary") -> dict[str, Any]:
    """``summary`` if it follows the summary schema; else a one-line :class:`ConfigError`."""
    try:
        jsonschema.validate(summary, _summary_schema())
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ConfigError(
            f"{where} breaks figure1_summary.schema.yaml at {path}: {exc.message}; rerun "
            "snakemake --cores all figure1"
        ) from None
    return summary


def load_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of the figure1 study, checked against its schema."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read figure1 summary '{path}' ({exc}); rerun snakemake figure1"
        ) from None
    return check_summary(data, f"'{path}'")
