"""The figure1 study in pictures and tables: a view of its ``results/figure1/summary.json``.

Used twice: ``alexnet-bench figure1 summarize`` writes the study's own outputs
(``reports/figure1/figure1.png|svg`` and ``summary.md``), and the study report adds a "Figure 1"
section and a paper-vs-measured row when that summary exists. The study itself (runs, selection,
the ratio, the summary and its schema) is :mod:`alexnet_bench.figure1`, which this view imports
and which never imports the report. Rendering is deterministic like the rest of the report
(fixed SVG hash salt, no dates, sorted inputs).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator

from ..effects import Paired, resolution
from ..figure1.results import data_name
from ..figure1.results import load_summary as load_summary
from ..io import write_bytes, write_text
from .claims import ClaimRow
from .figures import DPI, PNG_META, RC, SVG_META
from .tables import Table, to_csv

FIGURE = "figure1_cnn"
STYLE = {"relu": ("#1f4e9c", "-", "ReLU"), "tanh": ("#c0392b", "--", "tanh")}


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


def _mean_curve(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Mean over runs of the epochs every run has (a stopped or diverged run ends the mean)."""
    n = min((len(c) for c in curves), default=0)
    return np.mean([c[:n] for c in curves], axis=0) if n else np.array([])


def _curves_axis(ax: Any, summary: dict[str, Any]) -> None:
    target = _pct(summary["protocol"]["target_train_error"])
    for act, (color, style, name) in STYLE.items():
        runs = [
            r for r in summary["final"] if r["activation"] == act and r["train_error_per_epoch"]
        ]
        curves = [[_pct(e) for e in r["train_error_per_epoch"]] for r in runs]
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color=color, linestyle=style, lw=0.8, alpha=0.35)
        mean = _mean_curve(curves)
        if len(mean):
            lr = summary["chosen"][act]["lr"]
            ax.plot(range(1, len(mean) + 1), mean, color=color, linestyle=style, lw=2.2,
                    label=f"{name}, lr {lr:g} (mean of {len(curves)} seeds)")  # fmt: skip
    ax.axhline(target, color="black", lw=0.9, linestyle=":")
    ax.annotate(f"{target:g}% training error", xy=(1, target), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", fontsize=8)  # fmt: skip
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error (%), running over each epoch")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="grey", lw=0.8, alpha=0.5, label="single seeds"))
    ax.legend(handles=handles, frameon=False, fontsize=8, loc="lower left")


def _sweep_axis(ax: Any, summary: dict[str, Any]) -> None:
    cap = summary["protocol"]["epochs"]
    for i, (act, (color, style, name)) in enumerate(STYLE.items()):
        top = cap * (1.08 + 0.06 * i)  # "not reached" markers, one row per activation
        rows = [r for r in summary["sweep"] if r["activation"] == act]
        lrs = [r["lr"] for r in rows]
        med = [r["median_epochs"] if r["median_epochs"] is not None else np.nan for r in rows]
        ax.plot(lrs, med, color=color, linestyle=style, marker="o", ms=4, lw=1.4, label=name)
        never = [lr for lr, m in zip(lrs, med, strict=True) if not np.isfinite(m)]
        ax.plot(never, [top] * len(never), "^", mfc="white", color=color, ms=6)
        chosen = summary["chosen"][act]
        if chosen.get("score") is not None:
            ax.plot([chosen["lr"]], [chosen["score"]], "o", mfc="none", mec="black", ms=11, mew=1.3)
    ax.axhline(cap, color="grey", lw=0.8, linestyle=":")
    ax.set_xscale("log")
    lrs = sorted({r["lr"] for r in summary["sweep"]})
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs], rotation=45, ha="right", fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(0, cap * 1.25)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("epochs to target (median over sweep seeds)")
    ax.set_title("Learning-rate sweep")
    ax.grid(True, alpha=0.3)
    extra = [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", ms=9, label="chosen"),
        Line2D([], [], ls="", marker="^", mfc="white", mec="black", label=f"not reached in {cap}"),
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, frameon=False, fontsize=8)


def render(summary: dict[str, Any]) -> Rendered:
    """Figure 1 view (left) and the learning-rate sweep (right)."""
    with mpl.rc_context(RC):
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax, bx = fig.subplots(1, 2, width_ratios=[1.5, 1])
        if any(r["train_error_per_epoch"] for r in summary.get("final", [])):
            _curves_axis(ax, summary)
        else:
            ax.text(0.5, 0.5, "no final run has a training history\n(see the final runs table)",
                    ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_title(
            f"Four-layer CNN: ReLU (solid) vs tanh (dashed)\n{summary_data(summary)}", fontsize=9
        )
        _sweep_axis(bx, summary)
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=DPI, metadata=PNG_META, facecolor="white")
        fig.savefig(svg, format="svg", metadata=SVG_META, facecolor="white")
    return Rendered(png.getvalue(), svg.getvalue())


def summary_data(summary: dict[str, Any]) -> str:
    return data_name(summary.get("data") or {})


def sweep_table(summary: dict[str, Any]) -> Table:
    rows = [
        [r["activation"], f"{r['lr']:g}", r["epochs_to_target"], r["median_text"],
         "✓ chosen" if r["chosen"] else ""]
        for r in summary["sweep"]
    ]  # fmt: skip
    target = _pct(summary["protocol"]["target_train_error"])
    return Table(
        title="Learning-rate sweep",
        columns=["Activation", "lr", f"Epochs to {target:g}% per seed", "Median", "Chosen"],
        rows=rows,
        numeric=[False, True, False, True, False],
        note=f"Selection: {summary['protocol']['selection_rule']}. '> N' = not reached in N "
        "epochs (sweep runs stop at the target).",
        row_classes=["baseline" if r["chosen"] else "" for r in summary["sweep"]],
    )


def final_table(summary: dict[str, Any]) -> Table:
    rows = []
    for r in summary["final"]:
        rows.append([
            r["activation"], str(r["seed"]), f"{r['lr']:g}" if r["lr"] is not None else "–",
            r["crossing_text"], str(r["crossing_first_epoch"] or "–"),
            _pct_text(r.get("val_error_at_target")), str(r["crossing_epochs_trained"]),
            r["status"],
        ])  # fmt: skip
    target = _pct(summary["protocol"]["target_train_error"])
    columns = ["Activation", "Seed", "lr", f"Epochs to {target:g}%", "First epoch below",
               "Val error then (%)", "Epochs trained", "Status"]  # fmt: skip
    return Table(
        title="Final runs at the chosen learning rates",
        columns=columns,
        rows=rows,
        numeric=[False, True, True, True, True, True, True, False],
        note="Epochs to target interpolated linearly between epoch ends; '> N' = never reached. "
        "Val error then = validation error after the first epoch below the target: far above "
        "the training error means the target was reached partly by memorising a small set.",
    )


def _pct_text(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def ratio_text(summary: dict[str, Any]) -> str:
    r = summary["ratio"]
    return f"tanh / ReLU epochs to target: {r['text']}; the paper: {summary['paper']['ratio']:g}×"


def claim_row(summary: dict[str, Any]) -> ClaimRow:
    """The paper-vs-measured row of the figure1 study (claim ``relu_vs_tanh``)."""
    r = summary["ratio"]
    target = _pct(summary["protocol"]["target_train_error"])
    row = ClaimRow(
        claim_id="relu_vs_tanh",
        claim="ReLU reaches 25% training error about six times faster than tanh",
        reference="Sec. 3.1, Figure 1",
        paper_setting="CIFAR-10, 4-layer CNN, no regularisation",
        comparison=f"epochs to {target:g}% train error, tanh / ReLU: figure1 study (4-layer CNN, "
        "lr tuned per activation)",
        compared="figure1 tanh / figure1 ReLU",
        metric="figure1_epochs_to_target",
        kind="ratio",
        paper_value="≈6× (epochs to 25% train error)",
        paper_effect=summary["paper"]["ratio"],
        measured=r["text"],
        measured_effect=r["value"],
        ci_low=r["ci95_low"],
        ci_high=r["ci95_high"],
        n_a=r["n"],
        n_b=r["n"],
        n_pairs=r["n"],
    )
    value = r["value"]
    effect = Paired(True, r["kind"], r["n"], value, r["ci95_low"], r["ci95_high"], r["sd"],
                    tuple(r["seeds"]), censored=tuple(r["censored"]))  # fmt: skip
    row.effect = effect
    if r["kind"] == "estimate" and value is not None:
        row.same_direction = "yes" if value > 1 else "no"
        if effect.excludes_null is not None:
            row.exceeds_spread = "yes" if effect.excludes_null else "no"
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
    row.caveats.append("spread = 95% t-interval of the paired log ratio excludes 1")
    row.caveats += [f"check failed: {c['check']}" for c in summary["checks"] if not c["ok"]]
    return row


def _intro(summary: dict[str, Any]) -> list[str]:
    p = summary["protocol"]
    lrs = ", ".join(f"{a} {c['lr']:g}" for a, c in summary["chosen"].items())
    return [
        f"Data: {summary_data(summary)}"
        + (
            ""
            if summary["data"].get("source") == "cifar10"
            else " — not CIFAR-10, the paper's data"
        )
        + ".",
        f"Network: {p['network']}; no dropout, no weight decay, no augmentation, constant lr, "
        f"SGD momentum, batch {p['batch_size']}.",
        f"Protocol: per activation a log-spaced lr grid ({len(p['lr_grid']['relu'])} / "
        f"{len(p['lr_grid']['tanh'])} values) × seeds {p['sweep_seeds']}, runs stop at the "
        f"target; then fresh seeds {p['final_seeds']} at the chosen rates for {p['epochs']} "
        f"epochs. Chosen: {lrs}.",
        f"Training error = {p['training_error']}; epochs to target by {p['epochs_to_target']}.",
        f"Ratio = {summary['ratio']['method']}.",
    ]


def section(summary: dict[str, Any]) -> Section:
    checks = [
        f"{'ok' if c['ok'] else 'FAILED'}: {c['check']}" + (f" — {c['detail']}" if c["detail"] else "")
        for c in summary["checks"]
    ]  # fmt: skip
    return Section(
        intro=_intro(summary),
        ratio=ratio_text(summary),
        checks=checks,
        tables=[sweep_table(summary), final_table(summary)],
        figure=render(summary),
        records={"figure1_sweep": sweep_records(summary), "figure1_final": final_records(summary)},
    )


def sweep_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: r[k] for k in ("activation", "lr", "epochs_to_target", "median_epochs", "chosen")}
        for r in summary["sweep"]
    ]


def final_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("activation", "seed", "lr", "status", "crossing_kind", "crossing_epochs",
            "crossing_lower", "crossing_upper", "crossing_first_epoch", "val_error_at_target",
            "crossing_epochs_trained")  # fmt: skip
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
