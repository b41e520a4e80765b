"""Figures (PNG + SVG), rendered deterministically with matplotlib's object API (no pyplot).

Determinism: a fixed ``svg.hashsalt``, no date/software metadata, no random bootstrap (seed
bands are min–max over seeds, ``errorbar=("pi", 100)``), sorted inputs. Re-rendering the same
results gives byte-identical files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..collect import Run, first_value
from ..io import write_bytes
from ..numbers import fmt_number
from . import forest
from .tables import AblationStats, Table, format_sig

DPI = 110
RC: dict[str, Any] = {
    "svg.hashsalt": "alexnet-bench-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": True,
}
PNG_META = {"Software": None}
SVG_META = {"Date": None, "Creator": None}
BASE_COLOR = "#555555"
BAND = ("pi", 100)  # min–max over seeds
FOREST = (
    "One row per ablation (vs the baseline) and per other pair of arms a claim compares, one "
    "panel per measure: the paired effect over seeds with its 95% interval (the tables' numbers; "
    "tables/forest.csv). Where the interval includes no effect it is a band, labelled with the "
    "largest effect it rules out; an arrow is a bound (seeds that never reached the target). "
    "Diamonds: the paper's value; crosses: what others found (turned around where the claim "
    "compares the baseline with the ablation). Δ > 0 and ratios > 1: the row's first arm (the "
    "ablation) is worse: higher error, slower."
)

#: every figure this module may write (stale ones from an earlier build are removed)
FIGURE_NAMES = (
    "forest",
    "learning_curves_epoch",
    "learning_curves_time",
    "figure1_relu_vs_tanh",
    "time_to_target",
    "throughput",
    "energy_per_image",
    "gpu_timeline",
    "scaling",
)


@dataclass
class FigureFile:
    name: str
    title: str
    caption: str
    png: bytes
    png_path: Path
    svg_path: Path


@dataclass
class FigureSet:
    figures: list[FigureFile]
    notes: list[str]  # why a figure was skipped
    scaling: Table | None
    lead: FigureFile | None = None  # the forest plot of every effect


def _label(ax: Any, x: float, y: float, text: str) -> None:
    """A bar label just right of ``x`` (offset in points, so it never sits on a seed dot)."""
    ax.annotate(text, (x, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)


def _bar(ax: Any, y: float, mean: float, seeds: Sequence[float], color: Any, text: str) -> float:
    """A bar (the mean) with its seeds as dots and a label right of both; returns its right end."""
    ax.barh(y, mean, color=color, alpha=0.85, height=0.6)
    if seeds:
        ax.plot(seeds, [y] * len(seeds), "o", color="black", markersize=3.5)
    right = max([mean, *seeds])
    _label(ax, right, y, text)
    return right


def _bar_axes(ax: Any, names: Sequence[str], xmax: float, room: float, unit_label: str) -> None:
    """Bars' axes: the first name on top, ``room`` × the longest bar for the labels."""
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, xmax * room if xmax > 0 else 1)
    ax.set_xlabel(unit_label)
    ax.grid(True, axis="x", alpha=0.3)
    ax.grid(False, axis="y")


def mark_target(ax: Any, y: float, label: str, linestyle: str) -> None:
    """A training-error target: a black horizontal line, labelled at the right edge."""
    ax.axhline(y, color="black", linestyle=linestyle, linewidth=0.9)
    ax.annotate(
        label,
        xy=(1, y),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=8,
    )


def palette(names: Sequence[str], baseline: str) -> dict[str, Any]:
    others = [n for n in names if n != baseline]
    colors = sns.color_palette("tab10" if len(others) <= 10 else "husl", max(len(others), 1))
    out: dict[str, Any] = {n: colors[i] for i, n in enumerate(others)}
    out[baseline] = BASE_COLOR
    return out


def figure_bytes(fig: Figure) -> tuple[bytes, bytes]:
    """The figure as PNG and SVG, deterministically (no dates, no software tag)."""
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, metadata=PNG_META, facecolor="white")
    fig.savefig(svg, format="svg", metadata=SVG_META, facecolor="white")
    return png.getvalue(), svg.getvalue()


def _save(fig: Figure, out_dir: Path, name: str, title: str, caption: str) -> FigureFile:
    png, svg = figure_bytes(fig)
    png_path, svg_path = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    write_bytes(png_path, png)
    write_bytes(svg_path, svg)
    return FigureFile(name, title, caption, png, png_path, svg_path)


def _history_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Long frame of per-epoch errors (percent) for the given runs."""
    frames = []
    for r in runs:
        h = r.history
        if h is None or not len(h):
            continue
        df = pd.DataFrame(
            {
                "epoch": h.epoch,
                "train_top1_error": h.train_top1_error * 100.0,
                "val_top1_error": h.val_top1_error * 100.0,
                "train_clean_top1_error": h.train_clean_top1_error * 100.0,
                "elapsed_s": h.elapsed_s,
            }
        )
        df["ablation"] = r.ablation
        df["seed"] = -1 if r.seed is None else r.seed
        df["status"] = r.status
        frames.append(df)
    if not frames:
        return pd.DataFrame(
            columns=[
                "epoch",
                "train_top1_error",
                "val_top1_error",
                "train_clean_top1_error",
                "elapsed_s",
                "ablation",
                "seed",
                "status",
            ]
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["ablation", "seed", "epoch"], kind="stable").reset_index(drop=True)


def _on_time_grid(df: pd.DataFrame, points: int = 40) -> pd.DataFrame:
    """Interpolate each run's errors onto a common wall-time grid per ablation."""
    out = []
    for ablation, g in df.groupby("ablation", sort=True):
        tmax = g["elapsed_s"].max()
        if not np.isfinite(tmax) or tmax <= 0:
            continue
        grid = np.linspace(0.0, float(tmax), points)
        for seed, run in g.groupby("seed", sort=True):
            run = run.dropna(subset=["elapsed_s"])
            if len(run) == 0:
                continue
            t = run["elapsed_s"].to_numpy(float)
            part = {"elapsed_s": grid, "ablation": ablation, "seed": seed}
            for col in ("train_top1_error", "val_top1_error"):
                y = run[col].to_numpy(float)
                ok = np.isfinite(y)
                vals = np.full(points, np.nan)
                if ok.sum() >= 1:
                    inside = (grid >= t[ok].min()) & (grid <= t[ok].max())
                    vals[inside] = np.interp(grid[inside], t[ok], y[ok])
                part[col] = vals
            out.append(pd.DataFrame(part))
    if not out:
        return df.iloc[0:0]
    return pd.concat(out, ignore_index=True)


def _curves(
    ax: Any, df: pd.DataFrame, x: str, color: Any, label: str | None = None, lw: float = 1.6
) -> None:
    for col, style in (("train_top1_error", "--"), ("val_top1_error", "-")):
        sub = df.dropna(subset=[col])
        if sub.empty:
            continue
        sns.lineplot(
            data=sub,
            x=x,
            y=col,
            ax=ax,
            color=color,
            linestyle=style,
            errorbar=BAND,
            estimator="mean",
            linewidth=lw,
            label=None,
            legend=False,
            err_kws={"alpha": 0.18, "linewidth": 0},
        )


def learning_curves(
    hist: pd.DataFrame,
    diverged: pd.DataFrame,
    order: Sequence[str],
    baseline: str,
    colors: dict[str, Any],
    by: str,
) -> Figure | None:
    """Small multiples: one panel per ablation, baseline in grey for reference."""
    if by == "time":
        hist = _on_time_grid(hist)
        x, xlabel = "elapsed_s", "training wall time (s)"
    else:
        x, xlabel = "epoch", "epoch"
    shown = set(hist["ablation"]) | (set(diverged["ablation"]) if not diverged.empty else set())
    names = [n for n in order if n in shown]
    if not names:
        return None
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.7 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    base = hist[hist["ablation"] == baseline]
    for ax, name in zip(axes, names, strict=False):
        if name != baseline and not base.empty:
            _curves(ax, base, x, BASE_COLOR, lw=1.0)
        _curves(ax, hist[hist["ablation"] == name], x, colors.get(name, "C0"))
        if by == "epoch" and not diverged.empty:
            for _, run in diverged[diverged["ablation"] == name].groupby("seed", sort=True):
                ax.plot(
                    run[x],
                    run["train_top1_error"],
                    linestyle=":",
                    color=colors.get(name, "C0"),
                    linewidth=1.0,
                )
                last = run.dropna(subset=["train_top1_error"]).tail(1)
                ax.plot(last[x], last["train_top1_error"], "x", color="#c0392b", markersize=7)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 error (%)")
        ax.grid(True, alpha=0.3)
    axes[0].autoscale(axis="y")
    axes[0].set_ylim(bottom=0)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color="black", linestyle="-", label="validation"),
        Line2D([], [], color="black", linestyle="--", label="training"),
        Line2D([], [], color=BASE_COLOR, linewidth=1.0, label=f"{baseline} (reference)"),
        Patch(color="black", alpha=0.18, label="min–max over seeds"),
    ]
    if by == "epoch" and not diverged.empty:
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle=":",
                marker="x",
                markeredgecolor="#c0392b",
                label="diverged or collapsed run (not averaged)",
            )
        )
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False)
    return fig


def relu_vs_tanh(
    hist: pd.DataFrame,
    stats: dict[str, AblationStats],
    baseline: str,
    tanh: str,
    target: float | None,
) -> Figure | None:
    """The paper's Figure 1 view: training error vs epoch, ReLU (baseline) vs tanh."""
    sub = hist[hist["ablation"].isin([baseline, tanh])]
    if sub.empty or tanh not in stats:
        return None
    # the error time to target reads: a clean pass over fixed training images when recorded
    clean = "train_clean_top1_error"
    column = clean if clean in sub and sub[clean].notna().any() else "train_top1_error"
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=[1.6, 1])
    for name, label in ((baseline, f"ReLU ({baseline})"), (tanh, f"tanh ({tanh})")):
        d = sub[sub["ablation"] == name].dropna(subset=[column])
        if d.empty:
            continue
        color = "#1f77b4" if name == baseline else "#d62728"  # the paper's Figure 1 colours
        sns.lineplot(
            data=d,
            x="epoch",
            y=column,
            ax=ax,
            color=color,
            linestyle="-" if name == baseline else "--",  # the paper: ReLU solid, tanh dashed
            errorbar=BAND,
            label=label,
            err_kws={"alpha": 0.2, "linewidth": 0},
        )
    if target is not None:
        mark_target(ax, target, f"target {fmt_number(target, 0)}%", "--")
    ax.set_xlabel("epoch")
    ax.set_ylabel(
        "training top-1 error (%), clean pass"
        if column == clean
        else "training top-1 error (%), running"
    )
    ax.set_title("Training error vs epoch (cf. paper Figure 1)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    pair = {baseline: "#1f77b4", tanh: "#d62728"}
    _ttt_bars(bx, [stats[n] for n in (baseline, tanh) if n in stats], "ttt_epoch", pair)
    bx.set_title("Epochs to target training error")
    return fig


def _ttt_bars(ax: Any, stats: Sequence[AblationStats], metric: str, colors: dict[str, Any]) -> None:
    """Horizontal bars of mean time-to-target with seed dots; censored runs hatched."""
    bound = "epochs_completed" if metric == "ttt_epoch" else "train_time_s"
    ys = np.arange(len(stats))
    xmax = 0.0
    for y, a in zip(ys, stats, strict=True):
        color = colors.get(a.name, "C0")
        s = a.summaries[metric]
        done = a.trained  # a collapsed or diverged run counts as not reaching the target
        if not done:
            ax.text(0, y, "  no trained runs", va="center", fontsize=8, color="#888888")
            continue
        if s.n:
            label = fmt_number(s.mean, 1) + (
                f"  ({s.n}/{len(done)} reached)" if s.n < len(done) else ""
            )
            xmax = max(xmax, _bar(ax, y, s.mean, s.values, color, label))
        else:
            b = a.summaries[bound]
            if b.n:
                ax.barh(y, b.mean, color="white", edgecolor=color, hatch="///", height=0.6)
                xmax = max(xmax, b.mean)
                _label(ax, b.mean, y, f"not reached in {fmt_number(b.mean, 0)}")
            else:
                ax.text(0, y, "  not reached", va="center", fontsize=8)
    unit = "epochs" if metric == "ttt_epoch" else "seconds"
    _bar_axes(ax, [a.name for a in stats], xmax, 1.4, unit)


def time_to_target(stats: Sequence[AblationStats], colors: dict[str, Any]) -> Figure | None:
    if not any(a.completed for a in stats):
        return None
    fig = Figure(figsize=(11, 0.45 * len(stats) + 1.6), layout="constrained")
    ax, bx = fig.subplots(1, 2, sharey=True)
    _ttt_bars(ax, stats, "ttt_epoch", colors)
    ax.set_title("Epochs to target training error")
    _ttt_bars(bx, stats, "ttt_seconds", colors)
    bx.set_title("Wall time to target training error")
    return fig


def _metric_bars(
    stats: Sequence[AblationStats], metric: str, xlabel: str, title: str, colors: dict[str, Any]
) -> Figure | None:
    rows = [a for a in stats if a.summaries[metric].n]
    if not rows:
        return None
    fig = Figure(figsize=(8, 0.42 * len(rows) + 1.4), layout="constrained")
    ax = fig.subplots()
    xmax = 0.0
    for y, a in enumerate(rows):
        s = a.summaries[metric]
        xmax = max(
            xmax, _bar(ax, y, s.mean, s.values, colors.get(a.name, "C0"), format_sig(s.mean))
        )
    _bar_axes(ax, [a.name for a in rows], xmax, 1.25, xlabel)
    ax.set_title(title)
    return fig


def gpu_timeline(runs: Sequence[Run], colors: dict[str, Any]) -> Figure | None:
    frames = []
    for r in runs:
        g = r.gpu
        if g is None or "t_s" not in g or not len(g):
            continue
        df = pd.DataFrame(
            {
                "t_s": g["t_s"],
                "util": g.get("util_gpu_pct", np.nan),
                "power": g.get("power_w", np.nan),
                "gpu": g.get("gpu", 0),
            }
        )
        df["ablation"] = r.ablation
        df["unit"] = f"{r.cell}/gpu" + df["gpu"].astype("Int64").astype(str)
        frames.append(df)
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    names = list(dict.fromkeys(r.ablation for r in runs if r.ablation in set(data["ablation"])))
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax, bx = fig.subplots(2, 1, sharex=True)
    for name in names:
        d = data[data["ablation"] == name]
        for unit, u in d.groupby("unit", sort=True):
            ax.plot(u["t_s"], u["util"], color=colors.get(name, "C0"), linewidth=0.8, alpha=0.8)
            bx.plot(u["t_s"], u["power"], color=colors.get(name, "C0"), linewidth=0.8, alpha=0.8)
            del unit
    ax.set_ylabel("GPU utilisation (%)")
    ax.set_ylim(0, 105)
    bx.set_ylabel("power (W)")
    bx.set_xlabel("time since run start (s)")
    for a in (ax, bx):
        a.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors.get(n, "C0"), label=n) for n in names]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    ax.set_title("GPU telemetry (one line per run and GPU)")
    return fig


def scaling(
    stats: Sequence[AblationStats], baseline: str, colors: dict[str, Any]
) -> tuple[Figure | None, Table | None]:
    """1 vs N device throughput: speedup = thr(N) / thr(baseline), efficiency = speedup / N."""
    base = next((a for a in stats if a.name == baseline), None)
    multi = [
        a
        for a in stats
        if a.name != baseline and a.summaries["world_size"].n and a.summaries["world_size"].mean > 1
    ]
    if base is None or not multi or not base.summaries["throughput"].n:
        return None, None
    b_thr = base.summaries["throughput"].mean
    devices = sorted(
        {str(r.record.device.type or "?") for a in [base, *multi] for r in a.completed}
    )
    on_cpu = "cpu" in devices
    rows, labels, values, seeds, texts = [], [], [], [], []
    labels.append(f"{baseline}\n1 device")
    values.append(b_thr)
    seeds.append(base.summaries["throughput"].values)
    texts.append("1.00×")
    for a in multi:
        thr = a.summaries["throughput"]
        ws = a.summaries["world_size"].mean
        mode = a.parallel_mode or "?"
        speed = thr.mean / b_thr if thr.n and b_thr else math.nan
        eff = speed / ws if math.isfinite(speed) else math.nan
        rows.append(
            [
                a.name,
                f"{round(ws)} ({mode})",
                format_sig(thr.mean),
                fmt_number(speed) + "×",
                fmt_number(100 * eff, 0) + "%",
            ]
        )
        labels.append(f"{a.name}\n{round(ws)} devices ({mode})")
        values.append(thr.mean if thr.n else 0.0)
        seeds.append(thr.values)
        texts.append(f"{fmt_number(speed)}× (eff. {fmt_number(100 * eff, 0)}%)")
    rows.insert(0, [baseline, "1", format_sig(b_thr), "1.00×", "100%"])
    fig = Figure(figsize=(8, 0.55 * len(labels) + 1.4), layout="constrained")
    ax = fig.subplots()
    names = [baseline, *[a.name for a in multi]]
    for y, (name, v, sv, t) in enumerate(zip(names, values, seeds, texts, strict=True)):
        _bar(ax, y, v, sv, colors.get(name, "C0"), t)
    _bar_axes(ax, labels, max(values), 1.45, "throughput (images/s, median over steps)")
    where = " — CPU RUNS: devices are CPU processes, not GPUs" if on_cpu else ""
    ax.set_title(f"Multi-device scaling{where}", color="#b03a2e" if on_cpu else "black")
    ax.grid(True, axis="x", alpha=0.3)
    table = Table(
        title="Multi-device scaling" + (" (CPU runs, not GPUs)" if on_cpu else ""),
        columns=["Ablation", "Devices (mode)", "Throughput (img/s)", "Speedup", "Efficiency"],
        rows=rows,
        numeric=[False, False, True, True, True],
        note=(
            "Speedup = throughput(ablation) / throughput(baseline); efficiency = speedup / "
            "number of devices."
            + (
                " These runs used the CPU: the 'devices' are CPU processes sharing the same "
                "cores, so this is not a statement about GPU scaling."
                if on_cpu
                else ""
            )
        ),
    )
    return fig, table


def render_all(
    runs: Sequence[Run],
    stats: Sequence[AblationStats],
    order: Sequence[str],
    baseline: str,
    out_dir: Path,
    tanh: str = "tanh",
    effects: Sequence[dict[str, Any]] = (),
) -> FigureSet:
    """Render every applicable figure into ``out_dir`` (``effects``: the forest plot's records,
    :func:`.forest.records`); skipped ones get a note."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[FigureFile] = []
    notes: list[str] = []
    colors = palette(list(order), baseline)
    by_name = {a.name: a for a in stats}
    completed = [r for r in runs if r.completed]
    hist = _history_frame(completed)
    # runs that did not learn (collapsed) or blew up (diverged): drawn, never averaged
    diverged = _history_frame([r for r in runs if r.status in ("diverged", "collapsed")])
    target = first_value(completed, "target_train_error")
    table: Table | None = None
    lead: FigureFile | None = None

    def add(fig: Figure | None, name: str, title: str, caption: str, skip_note: str) -> None:
        if fig is None:
            notes.append(skip_note)
            return
        figures.append(_save(fig, out_dir, name, title, caption))

    with mpl.rc_context(sns.axes_style("whitegrid")), mpl.rc_context(RC):
        fig = forest.draw(effects)
        if fig is not None:
            lead = _save(fig, out_dir, "forest", "Every paired effect on this page", FOREST)
        add(
            learning_curves(hist, diverged, order, baseline, colors, "epoch"),
            "learning_curves_epoch",
            "Learning curves vs epoch",
            "Top-1 error of each ablation (colour) against the baseline (grey): solid = "
            "validation, dashed = training. Line = mean over completed seeds, band = min–max "
            "over seeds. Diverged runs are drawn individually (dotted, ending in ×) and are not "
            "part of the mean.",
            "Learning curves skipped: no completed run has a history.csv.",
        )
        add(
            learning_curves(hist, diverged, order, baseline, colors, "time"),
            "learning_curves_time",
            "Learning curves vs training wall time",
            "As above, against cumulative training wall time; each run is interpolated onto a "
            "common time grid before averaging.",
            "Wall-time learning curves skipped: no elapsed_s in the histories.",
        )
        add(
            relu_vs_tanh(hist, by_name, baseline, tanh, target),
            "figure1_relu_vs_tanh",
            "ReLU vs tanh: the paper's Figure 1 view",
            "Training top-1 error vs epoch for the ReLU baseline and the tanh ablation with the "
            "target training error (dashed); right: epochs needed to reach it (bar = mean, dots = "
            "seeds, hatched = not reached within the epochs trained).",
            f"ReLU-vs-tanh figure skipped: no completed '{tanh}' run with a history.",
        )
        add(
            time_to_target(stats, colors),
            "time_to_target",
            "Time to target training error, all ablations",
            "Epochs (left) and wall-clock seconds (right) until the training top-1 error first "
            "reached the target. Bar = mean over seeds that reached it, dots = seeds; hatched "
            "bars = never reached (bar length = what was trained).",
            "Time-to-target figure skipped: no completed runs.",
        )
        add(
            _metric_bars(
                stats, "throughput", "images/s (median over steps)", "Training throughput", colors
            ),
            "throughput",
            "Training throughput",
            "Median training images per second of each run; bar = mean over completed seeds, "
            "dots = seeds.",
            "Throughput figure skipped: no run recorded throughput.",
        )
        add(
            _metric_bars(
                stats,
                "energy_per_image_j",
                "joules per training image",
                "GPU energy per image",
                colors,
            ),
            "energy_per_image",
            "GPU energy per training image",
            "GPU board energy (NVML counter) per training image; bar = mean, dots = seeds.",
            "Energy per image not shown: no GPU telemetry in these runs (CPU runs or NVML unavailable).",
        )
        add(
            gpu_timeline(completed, colors),
            "gpu_timeline",
            "GPU utilisation and power over time",
            "GPU utilisation and board power sampled during each run (from gpu.csv).",
            "GPU timelines not shown: no GPU telemetry (no run wrote a gpu.csv file).",
        )
        scale_fig, table = scaling(stats, baseline, colors)
        add(
            scale_fig,
            "scaling",
            "Multi-device scaling",
            "Throughput with 1 vs N devices; speedup = throughput(N) / throughput(baseline), "
            "efficiency = speedup / N.",
            "Scaling figure skipped: no completed multi-device run (or no baseline throughput).",
        )
    written = {f.name for f in figures} | ({lead.name} if lead else set())
    for name in FIGURE_NAMES:
        if name not in written:
            for ext in ("png", "svg"):
                (out_dir / f"{name}.{ext}").unlink(missing_ok=True)
    return FigureSet(figures, notes, table, lead)
