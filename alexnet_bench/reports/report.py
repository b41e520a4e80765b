"""build_report(): collect results, aggregate, compare with the paper, write every output."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..claims import claim_arms, study_claims
from ..collect import (
    ALL_STATUSES,
    Run,
    ablation_order,
    collect,
    extra_runs,
    sort_runs,
)
from ..effects import t_crit
from ..io import write_bytes, write_text
from ..plan.actual import PLAN_FILE
from ..plan.actual import report_section as plan_section
from . import figure1_view, forest, tables
from . import html as html_mod
from . import markdown as md_mod
from . import paper_vs_measured as pvm
from .compare import Comparisons
from .figures import FigureFile, render_all
from .html import Extra
from .study_input import normalize_study
from .tables import Table

CAPTIONS = (
    "report",
    "forest",
    "learning_curves",
    "time_to_target",
    "throughput",
    "energy",
    "gpu_timeline",
    "scaling",
    "ablations_table",
    "paper_vs_measured",
    "runs_table",
    "figure1",
)


def captions_dir() -> Path:
    """Directory of the RST captions the workflow's ``report()`` outputs can reference."""
    return Path(str(resources.files("alexnet_bench.reports").joinpath("captions")))


def caption_path(name: str) -> Path:
    """Path of one caption file, e.g. ``caption_path("learning_curves")``."""
    if name not in CAPTIONS:
        raise KeyError(f"no caption {name!r}; choose one of: {', '.join(CAPTIONS)}")
    return captions_dir() / f"{name}.rst"


# Output file stem (figures/<stem>.png, tables/<stem>.csv) -> its caption file.
OUTPUT_CAPTIONS = {
    "forest": "forest",
    "learning_curves_epoch": "learning_curves",
    "learning_curves_time": "learning_curves",
    "figure1_relu_vs_tanh": "time_to_target",
    "time_to_target": "time_to_target",
    "throughput": "throughput",
    "energy_per_image": "energy",
    "gpu_timeline": "gpu_timeline",
    "scaling": "scaling",
    "runs": "runs_table",
    "ablations": "ablations_table",
    "paper_vs_measured": "paper_vs_measured",
    "figure1_cnn": "figure1",
    "figure1_sweep": "figure1",
    "figure1_final": "figure1",
}


def output_captions() -> dict[str, str]:
    """Caption text (RST) of every figure and table, keyed by file stem (Snakemake's report)."""
    return {stem: caption_path(name).read_text() for stem, name in OUTPUT_CAPTIONS.items()}


def _baseline(study: dict[str, Any] | None) -> str:
    if isinstance(study, dict) and study.get("baseline"):
        return str(study["baseline"])
    return "baseline"


def _environment(runs: Sequence[Run]) -> tuple[list[tuple[str, str]], list[str]]:
    done = [r for r in runs if r.completed]
    if not done:
        return [("(none)", "no completed run to take the environment from")], []
    r = done[0]
    env, rec = r.record.environment, r.record

    gpus = env.cuda_gpus or env.nvml_gpus or rec.gpu.devices
    gpu_names = [g.get("name") if isinstance(g, dict) else g for g in gpus]
    dev = rec.device.name or rec.device.type or "?"
    count = rec.device.count
    commit = env.git_commit or "–"
    if env.git_dirty is True:
        commit = f"{commit} (with uncommitted changes)"
    cpus = env.logical_cpus
    rows = [
        ("taken from", r.cell),
        ("device", f"{dev}" + (f" ×{count}" if count and count != 1 else "")),
        ("GPU(s)", ", ".join(str(g) for g in gpu_names if g) or "none"),
        ("NVIDIA driver", env.driver_version or "–"),
        ("torch", env.torch or "–"),
        ("CUDA", env.torch_cuda or "–"),
        ("cuDNN", env.cudnn or "–"),
        ("CPU", f"{env.cpu_model or '–'}" + (f" ({cpus} logical CPUs)" if cpus else "")),
        ("python", env.python or "–"),
        ("git commit", commit),
        ("hostname", env.hostname or "–"),
        ("run timestamp", env.timestamp_utc or "–"),
    ]
    if rec.gpu.available is False and rec.gpu.reason:
        rows.append(("GPU telemetry", f"unavailable: {rec.gpu.reason}"))
    notes = []
    for label, value in (
        ("git commits", lambda x: x.record.environment.git_commit),
        ("hosts", lambda x: x.record.environment.hostname),
        ("torch versions", lambda x: x.record.environment.torch),
        ("device types", lambda x: x.record.device.name),
    ):
        values = sorted({str(v) for x in done if (v := value(x)) is not None})
        if len(values) > 1:
            notes.append(f"The completed runs span {len(values)} {label}: {', '.join(values)}.")
    return [(k, str(v)) for k, v in rows], notes


def _data_sentence(runs: Sequence[Run]) -> str:
    done = [r for r in runs if r.completed]
    if not done:
        return "No run completed, so there is nothing to average yet."
    r = done[0]
    src = r.data_source or "?"
    size = r.image_size or "?"
    n_train = r.record.data.num_train
    classes = r.record.data.num_classes
    epochs = r.record.config.train.epochs
    text = f"Data: {src}, {size} px inputs"
    if n_train:
        text += f", {n_train} training images"
    if classes:
        text += f", {classes} classes"
    if epochs:
        text += f"; {epochs} epochs per run"
    text += " (the paper: ImageNet, 1.2 M images, 224 px, 1000 classes, ~90 epochs)."
    if r.record.data.prepared_cache:
        fmt = r.record.data.prepared_format or "raw"
        how = (
            "uint8, the decoded pixels exactly"
            if fmt == "raw"
            else f"{fmt}: re-encoded JPEGs, pixels slightly changed"
        )
        text += f" Images were read from the prepared-data cache ({fmt}; {how})."
    ignored = max((r.record.data.ignored_files or 0 for r in done), default=0)
    if ignored:
        text += f" {ignored} file(s) of the image folder are not images by their extension and were ignored."
    return text


def _fairness_sentence(runs: Sequence[Run]) -> str:
    """How the arms were kept comparable (init rule and the LRN arm), from the runs' configs."""
    inits = sorted({str(i) for r in runs if (i := r.record.config.model.init)})
    lrn_modes = {str(r.record.config.model.lrn).lower() for r in runs}
    text = "Fair arms: "
    if inits == ["lsuv"]:
        text += (
            "every arm starts from the same He-normal draws rescaled by one rule, unit output "
            "variance per conv/hidden FC layer on a fixed batch of training images, so no "
            "ablation changes the signal scale as a side effect. "
        )
    elif inits:
        text += f"initialisation '{'/'.join(inits)}' in every arm. "
    if "gain" in lrn_modes:
        text += (
            "The LRN arm keeps LRN's constant small-signal gain k^−β (0.595) and removes only "
            "its normalisation; health.lrn_alpha_sum_over_k in metrics.json shows how much LRN "
            "normalised at all (≪ 1: it acted as that gain). "
        )
    return text + "See docs/reports.md, 'Fair ablations'."


def _how_to_read(study: dict[str, Any] | None, baseline: str, runs: Sequence[Run]) -> list[str]:
    seeds = study.get("seeds") if isinstance(study, dict) else None
    seed_txt = f" with seeds {', '.join(map(str, seeds))}" if seeds else ""
    t_txt = (
        f"With {len(seeds)} paired seeds t = {t_crit(len(seeds) - 1):.2f}: read intervals as "
        "'how sure are we', not as noise to ignore."
        if seeds and len(seeds) > 1
        else "A single seed gives no interval."
    )
    return [
        f"Each ablation changes one setting of the baseline ('{baseline}', the paper's "
        f"settings) and was trained{seed_txt}. Means and accuracy effects use completed runs "
        "only: collapsed, diverged, failed, skipped, missing and unparseable cells are counted "
        "in the 'Runs' column, listed under Problems, never averaged in, and every accuracy row "
        "says how many seeds of each arm it left out and why. Time to target counts every run "
        "that trained: a collapsed or diverged run never reached the target, so it enters as "
        "right-censored at its last (finite) epoch and the ratio becomes a bound ('>').",
        "Errors are top-1/top-5 validation errors in percent at the last epoch. Δ is the "
        "ablation mean minus the baseline mean in percentage points: positive Δ means the "
        "ablation is worse than the baseline.",
        "95% CI of a mean = Student-t interval over seeds. Every effect on this page (the forest "
        "plot, Findings, Paper vs measured, Accuracy, Speed, tables/*.csv) is the same paired "
        "statistic: each seed's ablation run is compared with the baseline run of the same "
        "seed (same data order, augmentation draws and, where shapes agree, initial weights), "
        "and the per-seed differences get a t-interval on n−1 degrees of freedom (ratios: "
        "geometric mean of per-seed ratios). Welch's unpaired interval appears only where "
        "labelled 'Welch'. "
        "Where an interval includes no effect, 'What the seeds resolve' gives the largest "
        "effect the interval excludes and the smallest one these seeds would detect (80% "
        "power at the spread they showed). " + t_txt,
        "Paper vs measured: 'Same direction?' asks whether the measured effect has the sign the "
        f"paper reports; '{pvm.NULL_COLUMN}' whether its paired 95% interval excludes no "
        "effect (rule stated above the table), one test at 95%. The Findings table makes many "
        "such tests; its 'Holds after Holm' column gives the family-wise verdict "
        "(Holm–Bonferroni over its m paired t-tests). Magnitudes are not expected to match "
        "when the data set or scale differs: see the Caveats column.",
        _fairness_sentence(runs),
        "PCA colour lighting adds p·(α·√λ) per image (α ~ N(0, σ)), where the paper writes "
        "α·λ: eigenvalues carry squared pixel units, so α·λ depends on the pixel scale, while "
        "√λ makes the shift's covariance σ² times the data's RGB covariance on any scale.",
        _data_sentence(runs),
    ]


def _warnings(
    runs: Sequence[Run],
    stats: Sequence[tables.AblationStats],
    baseline: str,
    extras: Sequence[Path] = (),
    preset: str | None = None,
) -> list[str]:
    out = []
    base = next((a for a in stats if a.name == baseline), None)
    if base is None:
        out.append(f"The baseline '{baseline}' has no runs: no deltas or ratios can be computed.")
    elif not base.completed:
        out.append(
            f"The baseline '{baseline}' has no completed run ({tables.status_summary(base.counts)}): "
            "no deltas or ratios can be computed."
        )
    for a in stats:
        collapsed = a.counts.get("collapsed", 0)
        if collapsed:
            total = sum(a.counts.values())
            out.append(
                f"{a.name}: {collapsed}/{total} seed(s) collapsed (stayed at chance: the network "
                f"did not learn). Its accuracy effects use the {a.counts.get('completed', 0)} "
                "run(s) that learned (the rows say which seeds were left out); in time to target "
                "the collapsed seeds count as never reaching it (a bound); the collapse rate is "
                "itself a finding (see Problems)."
            )
    skipped = [r for r in runs if r.completed and r.record.data.skipped_files]
    if skipped:
        most = max(skipped, key=lambda r: r.record.data.skipped_files or 0)
        examples = ", ".join(most.record.data.skipped_examples)
        out.append(
            f"{most.record.data.skipped_files} image file(s) could not be decoded and were "
            f"skipped (data.on_bad_image: skip) in {len(skipped)} run(s), e.g. {examples}: "
            "the runs trained on the remaining images."
        )
    bad = [r for r in runs if r.status in ("unparseable", "unknown")]
    if bad:
        out.append(
            f"{len(bad)} metrics.json file(s) could not be interpreted: "
            + ", ".join(str(r.path) for r in bad)
        )
    missing = [r for r in runs if r.status == "missing"]
    if missing:
        out.append(
            f"{len(missing)} expected cell(s) have no results: "
            + ", ".join(r.cell for r in missing)
        )
    presets = sorted({p for r in runs if (p := r.record.run.preset)})
    if preset is not None and presets and presets != [preset]:
        out.append(
            f"The study's preset is '{preset}' but the runs were labelled with preset "
            f"{', '.join(repr(p) for p in presets)}: check --results."
        )
    if extras:
        cells = [f"{p.parent.parent.name}/{p.parent.name}" for p in extras]
        shown = ", ".join(cells[:8]) + (f" and {len(cells) - 8} more" if len(cells) > 8 else "")
        out.append(
            f"{len(cells)} run director{'y' if len(cells) == 1 else 'ies'} under the results "
            f"directory {'is' if len(cells) == 1 else 'are'} not part of this study and "
            f"{'was' if len(cells) == 1 else 'were'} left out: {shown}"
        )
    return out


FIGURE1_TABLES = ("figure1_sweep", "figure1_final")


def _figure1_section(
    figure1_dir: Path | None, out_dir: Path
) -> tuple[html_mod.Extra | None, pvm.ClaimRow | None, str | None]:
    """The figure1 study's section, paper-vs-measured row and files, when its summary exists.

    Writes ``figures/figure1_cnn.png|svg`` and ``tables/figure1_{sweep,final}.csv``; removes
    stale ones when there is no summary. Returns (section, claim row, note when absent).
    """
    summary_path = Path(figure1_dir) / "summary.json" if figure1_dir is not None else None
    if summary_path is None or not summary_path.is_file():
        for path in [
            out_dir / "figures" / f"{figure1_view.FIGURE}.{ext}" for ext in ("png", "svg")
        ]:
            path.unlink(missing_ok=True)
        for name in FIGURE1_TABLES:
            (out_dir / "tables" / f"{name}.csv").unlink(missing_ok=True)
        note = (
            f"Figure 1 study (four-layer CNN, lr tuned per activation) not shown: no "
            f"{summary_path}; run `snakemake --cores all figure1`, then the report again."
            if summary_path is not None
            else None
        )
        return None, None, note
    summary = figure1_view.load_summary(summary_path)
    sec = figure1_view.section(summary)
    png = out_dir / "figures" / f"{figure1_view.FIGURE}.png"
    svg = png.with_suffix(".svg")
    write_bytes(png, sec.figure.png)
    write_bytes(svg, sec.figure.svg)
    figure1_view.write_tables(sec, out_dir / "tables")
    figure = FigureFile(
        figure1_view.FIGURE,
        "Figure 1 reproduced: four-layer CNN, ReLU vs tanh, lr tuned per activation",
        "One panel per initialisation (variance-preserving; the paper era's cuda-convnet "
        "constants): running training error vs epochs at each activation's chosen learning "
        "rate, ReLU solid, tanh dashed, faint = single seeds, bold = mean, dotted = the target "
        "(runs stop there). Right: the learning-rate sweeps (median epochs to the target; "
        "circle = chosen).",
        sec.figure.png,
        png,
        svg,
    )
    extra = html_mod.Extra(
        id="figure1",
        nav="Figure 1 study",
        title="Figure 1 study: four-layer CNN, ReLU vs tanh per initialisation, learning rate "
        "tuned per init and activation",
        lead=sec.ratio,
        notes=[*sec.intro, f"Source: {summary_path} (snakemake --cores all figure1)."],
        checks=sec.checks,
        figures=[figure],
        tables=sec.tables,
    )
    return extra, figure1_view.claim_row(summary), None


def _insert_claim(rows: list[pvm.ClaimRow], row: pvm.ClaimRow) -> None:
    """Put ``row`` after the last row of its claim (or first, when the claim has no rows)."""
    last = max((i for i, r in enumerate(rows) if r.claim_id == row.claim_id), default=-1)
    rows.insert(last + 1, row)


def build_report(
    results_dir: Path,
    out_dir: Path,
    study: dict[str, Any] | None = None,
    expected: list[Path] | None = None,
    snakemake_report_dir: Path | None = None,
    figure1_dir: Path | None = None,
) -> dict[str, Any]:
    """Write index.html, summary.md, tables/*.csv and figures/* into ``out_dir``.

    ``results_dir`` is one preset's results (``results/default``); ``expected`` lists the
    metrics.json paths the study expects (absent ones are reported as missing; default: every
    ablation x seed of ``study``). With ``snakemake_report_dir`` the RST captions are copied
    there too. With ``figure1_dir`` (``results/figure1``) holding a ``summary.json``, the page
    gets the figure1 study's section and paper-vs-measured row. Returns a small dict (paths
    written, counts) for logging.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    original_study = study
    study = normalize_study(study)
    baseline = _baseline(study)
    expected = [Path(p) for p in expected] if expected is not None else None
    runs = collect(results_dir, expected, study)
    extras = extra_runs(results_dir, expected, study)
    order = ablation_order(runs, study, baseline)
    runs = sort_runs(runs, order)
    comparisons = Comparisons(runs)  # every effect on the page, computed once
    stats = tables.aggregate(runs, order, study, baseline, comparisons)
    claims = study_claims(study)  # parsed and validated once
    claim_rows = pvm.evaluate(runs, study, baseline, claims, comparisons)
    families = {a.name: a.family for a in stats}
    figure1, figure1_row, figure1_note = _figure1_section(figure1_dir, out_dir)
    if figure1_row is not None:
        _insert_claim(claim_rows, figure1_row)

    tables_dir = out_dir / "tables"
    run_recs = tables.run_records(runs, families)
    written: list[Path] = []
    effects = forest.records(stats, claim_rows, baseline, comparisons)
    for name, records in (
        ("runs.csv", run_recs),
        ("ablations.csv", tables.ablation_records(stats, baseline)),
        ("paper_vs_measured.csv", [r.as_record() for r in claim_rows]),
        ("forest.csv", effects),
    ):
        write_text(tables_dir / name, tables.to_csv(records))
        written.append(tables_dir / name)
    if figure1 is not None:
        written += [tables_dir / f"{name}.csv" for name in FIGURE1_TABLES]

    # the ReLU-vs-tanh figure shows the arm the relu_vs_tanh claim compares with the baseline
    tanh_arms = claim_arms(claims, "relu_vs_tanh")
    tanh = next((a for a in tanh_arms if a in order), tanh_arms[0] if tanh_arms else "tanh")
    figs = render_all(runs, stats, order, baseline, out_dir / "figures", tanh, effects)
    counts = {s: sum(r.status == s for r in runs) for s in ALL_STATUSES}
    preset = (study or {}).get("preset") if isinstance(study, dict) else None
    preset = preset or next((p for r in runs if (p := r.record.run.preset)), None)
    preset = preset or results_dir.name
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    env, env_notes = _environment(runs)
    page = html_mod.Page(
        title=f"AlexNet ablation report — preset '{preset}'",
        subtitle=(
            f"{len(order)} ablations × {len(seeds)} seeds ({len(runs)} cells) from "
            f"{results_dir}; baseline '{baseline}'. Krizhevsky, Sutskever & Hinton (2012)."
        ),
        how_to_read=_how_to_read(study, baseline, runs),
        counts=counts,
        lead=figs.lead,
        findings=tables.findings_table(stats, claim_rows, baseline),
        claims=tables.claims_table(claim_rows),
        null_rule=pvm.NULL_RULE,
        accuracy=tables.accuracy_table(stats, baseline),
        speed=[
            tables.speed_table(stats, baseline),
            tables.resources_table(stats, baseline),
            *([figs.scaling] if figs.scaling is not None else []),
        ],
        figures=figs.figures,
        figure_notes=figs.notes + ([figure1_note] if figure1_note else []),
        problems=tables.problems_table(runs),
        runs=tables.runs_table(runs),
        study_yaml=(
            yaml.safe_dump(
                original_study, sort_keys=False, allow_unicode=True, default_flow_style=False
            )
            if original_study
            else "(no study configuration was given to the report)\n"
        ),
        environment=env,
        environment_notes=env_notes,
        warnings=_warnings(runs, stats, baseline, extras, study.get("preset") if study else None),
        extras=[x for x in (figure1, _plan_extra(out_dir / PLAN_FILE, results_dir)) if x],
    )
    write_text(out_dir / "summary.md", md_mod.render(page))
    write_text(out_dir / "index.html", html_mod.render(page))
    written += [out_dir / "summary.md", out_dir / "index.html"]
    shown = [*([figs.lead] if figs.lead else []), *figs.figures]
    shown += figure1.figures if figure1 is not None else []
    for f in shown:
        written += [f.png_path, f.svg_path]

    if snakemake_report_dir is not None:
        for name in CAPTIONS:
            dst = Path(snakemake_report_dir) / f"{name}.rst"
            write_text(dst, caption_path(name).read_text(encoding="utf-8"))
            written.append(dst)

    return {
        "index_html": str(out_dir / "index.html"),
        "summary_md": str(out_dir / "summary.md"),
        "tables": [str(p) for p in written if p.suffix == ".csv"],
        "figures": [str(f.png_path) for f in shown],
        "figures_skipped": list(figs.notes),
        "runs": len(runs),
        "left_out": [str(p) for p in extras],
        "counts": counts,
        "ablations": len(order),
        "claims": len(claim_rows),
        "figure1": figure1_row.measured if figure1_row is not None else None,
        "completed_per_ablation": {a.name: len(a.completed) for a in stats},
        "ttt_reached": {a.name: a.reached_target for a in stats},
    }


def _plan_extra(plan_path: Path, results_dir: Path) -> Extra | None:
    """The "Predicted vs actual time" section, when a plan of this study was made."""
    content = plan_section(plan_path, results_dir)
    if content is None:
        return None
    table = Table(
        title="Predicted vs actual time per cell",
        columns=content["columns"],
        rows=content["rows"],
        numeric=[False, False, True, True, True, False],
        note=content["note"],
    )
    return Extra(
        id="plan",
        nav="Plan vs actual",
        title="Predicted vs actual time (alexnet-bench plan)",
        lead=content["lead"],
        notes=content["notes"],
        checks=[],
        figures=[],
        tables=[table],
    )
