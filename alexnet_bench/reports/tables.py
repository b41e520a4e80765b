"""Tables: one row per run, one row per ablation (vs baseline), paper vs measured, findings.

Each table exists twice: as numeric records for the CSV files (errors in percent, deltas in
percentage points, blank = not available) and as a :class:`Table` of formatted strings that the
HTML and Markdown renderers share. Means and accuracy effects use completed runs only, and the
row says which seeds were left out and why; time to target also counts collapsed and diverged
runs, as never reaching the target (censored). Every effect vs the baseline is the paired
statistic of :class:`~.compare.Comparisons` (the same object the paper-vs-measured table shows),
formatted by :meth:`~..effects.Paired.text`; the findings table adds the Holm–Bonferroni verdict
over its family of tests (:func:`~..effects.holm`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..collect import ALL_STATUSES, TRAINED_STATUSES, Run, first_value, run_value
from ..effects import ALPHA, Paired, Summary, Welch, holm, resolution, summarize
from ..numbers import MISSING, as_float, fmt_number
from .compare import Comparisons, LeftOut, left_out_text
from .paper_vs_measured import NULL_COLUMN, ClaimRow

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
#: the means over every trained run (completed, collapsed, diverged) of those that reached it
TTT_METRICS = ("ttt_epoch", "ttt_seconds")


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
    #: columns of long text that the HTML page shows as notes under the table, not as columns
    aside: tuple[str, ...] = ()

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns, dtype=object)


@dataclass
class AblationStats:
    name: str
    family: str
    description: str
    runs: list[Run]
    counts: dict[str, int]
    summaries: dict[str, Summary]
    #: paired effects vs the baseline (val_top1, val_top5: a - b; ttt_epoch, ttt_seconds: a / b);
    #: empty for the baseline itself
    effects: dict[str, Paired] = field(default_factory=dict)
    #: Welch's unpaired val_top1 / val_top5 differences (secondary, labelled in the CSV)
    welch: dict[str, Welch] = field(default_factory=dict)
    #: per accuracy metric, the seeds the paired Δ leaves out of each arm (the baseline row: of
    #: its own mean) and why
    left_out: dict[str, tuple[LeftOut, ...]] = field(default_factory=dict)

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.completed]

    @property
    def trained(self) -> list[Run]:
        """The runs with a trained curve (completed, collapsed, diverged): time to target."""
        return [r for r in self.runs if r.status in TRAINED_STATUSES]

    @property
    def reached_target(self) -> int:
        """How many trained runs reached the target (:attr:`Run.reached_target`)."""
        return sum(r.reached_target for r in self.trained)

    def left_out_text(self, metric: str = "val_top1") -> str:
        """``2 of 5 tanh seeds left out: collapsed (seeds 1, 3)`` (every arm of the Δ), or
        ``none``; the top-5 Δ's own when it differs from the top-1 one."""
        text = left_out_text(self.left_out.get(metric, ()))
        if metric == "val_top1" and "val_top5" in self.left_out:
            top5 = left_out_text(self.left_out["val_top5"])
            if top5 != text:
                text += f" (top-5: {top5})"
        return text

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def mean(self, metric: str) -> float | None:
        s = self.summaries.get(metric)
        return s.mean if s is not None and s.n else None

    @property
    def device_type(self) -> str | None:
        return next((t for r in self.completed if (t := r.record.device.type)), None)

    @property
    def parallel_mode(self) -> str | None:
        return next((m for r in self.completed if (m := r.record.parallel.mode)), None)


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
    runs: Sequence[Run],
    order: Sequence[str],
    study: dict[str, Any] | None,
    baseline: str,
    comparisons: Comparisons | None = None,
) -> list[AblationStats]:
    """Per-ablation statistics over completed runs, in ``order``, with the paired effects vs
    the baseline from ``comparisons`` (the report passes the one the claims use)."""
    comparisons = comparisons or Comparisons(runs)
    out: list[AblationStats] = []
    for name in order:
        mine = [r for r in runs if r.ablation == name]
        counts = {s: sum(r.status == s for r in mine) for s in ALL_STATUSES}
        done = [r for r in mine if r.completed]
        trained = [r for r in mine if r.status in TRAINED_STATUSES]
        summaries = {
            m: summarize(run_value(r, m) for r in (trained if m in TTT_METRICS else done))
            for m in AGG_METRICS
        }
        entry = _study_entry(study, name)
        family = str(entry.get("family") or ("baseline" if name == baseline else ""))
        a = AblationStats(
            name, family, str(entry.get("description") or ""), mine, counts, summaries
        )
        if name != baseline and any(r.ablation == baseline for r in runs):
            a.effects = comparisons.vs_baseline(name, baseline)
            a.welch = {
                m: comparisons.welch(m, name, baseline, False) for m in ("val_top1", "val_top5")
            }
            a.left_out = {
                m: comparisons.left_out(m, name, baseline, False) for m in ("val_top1", "val_top5")
            }
        else:
            a.left_out = {
                m: (comparisons.left_out_of_arm(name, m),) for m in ("val_top1", "val_top5")
            }
        out.append(a)
    return out


# ----------------------------------------------------------------------------- formatting


def fint(x: float | None) -> str:
    f = as_float(x)
    return MISSING if f is None else f"{round(f):,}"


def format_sig(x: float | None, sig: int = 3) -> str:
    """Significant-figure format for quantities spanning orders of magnitude."""
    x = as_float(x)
    if x is None:
        return MISSING
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{sig - 1}e}".replace("-", "−")
    digits = max(0, sig - 1 - math.floor(math.log10(abs(x)))) if x else 0
    return f"{x:,.{digits}f}".replace("-", "−")


def mean_sd(s: Summary, digits: int = 2) -> str:
    if not s.n:
        return MISSING
    if s.n < 2:
        return fmt_number(s.mean, digits)
    return f"{fmt_number(s.mean, digits)} ± {fmt_number(s.std, digits)}"


def ci_text(s: Summary, digits: int = 2) -> str:
    if not s.n:
        return MISSING
    if not s.has_ci:
        return "n/a (n=1)"
    return f"[{fmt_number(s.ci_low, digits)}, {fmt_number(s.ci_high, digits)}]"


def effect_text(a: AblationStats, metric: str, baseline: str) -> str:
    """The paired effect vs the baseline as every table shows it (``Paired.text``)."""
    if a.name == baseline:
        return "(baseline)"
    p = a.effects.get(metric)
    return p.text() if p is not None and p.value is not None else MISSING


def ttt_text(a: AblationStats) -> str:
    """Mean epochs to the target over the runs that reached it at a known epoch, ``(k/n
    reached)`` out of every trained run (a collapsed or diverged run counts as not reaching
    it; one already below the target after its first epoch counts as reaching it, ``≤ 1``)."""
    s = a.summaries["ttt_epoch"]
    done = len(a.trained)
    if not done:
        return MISSING
    reached = a.reached_target
    if reached == 0:
        ep = a.summaries["epochs_completed"]
        return f"not reached ({fint(ep.mean)} ep)" if ep.n else "not reached"
    early = reached - s.n  # left-censored: below the target after the first epoch
    text = fmt_number(s.mean, 1) if s.n else "≤ 1"
    notes = [f"{reached}/{done} reached"] if reached < done else []
    if early and s.n:
        notes.append(f"{early} within the first epoch, not in the mean")
    return text + (f" ({'; '.join(notes)})" if notes else "")


# ----------------------------------------------------------------------------- records


def _rounded(x: float | None, digits: int = 10) -> float | None:
    """Round for CSV stability; None for unavailable values."""
    x = as_float(x)
    return None if x is None else float(f"{x:.{digits}g}")


def run_records(runs: Sequence[Run], families: dict[str, str]) -> list[dict[str, Any]]:
    """One flat record per run (including missing/unparseable cells)."""
    records = []
    for r in runs:
        v = lambda name, r=r: _rounded(run_value(r, name))  # noqa: E731
        rec = r.record
        records.append(
            {
                "preset": rec.run.preset,
                "ablation": r.ablation,
                "family": families.get(r.ablation, ""),
                "seed": r.seed,
                "status": r.status,
                "reason": r.reason,
                "path": str(r.path),
                "epochs_completed": v("epochs_completed"),
                "planned_epochs": v("planned_epochs"),
                "diverged_epoch": v("diverged_epoch"),
                "final_train_loss": v("final_train_loss"),
                "final_val_loss": v("final_val_loss"),
                "train_top1_err_pct": v("train_top1"),
                "val_top1_err_pct": v("val_top1"),
                "val_top5_err_pct": v("val_top5"),
                "val_top1_err_10crop_pct": v("val_top1_10crop"),
                "overfit_gap_pts": v("overfit_gap"),
                "best_epoch": v("best_epoch"),
                "best_val_top1_err_pct": v("best_val_top1"),
                "ttt_target_train_err_pct": v("target_train_error"),
                "ttt_epoch": v("ttt_epoch"),
                "ttt_epoch_censoring": _censoring(r.ttt_epochs.kind),
                "ttt_seconds": v("ttt_seconds"),
                "total_time_s": v("total_time_s"),
                "train_time_s": v("train_time_s"),
                "throughput_img_s": v("throughput"),
                "step_ms_median": v("step_ms"),
                "mfu": v("mfu"),
                "peak_flops_source": rec.flops.peak_source,
                "dead_relu_max_layer_pct": v("dead_relu_max"),
                "lrn_alpha_sum_over_k": run_value(r, "lrn_load"),
                "gpu_available": rec.gpu.available,
                "gpu_util_pct_mean": v("gpu_util"),
                "gpu_power_w_mean": v("gpu_power_w"),
                "gpu_mem_peak_mib": v("gpu_mem_peak_mib"),
                "energy_per_image_j": v("energy_per_image_j"),
                "host_cpu_util_pct": v("cpu_util_pct"),
                "host_peak_rss_mib": v("peak_rss_mib"),
                "num_params": v("num_params"),
                "model_variant": r.model_variant,
                "device_type": rec.device.type,
                "device_name": rec.device.name,
                "device_count": v("device_count"),
                "parallel_mode": rec.parallel.mode,
                "world_size": _rounded(rec.parallel.world_size),
                "data_source": r.data_source,
                "image_size": _rounded(r.image_size),
                "num_train": v("num_train"),
                "config_hash": rec.config_hash,
                "torch": rec.environment.torch,
                "git_commit": rec.environment.git_commit,
                "notes": "; ".join([*rec.notes, *r.notes]),
            }
        )
    return records


def _censoring(kind: str) -> str | None:
    return {"left-censored": "left", "right-censored": "right"}.get(kind)


def _effect_columns(prefix: str, p: Paired | None) -> dict[str, Any]:
    """CSV columns of one paired effect: the value (the bound when censored), its kind, the
    95% interval, the number of pairs and the paired t-test's two-sided p-value."""
    p = p if p is not None and p.value is not None else None
    return {
        prefix: _rounded(p.value) if p else None,
        f"{prefix}_kind": p.kind if p else None,
        f"{prefix}_ci95_low": _rounded(p.ci_low) if p else None,
        f"{prefix}_ci95_high": _rounded(p.ci_high) if p else None,
        f"{prefix}_n_pairs": p.n if p else None,
        f"{prefix}_p": _rounded(p.p_value) if p else None,
    }


def ablation_records(stats: Sequence[AblationStats], baseline: str) -> list[dict[str, Any]]:
    """The per-ablation aggregate; every ``*_delta_*`` and ``*_ratio_*`` column is the paired
    effect the tables show (``*_welch_*``: Welch's unpaired version, secondary)."""
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
        for metric in ("val_top1", "val_top5"):
            s = a.summaries[metric]
            prefix = f"{metric}_err_pct"
            rec[f"{prefix}_n"] = s.n
            rec[f"{prefix}_mean"] = _rounded(s.mean)
            rec[f"{prefix}_std"] = _rounded(s.std)
            rec[f"{prefix}_ci95_half"] = _rounded(s.ci_half)
            rec[f"{prefix}_ci95_low"] = _rounded(s.ci_low)
            rec[f"{prefix}_ci95_high"] = _rounded(s.ci_high)
            rec.update(_effect_columns(f"{metric}_delta_pts", a.effects.get(metric)))
            w = a.welch.get(metric)
            rec[f"{metric}_delta_welch_pts"] = _rounded(w.value) if w else None
            rec[f"{metric}_delta_welch_ci95_low"] = _rounded(w.ci_low) if w else None
            rec[f"{metric}_delta_welch_ci95_high"] = _rounded(w.ci_high) if w else None
            rec[f"{metric}_left_out"] = left_out_text(a.left_out.get(metric, ()))
        rec["train_top1_err_pct_mean"] = _rounded(a.summaries["train_top1"].mean)
        rec["overfit_gap_pts_mean"] = _rounded(a.summaries["overfit_gap"].mean)
        rec["best_epoch_mean"] = _rounded(a.summaries["best_epoch"].mean)
        rec["ttt_reached"] = a.reached_target
        rec["ttt_trained"] = len(a.trained)  # completed, collapsed and diverged runs
        rec["ttt_epoch_mean"] = _rounded(a.summaries["ttt_epoch"].mean)
        rec["ttt_seconds_mean"] = _rounded(a.summaries["ttt_seconds"].mean)
        rec.update(_effect_columns("ttt_epoch_ratio_vs_baseline", a.effects.get("ttt_epoch")))
        rec.update(_effect_columns("ttt_seconds_ratio_vs_baseline", a.effects.get("ttt_seconds")))
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
        rec["device_type"] = a.device_type
        records.append(rec)
    return records


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Deterministic CSV text (LF line endings, blank for missing values)."""
    df = pd.DataFrame.from_records(list(records), columns=list(columns) if columns else None)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    return buf.getvalue()


# ----------------------------------------------------------------------------- display tables


LEFT_OUT_COLUMN = "Seeds left out of Δ (why)"


def accuracy_table(stats: Sequence[AblationStats], baseline: str) -> Table:
    cols = [
        "Ablation",
        "What changes",
        "Runs",
        "Val top-1 err % (mean ± sd)",
        "Top-1 95% CI",
        "Δ top-1 vs baseline (paired, 95% CI)",
        "Val top-5 err % (mean ± sd)",
        "Top-5 95% CI",
        "Δ top-5 vs baseline (paired, 95% CI)",
        LEFT_OUT_COLUMN,
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
                effect_text(a, "val_top1", baseline),
                mean_sd(s5),
                ci_text(s5),
                effect_text(a, "val_top5", baseline),
                a.left_out_text(),
                fmt_number(a.summaries["overfit_gap"].mean, 2),
                fmt_number(a.summaries["best_epoch"].mean, 1),
            ]
        )
    return Table(
        title="Accuracy per ablation (completed runs only)",
        columns=cols,
        rows=rows,
        numeric=[False, False, False, *([True] * 6), False, True, True],
        note=(
            "Errors are final-epoch validation errors in percent. sd = sample standard deviation "
            "over seeds; 95% CI = t-interval of the mean (n/a for a single seed). Δ = mean over "
            "seeds of (ablation − baseline of the same seed) in percentage points, with its "
            "paired 95% t-interval (n = seeds with a learned run in both arms): the same number "
            "as in Paper vs measured. Positive Δ = worse than baseline. Only completed runs "
            f"enter; '{LEFT_OUT_COLUMN}' says, per arm, how many seeds the Δ leaves out and why "
            "(the run's status, or that its partner of the same seed in the other arm has no "
            "value; the baseline row: the seeds its own mean leaves out). A collapse rate is a "
            "finding of its own, not averaged away. Welch's unpaired version is in "
            "tables/ablations.csv (*_welch_* columns). Overfit gap = val − train top-1 error."
        ),
        row_classes=_baseline_classes(stats, baseline),
        aside=("What changes",),
    )


def _baseline_classes(stats: Sequence[AblationStats], baseline: str) -> list[str]:
    return ["baseline" if a.name == baseline else "" for a in stats]


def speed_table(stats: Sequence[AblationStats], baseline: str) -> Table:
    """Time to the target training error and its paired ratio vs the baseline."""
    target = first_value((r for a in stats for r in a.completed), "target_train_error")
    tgt = f"{fmt_number(target, 0)}%" if target is not None else "target"
    rows = [
        [
            a.name,
            status_summary(a.counts),
            ttt_text(a),
            fmt_number(a.summaries["ttt_seconds"].mean, 1),
            effect_text(a, "ttt_epoch", baseline),
            effect_text(a, "ttt_seconds", baseline),
        ]
        for a in stats
    ]
    return Table(
        title=(
            "Time to target per ablation (means over the runs that reached it; collapsed and "
            "diverged runs count as never reaching it)"
        ),
        columns=[
            "Ablation",
            "Runs",
            f"Epochs to {tgt} train err",
            "Time to target (s)",
            "TTT ratio vs baseline, epochs (paired)",
            "TTT ratio vs baseline, seconds (paired)",
        ],
        rows=rows,
        numeric=[False, False, True, True, True, True],
        note=(
            "Time to target = when the training top-1 error fell to "
            f"{tgt}, interpolated between epoch ends (epochs and training seconds); the mean is "
            "over runs that reached it, 'k/n reached' out of every trained run (completed, "
            "collapsed, diverged). TTT ratio = geometric mean over seeds of (ablation / "
            "baseline of the same seed) with its paired 95% interval (> 1 = slower): the same "
            "number as in Paper vs measured. A seed that never reached the target makes it a "
            "bound ('>'), and a run that never learned counts as such a seed: a collapsed run is "
            "right-censored at its last epoch, a diverged one at its last epoch with a finite "
            "loss (seconds: the training time up to then), so an arm that fails some seeds "
            "cannot look as fast as one that never fails."
        ),
        row_classes=_baseline_classes(stats, baseline),
    )


def resources_table(stats: Sequence[AblationStats], baseline: str) -> Table:
    """Throughput, utilisation, memory and energy: means over completed runs."""
    rows = []
    for a in stats:
        sm = a.summaries
        device = a.device_type or MISSING
        ws = sm["world_size"].mean if sm["world_size"].n else None
        if ws is not None and ws > 1:
            mode = a.parallel_mode
            device = f"{device} ×{round(ws)}" + (f" ({mode})" if mode else "")
        rows.append(
            [
                a.name,
                format_sig(sm["throughput"].mean),
                fmt_number(sm["step_ms"].mean, 1),
                fmt_number(sm["mfu"].mean, 3),
                fmt_number(sm["gpu_util"].mean, 0),
                fint(sm["gpu_mem_peak_mib"].mean),
                fint(sm["peak_rss_mib"].mean),
                format_sig(sm["energy_per_image_j"].mean),
                fint(sm["num_params"].mean),
                device,
            ]
        )
    return Table(
        title="Speed and resources per ablation (means over completed runs)",
        columns=[
            "Ablation",
            "Throughput (img/s)",
            "Step time (ms)",
            "MFU",
            "GPU util %",
            "Peak GPU mem (MiB)",
            "Peak RSS (MiB)",
            "Energy (J/img)",
            "Params",
            "Device",
        ],
        rows=rows,
        numeric=[False, *([True] * 8), False],
        note=(
            "Throughput = median images/s over training; MFU = achieved / peak FLOP/s (GPU: "
            "spec-sheet peak; CPU: the host's matmul rate, measured once per study with nothing "
            "else running, peak_flops.json, for the job's thread count and processes). GPU "
            "columns are blank without GPU telemetry."
        ),
        row_classes=_baseline_classes(stats, baseline),
    )


def claims_table(rows: Sequence[ClaimRow]) -> Table:
    cols = [
        "Paper claim",
        "Measured quantity",
        "Paper",
        "Others found",
        "Measured (paired over seeds, 95% CI)",
        "Welch (unpaired)",
        "Same direction?",
        NULL_COLUMN,
        "What the seeds resolve",
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
                "; ".join(o.shown() for o in r.others) or MISSING,
                r.measured,
                r.welch or MISSING,
                r.same_direction,
                r.ci_excludes_null,
                r.resolves or MISSING,
                "; ".join(r.caveats) or MISSING,
            ]
        )
        cls = "absent" if r.measured == "not in this study" else ""
        classes.append(" ".join(x for x in (cls, "" if first else "cont") if x))
    return Table(
        title="Paper vs measured",
        columns=cols,
        rows=out,
        numeric=[False] * len(cols),
        note=(
            "Others found: independent measurements of the same comparison, quoted with their "
            "source in tables/paper_vs_measured.csv (others_found) and "
            "alexnet_bench/paper_claims.yaml. What the seeds resolve (only where the "
            "interval includes no effect): |Δ| < X = the largest effect the paired 95% interval "
            "excludes; detectable = the smallest effect these seeds would detect with 80% power "
            "at the per-seed spread they showed (ratios: a factor either way)."
        ),
        row_classes=classes,
        aside=("Others found", "Welch (unpaired)", "Caveats"),
    )


TestKey = tuple[str, str, str, bool]  # (metric, a, b, ratio): one paired test


def _not_tested(p: Paired | None) -> str:
    """Why a shown effect has no p-value (so it is not in the Holm family)."""
    if p is None or p.value is None:
        return "no effect measured"
    if p.kind != "estimate":
        return "not tested: a bound (censored seeds)"
    return f"not tested: n={p.n}" if p.n < 2 else "not tested"


def findings_tests(
    stats: Sequence[AblationStats], rows: Sequence[ClaimRow], baseline: str
) -> dict[str, list[tuple[str, TestKey, Paired | None]]]:
    """Per ablation row of the findings table, the tests it shows: (label, key, effect), its
    Δ val top-1 first, then each other measured effect (a paper-vs-measured comparison of it)."""
    out: dict[str, list[tuple[str, TestKey, Paired | None]]] = {}
    for a in stats:
        if a.name == baseline:
            continue
        tests = [("Δ top-1", ("val_top1", a.name, baseline, False), a.effects.get("val_top1"))]
        for r in rows:
            if a.name not in (r.arm_a, r.arm_b) or r.effect is None:
                continue
            if r.metric == "val_top1" and {r.arm_a, r.arm_b} == {a.name, baseline}:
                continue  # the Δ itself
            assert r.arm_a is not None and r.arm_b is not None
            tests.append((r.comparison, (r.metric, r.arm_a, r.arm_b, r.kind == "ratio"), r.effect))
        out[a.name] = tests
    return out


def findings_table(
    stats: Sequence[AblationStats], rows: Sequence[ClaimRow], baseline: str
) -> Table:
    """One row per ablation, the README's summary: its paired Δ val top-1 (with what the seeds
    resolve when it is null), which seeds it leaves out, the Holm–Bonferroni verdict of every
    test in the row, the other effects the claims measure, the paper and others.

    The Holm family is every distinct paired test the table shows with a p-value: each row's
    Δ val top-1 and each of its other measured effects (one test counted once even when two
    rows show it); bounds and single pairs have no p-value and stay out of it.
    """
    tests = findings_tests(stats, rows, baseline)
    shown: dict[TestKey, Paired | None] = {}
    for row_tests in tests.values():
        for _, key, p in row_tests:
            shown.setdefault(key, p)
    verdicts = holm({k: (p.p_value if p is not None else None) for k, p in shown.items()})
    m = len(verdicts)
    raw = sum(bool(p is not None and p.excludes_null) for p in shown.values())
    holds = sum(v.holds for v in verdicts.values())
    out = []
    for a in stats:
        if a.name == baseline:
            continue
        p = a.effects.get("val_top1")
        delta = effect_text(a, "val_top1", baseline)
        res = resolution(p) if p is not None else None
        if res is not None and res.null:
            delta += f"; {res.text(False)}"
        labelled = len(tests[a.name]) > 1
        verdict = "; ".join(
            (f"{label}: " if labelled else "")
            + (verdicts[key].text() if key in verdicts else _not_tested(effect))
            for label, key, effect in tests[a.name]
        )
        mine = [r for r in rows if a.name in (r.arm_a, r.arm_b) and r.effect is not None]
        other = [
            f"{r.comparison}: {r.measured}" + (f"; {r.resolves}" if r.resolves else "")
            for r in mine
            if not (r.metric == "val_top1" and {r.arm_a, r.arm_b} == {a.name, baseline})
        ]
        claimed = [r for r in rows if a.name in (r.arm_a, r.arm_b)]
        paper = list(dict.fromkeys(f"{r.paper_value} ({r.comparison})" for r in claimed))
        others = list(dict.fromkeys(o.shown() for r in claimed for o in r.others))
        out.append(
            [
                a.name,
                delta,
                a.left_out_text(),
                verdict,
                "; ".join(other) or MISSING,
                "; ".join(paper) or MISSING,
                "; ".join(others) or MISSING,
            ]
        )
    return Table(
        title="Findings",
        columns=[
            "Ablation",
            "Δ val top-1 vs baseline (paired, 95% CI)",
            LEFT_OUT_COLUMN,
            f"Holds after Holm (m = {m})?",
            "Other measured effects",
            "The paper",
            "Others found",
        ],
        rows=out,
        numeric=[False] * 7,
        aside=("Other measured effects", "The paper", "Others found"),
        note=(
            "Every number here is the paired effect of the tables below (the same object). "
            "Δ > 0: the ablation is worse. Where the interval includes 0: |Δ| < X = the largest "
            "effect the data exclude at 95% confidence; detectable = the smallest effect these "
            f"seeds would detect (80% power). Many comparisons: this table shows {len(shown)} "
            f"paired effects, each with its own 95% interval; {raw} of them exclude no effect "
            "on their own. Family-wise: the family is every test the table shows with a "
            f"p-value (m = {m}: each row's Δ val top-1 and each of its other measured effects, "
            "a test shown in two rows counted once; bounds from censored seeds and single pairs "
            "have no p-value and are not in it). p = the two-sided paired t-test of no effect "
            "(differences: mean 0; ratios: mean log ratio 0) on n − 1 degrees of freedom, the "
            "same t as the interval, so p < 0.05 exactly when the 95% interval excludes no "
            "effect. Holm–Bonferroni at a family-wise error rate of "
            f"{ALPHA:g}: sorted p_(1) ≤ … ≤ p_(m), p_(j) holds while every p_(i ≤ j) ≤ "
            f"{ALPHA:g}/(m − i + 1); Holm-adjusted p ≤ {ALPHA:g} ⇔ holds. {holds} of {m} hold."
        ),
    )


def problems_table(runs: Sequence[Run]) -> Table:
    """One row per distinct (status, reason) of the runs that did not complete (or carry notes),
    listing its cells."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        if not r.completed or r.notes:
            reason = "; ".join([*([r.reason] if r.reason else []), *r.notes]) or MISSING
            groups.setdefault((r.status, reason), []).append(r)
    rows = []
    for (status, reason), members in groups.items():
        epochs = [run_value(r, "epochs_completed") for r in members]
        cells = [
            r.cell + (f" ({fint(e)} ep)" if e is not None else "")
            for r, e in zip(members, epochs, strict=True)
        ]
        rows.append(
            [
                status,
                reason,
                str(len(members)),
                ", ".join(cells),
                ", ".join(str(r.path) for r in members),
            ]
        )
    return Table(
        title="Runs that did not complete (not averaged in)",
        columns=["Status", "Reason", "Cells", "Which (epochs done)", "Paths"],
        rows=rows,
        numeric=[False, False, True, False, False],
        note="Cells with the same status and reason share a row.",
        row_classes=[row[0] for row in rows],
        aside=("Paths",),
    )


def runs_table(runs: Sequence[Run]) -> Table:
    rows = []
    for r in runs:
        v = lambda name, r=r: run_value(r, name)  # noqa: E731
        rows.append(
            [
                r.ablation,
                str(r.seed) if r.seed is not None else MISSING,
                r.status,
                fint(v("epochs_completed")),
                fmt_number(v("train_top1")),
                fmt_number(v("val_top1")),
                fmt_number(v("val_top5")),
                fmt_number(v("ttt_epoch")),
                fmt_number(v("ttt_seconds"), 1),
                format_sig(v("throughput")),
                fmt_number(v("train_time_s"), 1),
                fmt_number(v("dead_relu_max"), 1),
                f"{v('lrn_load'):.1e}" if v("lrn_load") is not None else MISSING,
                r.record.config_hash or MISSING,
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
