"""The comparison as a terminal table, Markdown (``compare.md``), a self-contained HTML page in
the study report's style (``index.html``, a Jinja2 template), JSON (``compare.json``) and the
curves figure (``curves.png``), every file written atomically."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..io import write_bytes, write_json, write_text
from ..reports.html import cell, environment
from ..reports.markdown import frame_md
from . import tables
from .comparison import Comparison
from .curves import learning_curves
from .speed import SpeedRatio, pct
from .tables import View, verdict_class

FIGURE = "curves.png"


def _views(c: Comparison) -> dict[str, View]:
    return {
        "summary": tables.summary(c),
        "speed": tables.speed(c),
        "cells": tables.cells(c),
        "settings": tables.settings(c),
        "environment": tables.environment(c),
    }


def _side(c: Comparison, role: str) -> str:
    side = c.base if role == "BASE" else c.new
    preset = f"preset {side.preset}, " if side.preset else ""
    what = "one cell" if side.single_cell else f"{len(side.runs)} cells"
    return f"{role} {side.path} ({preset}{what})"


def how_to_read(c: Comparison) -> list[str]:
    t = f"{pct(c.threshold)}"
    return [
        f"Cells are paired by (ablation, seed). Speed ratios are NEW/BASE; a change by more "
        f"than a factor 1 + {t} either way counts. faster/slower: the 95% interval excludes 1 "
        f"and the estimate is beyond ±{t}; unchanged: the whole interval is within ±{t}; "
        "insufficient data: no interval, or one that reaches beyond the threshold.",
        "Speed intervals are over seeds (per-run medians paired by cell, geometric mean of the "
        "ratios, t-interval), or, for a single pair, over the run's epochs from the second on "
        "(per-epoch throughput as batch means, paired by epoch). Single steps are never the "
        "unit: consecutive step times are autocorrelated.",
        "Numerics: bit-identical = every paired cell's loss and error curves equal to the last "
        f"bit; within noise = an equivalence test (TOST, 5%) on the paired differences of final "
        f"validation top-1 error puts their mean within {c.margin.how}; different = the 95% "
        "interval lies entirely beyond the margin.",
        "Settings: result-relevant keys are those the config hash covers (the workflow reruns a "
        "cell when one changes); provenance keys (data.root, ...) never change a result.",
        "Exit status 1 when an ablation (or all cells) is slower on a gated speed measure or "
        "numerically different; 0 otherwise; 2 on bad input.",
    ]


def terminal(c: Comparison, written: list[Path] | None = None, report_only: bool = False) -> str:
    """What the command prints (``report_only``: a regression does not set the exit status)."""
    lines = [f"compare: {_side(c, 'BASE')} vs {_side(c, 'NEW')}"]
    lines.append(f"threshold ±{pct(c.threshold)}; numerics margin {c.margin.how}")
    s = tables.summary(c).frame.drop(columns=["Numerics: why"])
    table = tabulate(s, headers="keys", tablefmt="simple", showindex=False, disable_numparse=True)
    lines += ["", table, ""]
    for d in c.settings:
        what = "setting" if d.result_relevant else "provenance setting (not result-relevant)"
        lines.append(f"{what} differs: {d.key}: {d.base} -> {d.new} ({d.cells} cells)")
    for e in (e for e in c.environment if e.differs):
        lines.append(f"environment differs: {e.label}: {e.base} -> {e.new}")
    lines += [f"insufficient data: {w}" for w in c.warnings]
    if c.regressions:
        status = "reported only, exit 0" if report_only else "exit 1"
        lines += ["", f"regression ({status}): {'; '.join(c.regressions)}"]
    else:
        lines += ["", "no regression beyond the threshold (exit 0)"]
    if written:
        lines.append("wrote " + ", ".join(str(p) for p in written))
    return "\n".join(lines)


def _md_table(v: View) -> str:
    return frame_md(v.frame, [col in v.numeric for col in v.frame.columns], v.note)


def markdown(c: Comparison, figure: bool) -> str:
    views = _views(c)
    out = [f"# {c.base.path} vs {c.new.path}", "", f"{_side(c, 'BASE')} vs {_side(c, 'NEW')}.", ""]
    if c.regressions:
        out += ["**Regression beyond the threshold (exit status 1):**", ""]
        out += [f"- {r}" for r in c.regressions] + [""]
    else:
        out += ["**No regression beyond the threshold (exit status 0).**", ""]
    if c.warnings:
        out += ["Cells without a verdict:", "", *[f"- {w}" for w in c.warnings], ""]
    out += ["## How to read this", "", *[f"- {x}" for x in how_to_read(c)], ""]
    for key in ("summary", "speed"):
        out += [f"## {views[key].title}", "", _md_table(views[key])]
    out += ["## Learning curves", ""]
    out += [f"![learning curves]({FIGURE})" if figure else "(no cell trained on both sides)", ""]
    for key in ("cells", "settings", "environment"):
        out += [f"## {views[key].title}", "", _md_table(views[key])]
    return "\n".join(out).rstrip("\n") + "\n"


def _html_view(v: View, id: str) -> dict[str, Any]:
    """A view as the report's table macro draws it."""
    rows = [
        {
            "class": "",
            "cells": [
                cell(
                    value,
                    col in v.numeric,
                    verdict_class(str(value)) if col in v.verdicts else None,
                )
                for col, value in zip(v.frame.columns, record, strict=True)
            ],
        }
        for record in v.frame.itertuples(index=False)
    ]
    columns = list(v.frame.columns)
    view = {"id": id, "title": v.title, "columns": columns, "rows": rows, "note": v.note}
    return {**view, "notes": []}


def html(c: Comparison, figure_png: bytes | None) -> str:
    nav = [
        ("verdicts", "Verdicts"),
        ("speed", "Speed"),
        ("curves", "Learning curves"),
        ("cells", "Cells"),
        ("settings", "Settings"),
        ("environment", "Environment"),
    ]
    ids = {"summary": "verdicts"}
    views = {k: _html_view(v, ids.get(k, k)) for k, v in _views(c).items()}
    return (
        environment("alexnet_bench.versus")
        .get_template("compare.html.j2")
        .render(
            title=f"{c.base.path} vs {c.new.path}",
            subtitle=f"{_side(c, 'BASE')} vs {_side(c, 'NEW')}; threshold ±{pct(c.threshold)}, "
            f"numerics margin {c.margin.how}",
            nav=nav,
            regressions=c.regressions,
            warnings=c.warnings,
            how_to_read=how_to_read(c),
            views=views,
            figure_name=FIGURE,
            figure=base64.b64encode(figure_png).decode("ascii") if figure_png else None,
            base=c.base.path,
            new=c.new.path,
        )
    )


def _speed_json(s: SpeedRatio) -> dict[str, Any]:
    return {
        "measure": s.metric.name,
        "base": s.base,
        "new": s.new,
        "ratio": s.ratio,
        "ci95": [s.ci_low, s.ci_high] if s.ci_low is not None else None,
        "over": s.over,
        "verdict": s.verdict,
        "reason": s.reason,
        "gates": s.metric.gates,
        "pairs": s.n,
    }


def to_json(c: Comparison) -> dict[str, Any]:
    """Every verdict and number of the comparison."""
    return {
        "base": str(c.base.path),
        "new": str(c.new.path),
        "threshold": c.threshold,
        "margin_pts": c.margin.points,
        "margin": c.margin.how,
        "exit_status": c.exit_status,
        "regressions": c.regressions,
        "warnings": c.warnings,
        "groups": [
            {
                "label": g.label,
                "pairs": g.seeds,
                "speed": [_speed_json(s) for s in g.speed],
                "numerics": {
                    "verdict": g.numerics.verdict,
                    "reason": g.numerics.reason,
                    "pairs": g.numerics.n,
                    "identical": g.numerics.identical,
                    "delta_val_top1_pts": g.numerics.delta,
                    "ci95": g.numerics.ci95,
                    "ci90": g.numerics.ci90,
                    "equivalent_within_pts": g.numerics.equivalent_within,
                },
            }
            for g in c.groups
        ],
        "cells": [
            {
                "cell": row.pair.key.label,
                "base_status": row.pair.base.status if row.pair.base else "missing",
                "new_status": row.pair.new.status if row.pair.new else "missing",
                "problem": row.pair.problem,
                "speed": [_speed_json(s) for s in row.speed],
                "numerics": None
                if row.numerics is None
                else {
                    "identical": row.numerics.identical,
                    "base_val_top1": row.numerics.base,
                    "new_val_top1": row.numerics.new,
                    "delta_pts": row.numerics.delta,
                },
            }
            for row in c.cells
        ],
        "settings": tables.settings(c).frame.to_dict(orient="records"),
        "environment": tables.environment(c).frame.to_dict(orient="records"),
    }


def write_outputs(c: Comparison, out: Path) -> list[Path]:
    """index.html, compare.md, compare.json and curves.png into ``out`` (atomically)."""
    out = Path(out)
    png = learning_curves(c)
    written = []
    if png is not None:
        write_bytes(out / FIGURE, png)
        written.append(out / FIGURE)
    else:  # no figure this time: none from an earlier comparison either
        (out / FIGURE).unlink(missing_ok=True)
    for name, text in (("compare.md", markdown(c, png is not None)), ("index.html", html(c, png))):
        write_text(out / name, text)
        written.append(out / name)
    write_json(out / "compare.json", to_json(c))
    written.append(out / "compare.json")
    return written
