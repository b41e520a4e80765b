"""Tables: one row per run, one row per ablation (vs baseline), paper vs measured.

Each table exists twice: as numeric records for the CSV files (errors in percent, deltas in
percentage points, blank = not available) and as a :class:`Table` of formatted strings that the
HTML and Markdown renderers share. Only completed runs enter any mean; the other statuses are
counted and shown.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .claims import ClaimRow
from .collect import ALL_STATUSES, Run, percent, run_value
from .stats import Difference, Summary, summarize, welch

#: per-run metrics aggregated for each ablation
AGG_METRICS = (
    "val_top1",
    "val_top5",
    "train_top1",
    "overfit_gap",
    "best_epoch",
    "ttt_epoch",
    "ttt_seconds",
    "epochs_completed",
    "train_time_s",
    "throughput",
    "step_ms",
    "mfu",
    "gpu_util",
    "gpu_power_w",
    "gpu_mem_peak_mib",
    "peak_rss_mib",
    "energy_per_image_j",
    "num_params",
    "world_size",
)


@dataclass
class Table:
    """A formatted table: string cells, a title, a note and per-column alignment."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)
    note: str = ""
    row_classes: list[str] = field(default_factory=list)
    css: str = ""


@dataclass
class AblationStats:
    name: str
    family: str
    description: str
    runs: list[Run]
    counts: dict[str, int]
    summaries: dict[str, Summary]
    delta_top1: Difference | None = None
    delta_top5: Difference | None = None
    ttt_ratio_epoch: float | None = None
    ttt_ratio_seconds: float | None = None

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.completed]

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def mean(self, metric: str) -> float | None:
        s = self.summaries.get(metric)
        return s.mean if s is not None and s.n else None

    def first(self, dotted: str) -> Any:
        for r in self.completed:
            value = r.get(dotted)
            if value is not None:
                return value
        return None


def status_summary(counts: dict[str, int]) -> str:
    """'2 completed, 1 diverged' (statuses in a fixed order, zeros left out)."""
    parts = [f"{counts[s]} {s}" for s in ALL_STATUSES if counts.get(s)]
    return ", ".join(parts) if parts else "no runs"


def _study_entry(study: dict[str, Any] | None, name: str) -> dict[str, Any]:
    if isinstance(study, dict) and isinstance(study.get("ablations"), dict):
        entry = study["ablations"].get(name)
        if isinstance(entry, dict):
            return entry
    return {}


def aggregate(
    runs: Sequence[Run], order: Sequence[str], study: dict[str, Any] | None, baseline: str
) -> list[AblationStats]:
    """Per-ablation statistics over completed runs, in ``order``."""
    out: list[AblationStats] = []
    for name in order:
        mine = [r for r in runs if r.ablation == name]
        counts = {s: sum(r.status == s for r in mine) for s in ALL_STATUSES}
        done = [r for r in mine if r.completed]
        summaries = {m: summarize(run_value(r, m) for r in done) for m in AGG_METRICS}
        entry = _study_entry(study, name)
        family = str(entry.get("family") or ("baseline" if name == baseline else ""))
        out.append(
            AblationStats(
                name, family, str(entry.get("description") or ""), mine, counts, summaries
            )
        )
    base = next((a for a in out if a.name == baseline), None)
    if base is not None:
        for a in out:
            a.delta_top1 = welch(a.summaries["val_top1"], base.summaries["val_top1"])
            a.delta_top5 = welch(a.summaries["val_top5"], base.summaries["val_top5"])
            for metric, attr in (
                ("ttt_epoch", "ttt_ratio_epoch"),
                ("ttt_seconds", "ttt_ratio_seconds"),
            ):
                num, den = a.mean(metric), base.mean(metric)
                if num is not None and den:
                    setattr(a, attr, num / den)
    return out


# ----------------------------------------------------------------------------- formatting


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def fnum(x: float | None, digits: int = 2, signed: bool = False) -> str:
    """Format a number for display; '–' when unavailable; U+2212 for minus."""
    if not _ok(x):
        return "–"
    assert x is not None
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "−")


def fint(x: float | None) -> str:
    return f"{round(x):,}" if _ok(x) else "–"  # type: ignore[arg-type]


def format_sig(x: float | None, sig: int = 3) -> str:
    """Significant-figure format for quantities spanning orders of magnitude."""
    if not _ok(x):
        return "–"
    assert x is not None
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{sig - 1}e}".replace("-", "−")
    digits = max(0, sig - 1 - math.floor(math.log10(abs(x)))) if x else 0
    return f"{x:,.{digits}f}".replace("-", "−")


def mean_sd(s: Summary, digits: int = 2) -> str:
    if not s.n:
        return "–"
    if s.n < 2:
        return fnum(s.mean, digits)
    return f"{fnum(s.mean, digits)} ± {fnum(s.std, digits)}"


def ci_text(s: Summary, digits: int = 2) -> str:
    if not s.n:
        return "–"
    if not s.has_ci:
        return "n/a (n=1)"
    return f"[{fnum(s.ci_low, digits)}, {fnum(s.ci_high, digits)}]"


def delta_text(d: Difference | None, is_baseline: bool) -> str:
    if is_baseline:
        return "(baseline)"
    if d is None or not _ok(d.diff):
        return "–"
    if d.has_ci:
        return f"{fnum(d.diff, 2, signed=True)} ± {fnum(d.ci_half, 2)}"
    return fnum(d.diff, 2, signed=True)


def ttt_text(a: AblationStats) -> str:
    s = a.summaries["ttt_epoch"]
    done = len(a.completed)
    if not done:
        return "–"
    if s.n == 0:
        ep = a.summaries["epochs_completed"]
        return f"not reached ({fint(ep.mean)} ep)" if ep.n else "not reached"
    text = fnum(s.mean, 1)
    if s.n < done:
        text += f" ({s.n}/{done} reached)"
    return text


# ----------------------------------------------------------------------------- records


def _rounded(x: float | None, digits: int = 10) -> float | None:
    """Round for CSV stability; None for unavailable values."""
    if not _ok(x):
        return None
    assert x is not None
    return float(f"{x:.{digits}g}")


def _run_notes(r: Run) -> list[str]:
    notes = r.get("notes")
    if isinstance(notes, list):
        return [str(n) for n in notes]
    return [str(notes)] if notes else []


def run_records(runs: Sequence[Run], families: dict[str, str]) -> list[dict[str, Any]]:
    """One flat record per run (including missing/unparseable cells)."""
    records = []
    for r in runs:
        v = lambda name, r=r: _rounded(run_value(r, name))  # noqa: E731
        records.append(
            {
                "preset": r.get("run.preset"),
                "ablation": r.ablation,
                "family": families.get(r.ablation, ""),
                "seed": r.seed,
                "status": r.status,
                "reason": r.reason,
                "path": str(r.path),
                "epochs_completed": v("epochs_completed"),
                "planned_epochs": v("planned_epochs"),
                "diverged_epoch": _rounded(r.num("diverged_epoch")),
                "final_train_loss": _rounded(r.num("final.train_loss")),
                "final_val_loss": _rounded(r.num("final.val_loss")),
                "train_top1_err_pct": v("train_top1"),
                "val_top1_err_pct": v("val_top1"),
                "val_top5_err_pct": v("val_top5"),
                "val_top1_err_10crop_pct": v("val_top1_10crop"),
                "overfit_gap_pts": v("overfit_gap"),
                "best_epoch": v("best_epoch"),
                "best_val_top1_err_pct": _rounded(percent(r.num("best.val_top1_error"))),
                "ttt_target_train_err_pct": v("target_train_error"),
                "ttt_epoch": v("ttt_epoch"),
                "ttt_seconds": v("ttt_seconds"),
                "total_time_s": _rounded(r.num("total_time_s")),
                "train_time_s": v("train_time_s"),
                "throughput_img_s": v("throughput"),
                "step_ms_median": v("step_ms"),
                "mfu": v("mfu"),
                "peak_flops_source": r.get("flops.peak_source"),
                "dead_relu_max_layer_pct": v("dead_relu_max"),
                "lrn_alpha_sum_over_k": run_value(r, "lrn_load"),
                "gpu_available": r.get("gpu.available"),
                "gpu_util_pct_mean": v("gpu_util"),
                "gpu_power_w_mean": v("gpu_power_w"),
                "gpu_mem_peak_mib": v("gpu_mem_peak_mib"),
                "energy_per_image_j": v("energy_per_image_j"),
                "host_cpu_util_pct": _rounded(r.num("host.cpu_util_pct")),
                "host_peak_rss_mib": v("peak_rss_mib"),
                "num_params": v("num_params"),
                "model_variant": r.get("model.variant") or r.get("config.model.variant"),
                "device_type": r.get("device.type"),
                "device_name": r.get("device.name"),
                "device_count": _rounded(r.num("device.count")),
                "parallel_mode": r.get("parallel.mode"),
                "world_size": _rounded(r.num("parallel.world_size")),
                "data_source": r.get("data.source") or r.get("config.data.source"),
                "image_size": _rounded(r.num("data.image_size") or r.num("config.data.image_size")),
                "num_train": _rounded(r.num("data.num_train")),
                "config_hash": r.get("config_hash"),
                "torch": r.get("environment.torch"),
                "git_commit": r.get("environment.git_commit"),
                "notes": "; ".join([*_run_notes(r), *r.notes]),
            }
        )
    return records


def ablation_records(stats: Sequence[AblationStats], baseline: str) -> list[dict[str, Any]]:
    records = []
    for a in stats:
        rec: dict[str, Any] = {
            "ablation": a.name,
            "family": a.family,
            "description": a.description,
            "runs": a.n_runs,
        }
        rec.update({s: a.counts.get(s, 0) for s in ALL_STATUSES})
        rec["status_summary"] = status_summary(a.counts)
        for metric, d in (("val_top1", a.delta_top1), ("val_top5", a.delta_top5)):
            s = a.summaries[metric]
            prefix = f"{metric}_err_pct"
            rec[f"{prefix}_n"] = s.n
            rec[f"{prefix}_mean"] = _rounded(s.mean)
            rec[f"{prefix}_std"] = _rounded(s.std)
            rec[f"{prefix}_ci95_half"] = _rounded(s.ci_half)
            rec[f"{prefix}_ci95_low"] = _rounded(s.ci_low)
            rec[f"{prefix}_ci95_high"] = _rounded(s.ci_high)
            rec[f"{metric}_delta_pts"] = _rounded(d.diff) if d is not None else None
            rec[f"{metric}_delta_ci95_half"] = _rounded(d.ci_half) if d is not None else None
        rec["train_top1_err_pct_mean"] = _rounded(a.summaries["train_top1"].mean)
        rec["overfit_gap_pts_mean"] = _rounded(a.summaries["overfit_gap"].mean)
        rec["best_epoch_mean"] = _rounded(a.summaries["best_epoch"].mean)
        rec["ttt_reached"] = a.summaries["ttt_epoch"].n
        rec["ttt_epoch_mean"] = _rounded(a.summaries["ttt_epoch"].mean)
        rec["ttt_seconds_mean"] = _rounded(a.summaries["ttt_seconds"].mean)
        rec["ttt_epoch_ratio_vs_baseline"] = _rounded(a.ttt_ratio_epoch)
        rec["ttt_seconds_ratio_vs_baseline"] = _rounded(a.ttt_ratio_seconds)
        rec["epochs_completed_mean"] = _rounded(a.summaries["epochs_completed"].mean)
        rec["train_time_s_mean"] = _rounded(a.summaries["train_time_s"].mean)
        rec["throughput_img_s_mean"] = _rounded(a.summaries["throughput"].mean)
        rec["throughput_img_s_std"] = _rounded(a.summaries["throughput"].std)
        rec["step_ms_mean"] = _rounded(a.summaries["step_ms"].mean)
        rec["mfu_mean"] = _rounded(a.summaries["mfu"].mean)
        rec["gpu_util_pct_mean"] = _rounded(a.summaries["gpu_util"].mean)
        rec["gpu_power_w_mean"] = _rounded(a.summaries["gpu_power_w"].mean)
        rec["gpu_mem_peak_mib_mean"] = _rounded(a.summaries["gpu_mem_peak_mib"].mean)
        rec["host_peak_rss_mib_mean"] = _rounded(a.summaries["peak_rss_mib"].mean)
        rec["energy_per_image_j_mean"] = _rounded(a.summaries["energy_per_image_j"].mean)
        rec["num_params"] = _rounded(a.summaries["num_params"].mean)
        rec["world_size"] = _rounded(a.summaries["world_size"].mean)
        rec["device_type"] = a.first("device.type")
        records.append(rec)
    return records


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Deterministic CSV text (LF line endings, blank for missing values)."""
    df = pd.DataFrame.from_records(list(records), columns=list(columns) if columns else None)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    return buf.getvalue()


# ----------------------------------------------------------------------------- display tables


def accuracy_table(stats: Sequence[AblationStats], baseline: str) -> Table:
    cols = [
        "Ablation",
        "What changes",
        "Runs",
        "Val top-1 err % (mean ± sd)",
        "Top-1 95% CI",
        "Δ top-1 vs baseline (pts)",
        "Val top-5 err % (mean ± sd)",
        "Top-5 95% CI",
        "Δ top-5 vs baseline (pts)",
        "Overfit gap (pts)",
        "Best epoch",
    ]
    rows = []
    for a in stats:
        s1, s5 = a.summaries["val_top1"], a.summaries["val_top5"]
        rows.append(
            [
                a.name,
                a.description or a.family,
                status_summary(a.counts),
                mean_sd(s1),
                ci_text(s1),
                delta_text(a.delta_top1, a.name == baseline),
                mean_sd(s5),
                ci_text(s5),
                delta_text(a.delta_top5, a.name == baseline),
                fnum(a.summaries["overfit_gap"].mean, 2),
                fnum(a.summaries["best_epoch"].mean, 1),
            ]
        )
    return Table(
        title="Accuracy per ablation (completed runs only)",
        columns=cols,
        rows=rows,
        numeric=[False, False, False, *([True] * 8)],
        note=(
            "Errors are final-epoch validation errors in percent. sd = sample standard deviation "
            "over seeds; 95% CI = t-interval of the mean (n/a for a single seed). Δ = ablation "
            "mean − baseline mean in percentage points, ± the half-width of Welch's 95% "
            "interval (shown only with ≥ 2 seeds on both sides); positive Δ = worse than "
            "baseline. Overfit gap = val − train top-1 error."
        ),
        row_classes=["baseline" if a.name == baseline else "" for a in stats],
    )


def speed_table(stats: Sequence[AblationStats], baseline: str) -> Table:
    target = next(
        (
            v
            for a in stats
            for r in a.completed
            if (v := run_value(r, "target_train_error")) is not None
        ),
        None,
    )
    tgt = f"{fnum(target, 0)}%" if target is not None else "target"
    cols = [
        "Ablation",
        "Runs",
        f"Epochs to {tgt} train err",
        "Time to target (s)",
        "TTT ratio vs baseline (epochs / s)",
        "Throughput (img/s)",
        "Step time (ms)",
        "MFU",
        "GPU util %",
        "Peak GPU mem (MiB)",
        "Peak RSS (MiB)",
        "Energy (J/img)",
        "Params",
        "Device",
    ]
    rows = []
    for a in stats:
        sm = a.summaries
        if a.name == baseline:
            ratio = "1.00 / 1.00" if sm["ttt_epoch"].n else "–"
        else:
            ratio = f"{fnum(a.ttt_ratio_epoch)} / {fnum(a.ttt_ratio_seconds)}"
            ratio = "–" if ratio == "– / –" else ratio
        device = a.first("device.type") or "–"
        ws = sm["world_size"].mean if sm["world_size"].n else None
        if ws is not None and ws > 1:
            mode = a.first("parallel.mode")
            device = f"{device} ×{round(ws)}" + (f" ({mode})" if mode else "")
        rows.append(
            [
                a.name,
                status_summary(a.counts),
                ttt_text(a),
                fnum(sm["ttt_seconds"].mean, 1),
                ratio,
                format_sig(sm["throughput"].mean),
                fnum(sm["step_ms"].mean, 1),
                fnum(sm["mfu"].mean, 3),
                fnum(sm["gpu_util"].mean, 0),
                fint(sm["gpu_mem_peak_mib"].mean),
                fint(sm["peak_rss_mib"].mean),
                format_sig(sm["energy_per_image_j"].mean),
                fint(sm["num_params"].mean),
                device,
            ]
        )
    return Table(
        title="Speed and resources per ablation (completed runs only, means over seeds)",
        columns=cols,
        rows=rows,
        numeric=[False, False, *([True] * 11), False],
        note=(
            "Time to target = first epoch (and training wall time) at which the training top-1 "
            f"error fell to {tgt}; the mean is over runs that reached it. TTT ratio = ablation "
            "mean / baseline mean (> 1 = slower). Throughput = median images/s over training; "
            "MFU = achieved / peak FLOP/s (GPU: spec-sheet peak; CPU: the host's matmul rate, "
            "measured once per study with nothing else running, peak_flops.json, for the job's "
            "thread count and processes). GPU columns are blank without GPU telemetry."
        ),
        row_classes=["baseline" if a.name == baseline else "" for a in stats],
    )


def claims_table(rows: Sequence[ClaimRow]) -> Table:
    cols = [
        "Paper claim",
        "Measured quantity",
        "Paper",
        "Measured (paired over seeds, 95% CI)",
        "Welch (unpaired)",
        "Same direction?",
        "Exceeds seed spread?",
        "Caveats",
    ]
    out, classes = [], []
    previous = None
    for r in rows:
        first = r.claim_id != previous
        previous = r.claim_id
        out.append(
            [
                f"{r.claim} ({r.reference})" if first else "",
                f"{r.comparison} [{r.compared}]",
                r.paper_value,
                r.measured,
                r.welch or "–",
                r.same_direction,
                r.exceeds_spread,
                "; ".join(r.caveats) or "–",
            ]
        )
        cls = "absent" if r.measured == "not in this study" else ""
        classes.append(" ".join(x for x in (cls, "" if first else "cont") if x))
    return Table(
        title="Paper vs measured",
        columns=cols,
        rows=out,
        numeric=[False] * len(cols),
        row_classes=classes,
        css="claims",
    )


def problems_table(runs: Sequence[Run]) -> Table:
    rows = []
    for r in runs:
        if r.completed and not r.notes:
            continue
        reason = r.reason or ""
        if r.notes:
            reason = "; ".join([*([reason] if reason else []), *r.notes])
        epochs = run_value(r, "epochs_completed")
        rows.append(
            [
                r.cell,
                r.status,
                fint(epochs) if epochs is not None else "–",
                reason or "–",
                str(r.path),
            ]
        )
    return Table(
        title="Runs that did not complete (not averaged in)",
        columns=["Cell", "Status", "Epochs done", "Reason", "Path"],
        rows=rows,
        numeric=[False, False, True, False, False],
        row_classes=[row[1] for row in rows],
    )


def runs_table(runs: Sequence[Run]) -> Table:
    rows = []
    for r in runs:
        v = lambda name, r=r: run_value(r, name)  # noqa: E731
        rows.append(
            [
                r.ablation,
                str(r.seed) if r.seed is not None else "–",
                r.status,
                fint(v("epochs_completed")) if v("epochs_completed") is not None else "–",
                fnum(v("train_top1")),
                fnum(v("val_top1")),
                fnum(v("val_top5")),
                fnum(v("ttt_epoch")),
                fnum(v("ttt_seconds"), 1),
                format_sig(v("throughput")),
                fnum(v("train_time_s"), 1),
                fnum(v("dead_relu_max"), 1),
                f"{v('lrn_load'):.1e}" if v("lrn_load") is not None else "–",
                str(r.get("config_hash") or "–"),
            ]
        )
    return Table(
        title="All runs",
        columns=[
            "Ablation",
            "Seed",
            "Status",
            "Epochs",
            "Train top-1 %",
            "Val top-1 %",
            "Val top-5 %",
            "Epochs to target",
            "Time to target (s)",
            "img/s",
            "Train time (s)",
            "Dead ReLUs % (worst layer)",
            "LRN α·Σa²/k",
            "Config hash",
        ],
        rows=rows,
        numeric=[False, True, False, *([True] * 10), False],
        row_classes=[r.status for r in runs],
    )
