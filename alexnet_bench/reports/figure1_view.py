"""The figure1 study in pictures and tables: a view of its ``results/figure1/summary.json``.

Used twice: ``alexnet-bench figure1 summarize`` writes the study's own outputs
(``reports/figure1/figure1.png|svg`` and ``summary.md``), and the study report adds a "Figure 1"
section and a paper-vs-measured row when that summary exists. The study itself (runs, selection,
the ratio, the summary and its schema) is :mod:`alexnet_bench.figure1`, which this view imports
and which never imports the report. Rendering is deterministic like the rest of the report
(fixed SVG hash salt, no dates, sorted inputs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator

from ..effects import Paired, resolution, t_test_p
from ..figure1.results import data_name
from ..figure1.results import load_summary as load_summary
from ..io import write_bytes, write_text
from ..numbers import fmt_number
from .figures import RC, figure_bytes, mark_target
from .paper_vs_measured import ClaimRow
from .tables import Table, to_csv

FIGURE = "figure1_cnn"
STYLE = {"relu": ("#1f4e9c", "-", "ReLU"), "tanh": ("#c0392b", "--", "tanh")}
INIT_NAME = {"variance_preserving": "variance-preserving init", "cuda_convnet": "paper-era init"}
INIT_MARKER = {"variance_preserving": ("o", "-"), "cuda_convnet": ("s", ":")}


@dataclass
class Rendered:
    """The figure as PNG and SVG bytes."""

    png: bytes
    svg: bytes


@dataclass
class Section:
    """Everything the report shows for the figure1 study."""

    intro: list[str]
    ratio: str
    checks: list[str]
    tables: list[Table]
    figure: Rendered
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _pct(x: float) -> float:
    return 100.0 * x


def init_name(init: str) -> str:
    return INIT_NAME.get(init, init)


def _inits(summary: dict[str, Any]) -> list[str]:
    return list(summary["inits"])


def _mean_curve(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Mean over runs of the epochs every run has (a stopped or diverged run ends the mean)."""
    n = min((len(c) for c in curves), default=0)
    return np.mean([c[:n] for c in curves], axis=0) if n else np.array([])


def _curves_axis(ax: Any, summary: dict[str, Any], init: str) -> None:
    target = _pct(summary["protocol"]["target_train_error"])
    chosen = summary["inits"][init]["chosen"]
    drawn = False
    for act, (color, style, name) in STYLE.items():
        runs = [
            r
            for r in summary["final"]
            if r["init"] == init and r["activation"] == act and r["train_error_per_epoch"]
        ]
        curves = [[_pct(e) for e in r["train_error_per_epoch"]] for r in runs]
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color=color, linestyle=style, lw=0.8, alpha=0.35)
        mean = _mean_curve(curves)
        if len(mean):
            drawn = True
            ax.plot(
                range(1, len(mean) + 1),
                mean,
                color=color,
                linestyle=style,
                lw=2.2,
                label=f"{name}, lr {chosen[act]['lr']:g} (mean of {len(curves)} seeds)",
            )
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no final run has a training history\n(see the final runs table)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    mark_target(ax, target, f"{target:g}% training error", ":")
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error (%), running over each epoch")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.set_title(
        f"{init_name(init)}: tanh / ReLU {summary['inits'][init]['ratio']['text']}", fontsize=9
    )
    if drawn:
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="grey", lw=0.8, alpha=0.5, label="single seeds"))
        ax.legend(handles=handles, frameon=False, fontsize=8, loc="lower left")


def _sweep_axis(ax: Any, summary: dict[str, Any]) -> None:
    caps = summary["protocol"]["epochs"]
    cap = max(caps.values())
    rows_all = [r for init in _inits(summary) for r in summary["inits"][init]["sweep"]]
    row = 0
    for init in _inits(summary):
        block = summary["inits"][init]
        marker, style = INIT_MARKER.get(init, ("o", "-"))
        for act, (color, _, name) in STYLE.items():
            top = cap * (1.06 + 0.05 * row)  # "not reached in its cap" markers, one row per curve
            row += 1
            rows = [r for r in block["sweep"] if r["activation"] == act]
            lrs = [r["lr"] for r in rows]
            med = [r["median_epochs"] if r["median_epochs"] is not None else np.nan for r in rows]
            ax.plot(
                lrs,
                med,
                color=color,
                linestyle=style,
                marker=marker,
                ms=4,
                lw=1.4,
                label=f"{name}, {init_name(init)}",
            )
            never = [lr for lr, m in zip(lrs, med, strict=True) if not np.isfinite(m)]
            ax.plot(never, [top] * len(never), "^", mfc="white", color=color, ms=6)
            chosen = block["chosen"][act]
            if chosen.get("score") is not None:
                ax.plot(
                    [chosen["lr"]], [chosen["score"]], "o", mfc="none", mec="black", ms=11, mew=1.3
                )
    for c in sorted(set(caps.values())):
        ax.axhline(c, color="grey", lw=0.8, linestyle=":")
    ax.set_xscale("log")
    lrs = sorted({r["lr"] for r in rows_all})
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], rotation=60, ha="right", fontsize=6)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(0, cap * (1.15 + 0.05 * row))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("epochs to target (median over sweep seeds)")
    ax.set_title("Learning-rate sweeps", fontsize=9)
    ax.grid(True, alpha=0.3)
    extra = [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", ms=9, label="chosen"),
        Line2D(
            [],
            [],
            ls="",
            marker="^",
            mfc="white",
            mec="black",
            label="not reached (cap: " + ", ".join(f"{c}" for c in caps.values()) + " epochs)",
        ),
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, frameon=False, fontsize=7)


def render(summary: dict[str, Any]) -> Rendered:
    """One panel of curves per init (both activations at their chosen rates), then the sweeps."""
    inits = _inits(summary)
    with mpl.rc_context(RC):
        fig = Figure(figsize=(5.2 * len(inits) + 4.4, 4.6), layout="constrained")
        axes = fig.subplots(1, len(inits) + 1, width_ratios=[1.3] * len(inits) + [1])
        longest = max((len(r["train_error_per_epoch"]) for r in summary["final"]), default=1)
        for ax, init in zip(axes, inits, strict=False):
            _curves_axis(ax, summary, init)
            ax.set_xlim(0, longest + 1)  # one epoch scale for every init
        _sweep_axis(axes[-1], summary)
        fig.suptitle(
            f"Four-layer CNN: ReLU (solid) vs tanh (dashed), per initialisation — "
            f"{summary_data(summary)}",
            fontsize=10,
        )
        return Rendered(*figure_bytes(fig))


def summary_data(summary: dict[str, Any]) -> str:
    return data_name(summary.get("data") or {})


def sweep_table(summary: dict[str, Any]) -> Table:
    rows, classes = [], []
    for init in _inits(summary):
        for r in summary["inits"][init]["sweep"]:
            rows.append(
                [
                    init_name(init),
                    r["activation"],
                    f"{r['lr']:g}",
                    r["epochs_to_target"],
                    r["median_text"],
                    "✓ chosen" if r["chosen"] else "",
                ]
            )
            classes.append("baseline" if r["chosen"] else "")
    target = _pct(summary["protocol"]["target_train_error"])
    return Table(
        title="Learning-rate sweeps",
        columns=["Init", "Activation", "lr", f"Epochs to {target:g}% per seed", "Median", "Chosen"],
        rows=rows,
        numeric=[False, False, True, False, True, False],
        note=f"Selection, per init and activation: {summary['protocol']['selection_rule']}. "
        "'> N' = not reached in N epochs (runs stop at the target; the cap is per init: "
        + ", ".join(f"{init_name(i)} {c}" for i, c in summary["protocol"]["epochs"].items())
        + ").",
        row_classes=classes,
    )


def final_table(summary: dict[str, Any]) -> Table:
    rows = []
    for r in summary["final"]:
        rows.append(
            [
                init_name(r["init"]),
                r["activation"],
                str(r["seed"]),
                f"{r['lr']:g}" if r["lr"] is not None else "–",
                r["crossing_text"],
                str(r["crossing_first_epoch"] or "–"),
                fmt_number(_pct(x) if (x := r.get("val_error_at_target")) is not None else None, 1),
                str(r["crossing_epochs_trained"]),
                r["status"],
            ]
        )
    target = _pct(summary["protocol"]["target_train_error"])
    columns = [
        "Init",
        "Activation",
        "Seed",
        "lr",
        f"Epochs to {target:g}%",
        "First epoch below",
        "Val error then (%)",
        "Epochs trained",
        "Status",
    ]
    return Table(
        title="Final runs at the chosen learning rates",
        columns=columns,
        rows=rows,
        numeric=[False, False, True, True, True, True, True, True, False],
        note="Epochs to target interpolated linearly between epoch ends; '> N' = never reached. "
        "Val error then = validation error after the first epoch below the target: far above "
        "the training error means the target was reached partly by memorising a small set.",
    )


def ratio_table(summary: dict[str, Any]) -> Table:
    """Per init the tanh / ReLU ratio, then the interaction (ratio of ratios)."""
    rows = []
    for init in _inits(summary):
        b = summary["inits"][init]
        lrs = ", ".join(f"{a} {c['lr']:g}" for a, c in b["chosen"].items())
        rows.append([init_name(init), b["ratio"]["text"], lrs, b["rule"]])
    it, x = summary["interaction"], summary.get("explained")
    rows.append(
        [
            "interaction: paper-era / variance-preserving",
            it["text"],
            "–",
            "how many times the init multiplies the ratio",
        ]
    )
    return Table(
        title="tanh / ReLU epochs to the target, per initialisation",
        columns=["Init", "tanh / ReLU (95% CI)", "Chosen rates", "Rule"],
        rows=rows,
        numeric=[False, True, False, False],
        note=f"Per init: {summary['inits'][_inits(summary)[0]]['ratio']['method']}. "
        f"Interaction: {it['method']}. "
        + (f"Share of the gap to 6× the init explains: {x['method']}. " if x else "")
        + f"The paper: {summary['paper']['ratio']:g}×.",
    )


def _main_init(summary: dict[str, Any]) -> str:
    """The paper's own setting when it ran (the paper-era init), else the first init."""
    era = summary.get("paper_era_init")
    return era if era in summary["inits"] else _inits(summary)[0]


def ratio_text(summary: dict[str, Any]) -> str:
    parts = [f"{init_name(i)} {summary['inits'][i]['ratio']['text']}" for i in _inits(summary)]
    text = "tanh / ReLU epochs to target: " + "; ".join(parts)
    if summary["interaction"]["value"] is not None:
        text += f"; interaction {summary['interaction']['text']}"
    return f"{text}; the paper: {summary['paper']['ratio']:g}×"


def claim_row(summary: dict[str, Any]) -> ClaimRow:
    """The paper-vs-measured row of the figure1 study (claim ``relu_vs_tanh``): the ratio under
    the paper-era init (the paper's own setting), the variance-preserving one beside it."""
    main = _main_init(summary)
    r = summary["inits"][main]["ratio"]
    others = [i for i in _inits(summary) if i != main]
    measured = r["text"] + (f" ({init_name(main)})" if others else "")
    for other in others:
        measured += f"; {init_name(other)}: {summary['inits'][other]['ratio']['text']}"
    target = _pct(summary["protocol"]["target_train_error"])
    row = ClaimRow(
        claim_id="relu_vs_tanh",
        claim="ReLU reaches 25% training error about six times faster than tanh",
        reference="Sec. 3.1, Figure 1",
        paper_setting="CIFAR-10, 4-layer CNN, no regularisation",
        comparison=f"epochs to {target:g}% train error, tanh / ReLU: figure1 study (4-layer CNN, "
        f"lr tuned per activation, {init_name(main)})",
        compared="figure1 tanh / figure1 ReLU",
        metric="figure1_epochs_to_target",
        kind="ratio",
        paper_value="≈6× (epochs to 25% train error)",
        paper_effect=summary["paper"]["ratio"],
        measured=measured,
        measured_effect=r["value"],
        ci_low=r["ci95_low"],
        ci_high=r["ci95_high"],
        n_a=r["n"],
        n_b=r["n"],
        n_pairs=r["n"],
    )
    value = r["value"]
    tested = r["kind"] == "estimate" and value and r["sd"] is not None and r["n"] >= 2
    p_value = t_test_p(math.log(value), r["sd"], r["n"]) if tested else None
    ci = (r["ci95_low"], r["ci95_high"])
    seeds, censored = tuple(r["seeds"]), tuple(r["censored"])
    effect = Paired(True, r["kind"], r["n"], value, *ci, r["sd"], seeds, (), censored, p_value)
    row.effect = effect
    if r["kind"] == "estimate" and value is not None:
        row.same_direction = "yes" if value > 1 else "no"
        if effect.excludes_null is not None:
            row.ci_excludes_null = "yes" if effect.excludes_null else "no"
        res = resolution(effect)
        if res.null:
            row.resolves = res.text(True)
    elif r["kind"] == "lower bound" and value is not None and value >= 1:
        row.same_direction = "yes"
    elif r["kind"] == "upper bound" and value is not None and value <= 1:
        row.same_direction = "no"
    row.caveats.append(f"data: {summary_data(summary)}")
    if summary["data"].get("source") != "cifar10":
        row.caveats.append("not CIFAR-10 (the paper's data)")
    if target != 25:
        row.caveats.append(f"target here is {target:g}% training error (paper: 25%)")
    row.caveats.append("95% CI excludes 1 = the 95% t-interval of the paired log ratio excludes 0")
    if summary["interaction"]["value"] is not None:
        row.caveats.append(summary["init_explains"])
    row.caveats += [f"check failed: {c['check']}" for c in _checks(summary) if not c["ok"]]
    return row


def _checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for init in _inits(summary) for c in summary["inits"][init]["checks"]]


def _intro(summary: dict[str, Any]) -> list[str]:
    p = summary["protocol"]
    chosen = "; ".join(
        f"{init_name(i)}: " + ", ".join(f"{a} {c['lr']:g}" for a, c in b["chosen"].items())
        for i, b in summary["inits"].items()
    )
    grids = "; ".join(
        f"{init_name(i)} " + " / ".join(f"{len(v)} {a}" for a, v in g.items())
        for i, g in p["lr_grid"].items()
    )
    return [
        summary["init_explains"],
        "Data regime: " + summary["data_regime"]["text"],
        f"Data: {summary_data(summary)}"
        + (
            ""
            if summary["data"].get("source") == "cifar10"
            else " — not CIFAR-10, the paper's data"
        )
        + ".",
        f"Network: {p['network']}; no dropout, no weight decay, no augmentation, constant lr, "
        f"SGD momentum, batch {p['batch_size']}.",
        "Initialisations (a factor; each with its own sweep, selection and final seeds): "
        + "; ".join(f"{init_name(i)} = {t}" for i, t in p["init_rules"].items())
        + ".",
        f"Protocol: per init and activation a log-spaced lr grid ({grids} values) × seeds "
        f"{p['sweep_seeds']}; then fresh seeds {p['final_seeds']} at the chosen rates; every run "
        "stops after its first epoch below the target, at most "
        + ", ".join(f"{c} epochs ({init_name(i)})" for i, c in p["epochs"].items())
        + f". Chosen: {chosen}.",
        f"Training error = {p['training_error']}; epochs to target by {p['epochs_to_target']}.",
    ]


def section(summary: dict[str, Any]) -> Section:
    checks = [
        f"{'ok' if c['ok'] else 'FAILED'}: {c['check']}"
        + (f" — {c['detail']}" if c["detail"] else "")
        for c in _checks(summary)
    ]
    return Section(
        intro=_intro(summary),
        ratio=ratio_text(summary),
        checks=checks,
        tables=[ratio_table(summary), sweep_table(summary), final_table(summary)],
        figure=render(summary),
        records={"figure1_sweep": sweep_records(summary), "figure1_final": final_records(summary)},
    )


def sweep_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("activation", "lr", "epochs_to_target", "median_epochs", "chosen")
    return [
        {"init": init, **{k: r[k] for k in keys}}
        for init in _inits(summary)
        for r in summary["inits"][init]["sweep"]
    ]


def final_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    keys = (
        "init",
        "activation",
        "seed",
        "lr",
        "status",
        "crossing_kind",
        "crossing_epochs",
        "crossing_lower",
        "crossing_upper",
        "crossing_first_epoch",
        "val_error_at_target",
        "gap_at_target",
        "crossing_epochs_trained",
    )
    return [{k: r.get(k) for k in keys} for r in summary["final"]]


def markdown(summary: dict[str, Any], sec: Section, figure_link: str | None) -> str:
    """Markdown of the section (the figure1 target's summary.md and the report's summary.md)."""
    from .markdown import table_md

    out = [f"- {x}" for x in sec.intro] + ["", f"**{sec.ratio}**", ""]
    out += ["Checks (criteria fixed before looking at the ratio):", ""]
    out += [f"- {c}" for c in sec.checks] + [""]
    if figure_link:
        out += [f"![Figure 1 reproduction]({figure_link})", ""]
    for t in sec.tables:
        out.append(table_md(t))
    return "\n".join(out)


def write_outputs(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """The figure1 target's own report: ``figure1.png|svg`` and ``summary.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    sec = section(summary)
    written = []
    write_bytes(out_dir / "figure1.png", sec.figure.png)
    write_bytes(out_dir / "figure1.svg", sec.figure.svg)
    written += [out_dir / "figure1.png", out_dir / "figure1.svg"]
    text = "# Figure 1 reproduction: ReLU vs tanh, four-layer CNN\n\n" + markdown(
        summary, sec, "figure1.png"
    )
    write_text(out_dir / "summary.md", text.rstrip("\n") + "\n")
    written.append(out_dir / "summary.md")
    return written


def write_tables(sec: Section, tables_dir: Path) -> list[Path]:
    """``figure1_sweep.csv`` and ``figure1_final.csv`` for the study report's tables/."""
    paths = []
    for name, records in sec.records.items():
        write_text(tables_dir / f"{name}.csv", to_csv(records))
        paths.append(tables_dir / f"{name}.csv")
    return paths
