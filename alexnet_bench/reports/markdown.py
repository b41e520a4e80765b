"""summary.md: the report's tables in Markdown (pandas ``to_markdown``), with links to the
figure files. Markdown has no page width: every column stays a column."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..collect import ALL_STATUSES
from .html import Page
from .paper_vs_measured import NULL_COLUMN
from .tables import Table


def frame_md(frame: pd.DataFrame, numeric: Sequence[bool] = (), note: str = "") -> str:
    """A pipe table (numeric columns right-aligned) and its note in italics; ``(none)`` when
    empty. Cells are text: ``|`` escaped, line breaks folded, numbers left as written."""
    if frame.empty:
        return "(none)\n"
    frame = frame.map(lambda x: str(x).replace("|", "\\|").replace("\n", " "))
    align = ["right" if n else "left" for n in (list(numeric) or [False] * frame.shape[1])]
    text = frame.to_markdown(index=False, colalign=align, disable_numparse=True)
    return text + (f"\n\n_{note}_\n" if note else "\n")


def table_md(t: Table, heading: str | None = "###") -> str:
    title = [f"{heading} {t.title}", ""] if heading and t.title else []
    return "\n".join([*title, frame_md(t.frame(), t.numeric, t.note)])


def _figures(figures: Sequence) -> list[str]:
    return [f"- [{f.title}](figures/{f.name}.png) ([SVG](figures/{f.name}.svg))" for f in figures]


def render(page: Page) -> str:
    counts = ", ".join(f"{page.counts[s]} {s}" for s in ALL_STATUSES if page.counts.get(s))
    out = [f"# {page.title}", "", page.subtitle, "", f"Runs: {counts or 'none'}.", ""]
    if page.lead is not None:
        out += [f"![{page.lead.title}](figures/{page.lead.name}.png)", "", page.lead.caption, ""]
    if page.warnings:
        out += ["**Attention:**", "", *[f"- {w}" for w in page.warnings], ""]
    out += ["## How to read this", "", *[f"- {x}" for x in page.how_to_read], ""]
    out += ["## Findings", "", table_md(page.findings, heading=None)]
    out += ["## Paper vs measured", "", f"Rule for “{NULL_COLUMN}”: {page.null_rule}", ""]
    out.append(table_md(page.claims, heading=None))
    for x in page.extras:
        out += [f"## {x.title}", "", f"**{x.lead}**", "", *[f"- {n}" for n in x.notes], ""]
        if x.checks:
            out += ["Checks (criteria fixed before the ratio):", "", *[f"- {c}" for c in x.checks]]
            out.append("")
        out += [*_figures(x.figures), "", *[table_md(t) for t in x.tables]]
    out += ["## Accuracy vs baseline", "", table_md(page.accuracy, heading=None)]
    out += ["## Speed and resources", "", *[table_md(t) for t in page.speed]]
    out += ["## Figures", "", *_figures(page.figures), *[f"- {n}" for n in page.figure_notes], ""]
    out += ["## Collapsed, failed, skipped, diverged, missing and unparseable cells", ""]
    out.append(table_md(page.problems, heading=None))
    out += ["## All runs", "", table_md(page.runs, heading=None)]
    out += ["## Study configuration", "", "```yaml", page.study_yaml.rstrip("\n"), "```", ""]
    out += ["## Environment", "", *[f"- {k}: `{v}`" for k, v in page.environment]]
    out += [f"- {n}" for n in page.environment_notes]
    return "\n".join(out).rstrip("\n") + "\n"
