"""The figure1 results tree, the sweep table, the selection record and ``summary.json``.

Layout under ``results/figure1/`` (one Snakemake job per run directory; ``<init>`` is one of
``figure1.inits``)::

    <init>/sweep/<activation>/lr<lr>/seed<N>/{metrics.json,...}   sweep runs (stop at the target)
    <init>/selection.json, <init>/sweep.csv                        chosen rates, the sweep table
    <init>/final/<activation>/seed<N>/{metrics.json,...}          fresh seeds at the chosen rates
    summary.json, final.csv                 per init the ratio with its CI and checks; interaction

Runs are read through :mod:`alexnet_bench.collect`; each init's tanh / ReLU ratio is the paired
log-ratio of :func:`alexnet_bench.effects.paired`, and the interaction (how much the init moves
that ratio) is the paired ratio of the two inits' per-seed ratios over their shared final seeds. ``summary.json`` follows
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
from ..effects import Interval, Paired, fmt_effect, paired, ratio_interval, ratio_of_means
from ..errors import ConfigError
from .analysis import (
    Choice,
    curve,
    generalisation_gap,
    lr_score,
    select_lr,
    val_error_at_target,
)
from .settings import ACTIVATIONS, INIT_TEXT, PAPER_ERA_INIT, Figure1Settings, lr_label

SELECTION = "selection.json"
SUMMARY = "summary.json"
SWEEP_CSV = "sweep.csv"
FINAL_CSV = "final.csv"
SUMMARY_VERSION = 3  # 3: init as a factor (per-init blocks, interaction); 2: effects.paired
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
GAP_MARGIN = 0.10  # the data-regime criterion: ReLU val within 10 points of train at the target
INTERACTION_METHOD = (
    "ratio of ratios: per final seed (tanh/ReLU under the paper-era init) / (tanh/ReLU under the "
    "variance-preserving init), seeds shared by both inits paired; geometric mean with a 95% "
    "Student-t interval on the mean log, n-1 degrees of freedom; a censored seed makes it a bound"
)
EXPLAINED_METHOD = (
    "share = mean over the final seeds both inits share of log(interaction) / mean of "
    "log(6 / variance-preserving ratio), i.e. the log of the geometric-mean interaction over the "
    "log-distance from the geometric-mean variance-preserving ratio to 6x; 95% CI by Fieller's "
    "theorem over those paired seeds (both logs are per-seed values, so the variance-preserving "
    "ratio's own uncertainty and its covariance with the interaction, which contains it, enter; "
    "Student t, n-1 degrees of freedom); unbounded when the seeds do not resolve the distance to "
    "6x; a censored seed gives a bound from the variance-preserving estimate, without a CI"
)


def init_dir(root: Path, init: str) -> Path:
    return Path(root) / init


def sweep_dir(root: Path, init: str, activation: str, lr: float) -> Path:
    return init_dir(root, init) / "sweep" / activation / f"lr{lr_label(lr)}"


def final_dir(root: Path, init: str, activation: str) -> Path:
    return init_dir(root, init) / "final" / activation


def chosen_lr(selection: Path, activation: str) -> float:
    """The learning rate ``selection.json`` (of one init) chose for ``activation``."""
    try:
        lr = json.loads(Path(selection).read_text())["chosen"][activation]["lr"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the chosen {activation} learning rate from '{selection}' ({exc}); "
            "rerun the sweep (snakemake figure1)"
        ) from None
    return float(lr)


Sweep = dict[str, dict[float, list[Run]]]  # activation -> lr -> runs (one per sweep seed)


def sweep_results(root: Path, s: Figure1Settings, init: str) -> Sweep:
    """Every sweep run of one init, by activation and grid learning rate."""
    return {
        act: {
            lr: [
                load_run(sweep_dir(root, init, act, lr) / f"seed{seed}" / "metrics.json")
                for seed in s.sweep_seeds
            ]
            for lr in s.grids[init][act]
        }
        for act in ACTIVATIONS
    }


def choose(sweep: Sweep) -> dict[str, Choice]:
    return {act: select_lr(points) for act, points in sweep.items()}


def _status_note(r: Run) -> str:
    return f" ({r.status})" if r.status != "completed" else ""


def sweep_rows(sweep: Sweep, choices: dict[str, Choice]) -> list[dict[str, Any]]:
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


def selection_record(root: Path, s: Figure1Settings, init: str) -> dict[str, Any]:
    """The content of ``<init>/selection.json``: chosen rates, the rule and the sweep table."""
    sweep = sweep_results(root, s, init)
    choices = choose(sweep)
    return {
        "init": init,
        "rule": SELECTION_RULE,
        "target_train_error": s.target_train_error,
        "chosen": {act: c.to_dict() for act, c in choices.items()},
        "sweep": sweep_rows(sweep, choices),
    }


def _final_run(r: Run, init: str, activation: str) -> dict[str, Any]:
    return {
        "init": init,
        "activation": activation,
        "seed": r.seed,
        "lr": r.lr,
        "status": r.status,
        "path": str(r.path.parent),
        "train_error_per_epoch": curve(r) if r.status not in ("missing", "unparseable") else [],
        "val_error_at_target": val_error_at_target(r),
        "gap_at_target": generalisation_gap(r),
        **{f"crossing_{k}": v for k, v in r.ttt_epochs.to_dict().items()},
    }


def _data_used(finals: list[Run], s: Figure1Settings) -> dict[str, Any]:
    """The data set as the final runs recorded it, else as configured."""
    for r in finals:
        d = r.record.data
        if d.source:
            return {
                "source": d.source,
                "root": d.root,
                "num_train": d.num_train,
                "num_val": d.num_val,
                "num_classes": d.num_classes,
                "image_size": d.image_size,
            }
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
    init: str, choices: dict[str, Choice], used: dict[str, set[float]], finals: dict[str, list[Run]]
) -> list[dict[str, Any]]:
    """The criteria fixed before looking at any ratio, for one init, each with ok and a detail."""
    out = []
    for act in ACTIVATIONS:
        c = choices[act]
        arm = f"{init} {act}"
        out.append(
            {
                "check": f"{arm}: a grid rate reached the target in the sweep",
                "ok": c.reached,
                "detail": ""
                if c.reached
                else f"no rate reached it: raise figure1.inits.{init}.epochs or widen its lr_grid.{act}",
            }
        )
        out.append(
            {
                "check": f"{arm}: chosen rate inside the grid (the optimum is bracketed)",
                "ok": c.edge is None,
                "detail": ""
                if c.edge is None
                else f"chosen rate {lr_label(c.lr)} is the grid's "
                f"{c.edge}: widen figure1.inits.{init}.lr_grid.{act}",
            }
        )
        bad = [
            f"seed {r.seed}: {r.ttt_epochs.text()}"
            for r in finals[act]
            if r.ttt_epochs.kind != "reached"
        ]
        out.append(
            {
                "check": f"{arm}: every final run reached the target (no censoring)",
                "ok": not bad,
                "detail": "; ".join(bad) + (" (the ratio is then a bound)" if bad else ""),
            }
        )
        wrong = sorted(used[act] - {c.lr})
        out.append(
            {
                "check": f"{arm}: final runs used the selected rate",
                "ok": not wrong and bool(used[act]),
                "detail": f"final runs used {wrong}, selection says {c.lr}" if wrong else "",
            }
        )
    return out


def _paired_record(p: Paired, per_seed: list[str], method: str) -> dict[str, Any]:
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
        "per_seed": per_seed,
        "note": note,
        "text": p.text()
        if p.value is not None
        else f"n/a ({note or 'no seed has data in both arms'})",
        "method": method,
    }


def ratio_record(relu: list[Run], tanh: list[Run]) -> dict[str, Any]:
    """The tanh / ReLU ratio of epochs to the target over paired seeds (``summary.json``)."""
    p = paired(
        {r.seed: r.ttt_epochs for r in tanh if r.seed is not None},
        {r.seed: r.ttt_epochs for r in relu if r.seed is not None},
        ratio=True,
    )
    by_seed = {
        act: {r.seed: r.ttt_epochs.text() for r in runs}
        for act, runs in (("relu", relu), ("tanh", tanh))
    }
    per_seed = [f"seed {s}: {by_seed['tanh'][s]} / {by_seed['relu'][s]}" for s in p.seeds]
    return _paired_record(p, per_seed, RATIO_METHOD)


PerSeedRatios = dict[int, Interval | None]  # seed -> tanh / ReLU (an interval when censored)


def per_seed_ratios(finals: dict[str, list[Run]]) -> PerSeedRatios:
    """One init's tanh / ReLU per final seed (both arms ran): a number, or an interval."""
    relu = {r.seed: r.ttt_epochs for r in finals["relu"] if r.seed is not None}
    tanh = {r.seed: r.ttt_epochs for r in finals["tanh"] if r.seed is not None}
    return {s: ratio_interval(tanh[s], relu[s]) for s in sorted(set(relu) & set(tanh))}


def interaction_record(
    finals: dict[str, dict[str, list[Run]]], inits: tuple[str, ...]
) -> dict[str, Any]:
    """(tanh/ReLU under the paper-era init) / (tanh/ReLU under variance-preserving), paired by
    seed: how many times the init multiplies the ratio. ``n/a`` unless both inits ran."""
    if set(inits) != {PAPER_ERA_INIT, "variance_preserving"}:
        p = Paired(True, "n/a", 0, None)
        return {
            **_paired_record(p, [], INTERACTION_METHOD),
            "text": "n/a (needs both inits in figure1.inits)",
        }

    paper = per_seed_ratios(finals[PAPER_ERA_INIT])
    vp = per_seed_ratios(finals["variance_preserving"])
    p = paired(paper, vp, ratio=True)

    def text(x: Any) -> str:
        if x is None:
            return "n/a"
        lo, hi = x.lower, x.upper
        if lo == hi:
            return fmt_effect(lo, True)
        return f"> {fmt_effect(lo, True)}" if math.isinf(hi) else f"in [{lo:.2f}, {hi:.2f}]"

    rows = [f"seed {s}: {text(paper[s])} / {text(vp[s])}" for s in p.seeds]
    return _paired_record(p, rows, INTERACTION_METHOD)


def _exact_logs(ratios: PerSeedRatios) -> dict[int, float]:
    """log of each seed's ratio known exactly (not censored) and positive."""
    return {
        s: math.log(x.lower)
        for s, x in ratios.items()
        if x is not None and x.lower == x.upper and 0 < x.lower < math.inf
    }


def _share(
    head: str,
    interaction: dict[str, Any],
    vp: dict[str, Any],
    per_seed: dict[str, PerSeedRatios],
) -> tuple[dict[str, Any], str]:
    """The share's numbers (percent) and its words, once both ratios are measured."""
    era_logs = _exact_logs(per_seed.get(PAPER_ERA_INIT, {}))
    vp_logs = _exact_logs(per_seed.get("variance_preserving", {}))
    equal = f", and the variance-preserving ratio already equals the paper's {PAPER_RATIO:g}×"
    if interaction["kind"] == "estimate" and era_logs and vp_logs:
        x = {s: era_logs[s] - vp_logs[s] for s in set(era_logs) & set(vp_logs)}
        y = {s: math.log(PAPER_RATIO) - vp_logs[s] for s in x}
        f = ratio_of_means(x, y)
        if f.value is None:
            return {}, head + equal
        low, high = (None if v is None else 100 * v for v in (f.ci_low, f.ci_high))
        numbers = {"kind": f.kind, "value": 100 * f.value, "ci95_low": low, "ci95_high": high}
        numbers.update(n=f.n, seeds=list(f.seeds))
        part = f"{100 * f.value:.0f}%"
        if f.kind == "estimate":
            part += f" (95% CI {low:.0f}% to {high:.0f}%, Fieller over {f.n} paired seeds)"
        elif f.kind == "unbounded":
            part += (
                f" (95% CI unbounded: {f.n} paired seeds do not resolve the distance from the "
                f"variance-preserving ratio to {PAPER_RATIO:g}×)"
            )
        else:
            part += f" (no CI: {f.n} paired seed)"
    else:  # a bound: from the variance-preserving estimate, without an interval
        gap = math.log(PAPER_RATIO / vp["value"])
        if abs(gap) < 1e-12:
            return {}, head + equal
        share = 100 * math.log(interaction["value"]) / gap
        lower = (interaction["kind"] == "lower bound") == (gap > 0)
        kind = "lower bound" if lower else "upper bound"
        numbers = {"kind": kind, "value": share, "n": interaction["n"]}
        numbers["seeds"] = list(interaction["seeds"])
        part = f"{'at least' if lower else 'at most'} {share:.0f}% (a bound: censored seeds, no CI)"
    text = (
        f"{head}, i.e. {part} of the log-distance from the variance-preserving ratio to the "
        f"paper's {PAPER_RATIO:g}×."
    )
    return numbers, text


def explained_record(
    ratios: dict[str, dict[str, Any]],
    interaction: dict[str, Any],
    per_seed: dict[str, PerSeedRatios] | None = None,
) -> dict[str, Any]:
    """How much of the gap to the paper's 6x the init explains, with its interval and one
    sentence from the numbers (``summary.json`` -> ``explained``, ``init_explains``).

    The gap is the log-distance from the variance-preserving ratio to 6x; the init's part is
    log(interaction) over it. Both are per-seed quantities over the final seeds the two inits
    share (``per_seed``: each init's tanh / ReLU per seed), so the share's interval is Fieller's
    (:func:`alexnet_bench.effects.ratio_of_means`): it carries the variance-preserving ratio's
    uncertainty, not only the interaction's. A censored seed leaves only a bound.
    """
    out: dict[str, Any] = {"kind": "n/a", "value": None, "ci95_low": None, "ci95_high": None}
    out.update(n=0, seeds=[], method=EXPLAINED_METHOD)
    vp, era = ratios.get("variance_preserving"), ratios.get(PAPER_ERA_INIT)
    if vp is None or era is None:
        text = "Not measured: figure1.inits must list both variance_preserving and cuda_convnet."
        return {**out, "text": text}
    if interaction["value"] is None or vp["kind"] != "estimate":  # no distance to measure
        text = (
            f"Not determined: the interaction is {interaction['text']} (variance-preserving "
            f"ratio {vp['text']}, paper-era {era['text']})."
        )
        return {**out, "text": text}
    head = (
        f"Under the paper-era init tanh / ReLU is {era['text']}, under the variance-preserving "
        f"init {vp['text']}: the init multiplies the ratio by {interaction['text']}"
    )
    numbers, text = _share(head, interaction, vp, per_seed or {})
    return {**out, **numbers, "text": text}


def explained_text(
    ratios: dict[str, dict[str, Any]],
    interaction: dict[str, Any],
    per_seed: dict[str, PerSeedRatios] | None = None,
) -> str:
    """The sentence of :func:`explained_record`."""
    return str(explained_record(ratios, interaction, per_seed)["text"])


def data_regime(blocks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The data-regime criterion, reported (not a check of the protocol): at the first epoch
    below the target the ReLU arm's validation error is within ``GAP_MARGIN`` of its training
    error (median over final seeds), i.e. the target is reached while still generalising."""
    relu = {i: b["gap_at_target"]["relu"] for i, b in blocks.items()}
    known = {i: g for i, g in relu.items() if g is not None}
    ok = bool(known) and all(g <= GAP_MARGIN for g in known.values())
    gaps = ", ".join(f"{i} {100 * g:+.1f}" for i, g in known.items()) or "n/a"
    text = (
        f"ReLU validation minus training error at the first epoch below the target (median of "
        f"final seeds, points): {gaps}; the criterion (within {100 * GAP_MARGIN:g} points, i.e. "
        f"the target is reached while still generalising) is "
        + ("met." if ok else "not met: the target is reached partly by memorising this set.")
    )
    return {"margin": GAP_MARGIN, "relu_gap": relu, "met": ok, "text": text}


def _init_block(
    root: Path, s: Figure1Settings, init: str
) -> tuple[dict[str, Any], dict[str, list[Run]]]:
    """One init's chosen rates, sweep table, arms, ratio and checks, and its final runs."""
    sweep = sweep_results(root, s, init)
    choices = choose(sweep)
    finals = {
        act: [
            load_run(final_dir(root, init, act) / f"seed{seed}" / "metrics.json")
            for seed in s.final_seeds
        ]
        for act in ACTIVATIONS
    }
    used = {act: {r.lr for r in finals[act] if r.lr is not None} for act in ACTIVATIONS}
    arms = {}
    for act in ACTIVATIONS:
        values = [v for r in finals[act] if (v := r.ttt_epochs.value) is not None]
        arms[act] = {
            "lr": choices[act].lr,
            "reached": f"{len(values)}/{len(finals[act])}",
            "mean_epochs": statistics.fmean(values) if values else None,
            "geomean_epochs": statistics.geometric_mean(values) if values else None,
        }
    gaps = {}
    for act in ACTIVATIONS:
        values = [g for r in finals[act] if (g := generalisation_gap(r)) is not None]
        gaps[act] = statistics.median(values) if values else None
    block = {
        "rule": INIT_TEXT[init],
        "gap_at_target": gaps,
        "chosen": {act: c.to_dict() for act, c in choices.items()},
        "sweep": sweep_rows(sweep, choices),
        "arms": arms,
        "ratio": ratio_record(finals["relu"], finals["tanh"]),
        "checks": _checks(init, choices, used, finals),
    }
    return block, finals


def build_summary(root: Path, s: Figure1Settings) -> dict[str, Any]:
    """Everything the figure1 outputs and the study report show, from the run directories."""
    root = Path(root)
    blocks, finals = {}, {}
    for init in s.inits:
        blocks[init], finals[init] = _init_block(root, s, init)
    interaction = interaction_record(finals, s.inits)
    ratios = {init: b["ratio"] for init, b in blocks.items()}
    explained = explained_record(
        ratios, interaction, {init: per_seed_ratios(finals[init]) for init in s.inits}
    )
    every_final = [r for init in s.inits for act in ACTIVATIONS for r in finals[init][act]]
    summary = {
        "schema_version": SUMMARY_VERSION,
        "study": "figure1",
        "paper": {"ratio": PAPER_RATIO, "text": PAPER},
        "data": _data_used(every_final, s),
        "protocol": {
            **s.to_dict(),
            "network": "cuda-convnet layers-18pct without LRN (alexnet_bench.cifar_net)",
            "training_error": "running top-1 error over each epoch's training batches",
            "epochs_to_target": "linear interpolation between epoch-end points; censored runs "
            "keep their bound",
            "selection_rule": SELECTION_RULE,
        },
        "paper_era_init": PAPER_ERA_INIT if PAPER_ERA_INIT in s.inits else None,
        "inits": blocks,
        "final": [
            _final_run(r, init, act)
            for init in s.inits
            for act in ACTIVATIONS
            for r in finals[init][act]
        ],
        "interaction": interaction,
        "init_explains": explained["text"],
        "explained": explained,
        "data_regime": data_regime(blocks),
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
