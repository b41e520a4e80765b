"""The self-contained HTML page from Jinja2 templates (``templates/``, autoescaped): inline CSS,
figures embedded as base64 PNG, no external assets. ``base.html.j2`` (layout and CSS) and
``macros.html.j2`` (tables, figures) are shared with the comparison page (``versus/``)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import jinja2

from ..collect import ALL_STATUSES
from ..numbers import MISSING
from .figures import FigureFile
from .paper_vs_measured import NULL_COLUMN
from .tables import Table

BADGE_COLUMNS = {"Status", "Same direction?", NULL_COLUMN}
BADGES = {"yes", "no", "n/a", *ALL_STATUSES}
#: the status cards always shown (others only when non-zero)
CARDS = ("completed", "collapsed", "diverged", "failed", "missing")


@dataclass
class Extra:
    """An optional study section (e.g. the figure1 study), shown after "Paper vs measured"."""

    id: str
    nav: str
    title: str
    lead: str  # one line shown in bold (e.g. the measured ratio)
    notes: list[str]
    checks: list[str]
    figures: list[FigureFile]
    tables: list[Table]


@dataclass
class Page:
    title: str
    subtitle: str
    how_to_read: list[str]
    counts: dict[str, int]
    lead: FigureFile | None  # the forest plot of every effect: the first screen
    findings: Table
    claims: Table
    null_rule: str
    accuracy: Table
    speed: list[Table]
    figures: list[FigureFile]
    figure_notes: list[str]
    problems: Table
    runs: Table
    study_yaml: str
    environment: list[tuple[str, str]]
    environment_notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extras: list[Extra] = field(default_factory=list)


def environment(*packages: str) -> jinja2.Environment:
    """The templates of ``packages`` (e.g. ``alexnet_bench.versus``), then the report's own."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "alexnet_bench.reports")]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def cell(text: Any, numeric: bool = False, badge: str | None = None) -> dict[str, Any]:
    return {"text": str(text), "numeric": numeric, "badge": badge, "note": None}


def badge(column: str, text: str) -> str | None:
    return f"b-{text.replace('/', '')}" if column in BADGE_COLUMNS and text in BADGES else None


def table_view(t: Table) -> dict[str, Any]:
    """What ``macros.table`` draws: the columns not in ``t.aside``, and per row with aside text
    a numbered note under the table (its label: the row's first non-empty cell)."""
    numeric = t.numeric or [False] * len(t.columns)
    shown = [i for i, c in enumerate(t.columns) if c not in t.aside]
    rows, notes = [], []
    for i, row in enumerate(t.rows):
        cells = [cell(row[j], numeric[j], badge(t.columns[j], row[j])) for j in shown]
        parts = [(c, x) for c, x in zip(t.columns, row, strict=True) if c in t.aside]
        parts = [(c, x) for c, x in parts if x not in ("", MISSING)]
        if t.aside:
            cells.append(cell(""))
            if parts:
                label = next((x for x in row if x), "")
                notes.append({"label": label, "parts": parts})
                cells[-1]["note"] = len(notes)
        cls = t.row_classes[i] if i < len(t.row_classes) else ""
        rows.append({"class": cls, "cells": cells})
    columns = [t.columns[j] for j in shown] + (["Notes"] if t.aside else [])
    slug = "-".join(re.findall(r"[a-z0-9]+", t.title.lower())[:4]) or "table"
    view = {"id": slug, "title": t.title, "columns": columns, "rows": rows, "note": t.note}
    return {**view, "notes": notes}


def figure_view(f: FigureFile, files: bool = True) -> dict[str, Any]:
    data = base64.b64encode(f.png).decode("ascii")
    link = f"figures/{f.name}" if files else ""
    return {"name": f.name, "title": f.title, "caption": f.caption, "data": data, "files": link}


def render(page: Page) -> str:
    nav = [
        ("effects", "Effects"),
        ("how", "How to read this"),
        ("findings", "Findings"),
        ("claims", "Paper vs measured"),
        *[(x.id, x.nav) for x in page.extras],
        ("accuracy", "Accuracy"),
        ("speed", "Speed & resources"),
        ("figures", "Figures"),
        ("problems", "Problems"),
        ("runs", "All runs"),
        ("study", "Study config"),
        ("environment", "Environment"),
    ]
    extras = [
        {
            **vars(x),
            "figures": [figure_view(f) for f in x.figures],
            "tables": [table_view(t) for t in x.tables],
        }
        for x in page.extras
    ]
    context = {
        **vars(page),
        "nav": nav,
        "cards": [(s, n) for s in ALL_STATUSES if (n := page.counts.get(s, 0)) or s in CARDS],
        "lead": figure_view(page.lead) if page.lead is not None else None,
        "lead_note": "no paired effect was measured (no ablation has runs in both arms)",
        "null_column": NULL_COLUMN,
        "speed": [table_view(t) for t in page.speed],
        "figures": [figure_view(f) for f in page.figures],
        "extras": extras,
    }
    for name in ("findings", "claims", "accuracy", "problems", "runs"):
        context[name] = table_view(context[name])
    return environment().get_template("report.html.j2").render(context)
