"""summary.md: the report's tables in Markdown, with links to the figure files."""

from __future__ import annotations

from .html import Page
from .paper_vs_measured import NULL_COLUMN
from .tables import Table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table, heading: str | None = "###") -> str:
    lines = []
    if heading and t.title:
        lines += [f"{heading} {t.title}", ""]
    if not t.rows:
        return "\n".join([*lines, "(none)", ""])
    numeric = t.numeric or [False] * len(t.columns)
    lines.append("| " + " | ".join(_cell(c) for c in t.columns) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    lines.append("")
    if t.note:
        lines += [f"_{t.note}_", ""]
    return "\n".join(lines)


def render(page: Page) -> str:
    from ..collect import ALL_STATUSES

    counts = ", ".join(f"{page.counts[s]} {s}" for s in ALL_STATUSES if page.counts.get(s))
    out = [f"# {page.title}", "", page.subtitle, "", f"Runs: {counts or 'none'}.", ""]
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
        out += [
            f"- [{f.title}](figures/{f.name}.png) ([SVG](figures/{f.name}.svg))" for f in x.figures
        ]
        out += ["", *[table_md(t) for t in x.tables]]
    out += ["## Accuracy vs baseline", "", table_md(page.accuracy, heading=None)]
    out += ["## Speed and resources", "", table_md(page.speed, heading=None)]
    if page.scaling is not None:
        out.append(table_md(page.scaling))
    out += ["## Figures", ""]
    for f in page.figures:
        out.append(f"- [{f.title}](figures/{f.name}.png) ([SVG](figures/{f.name}.svg))")
    out += [f"- {n}" for n in page.figure_notes]
    out.append("")
    out += ["## Collapsed, failed, skipped, diverged, missing and unparseable cells", ""]
    out.append(table_md(page.problems, heading=None))
    out += ["## All runs", "", table_md(page.runs, heading=None)]
    out += ["## Study configuration", "", "```yaml", page.study_yaml.rstrip("\n"), "```", ""]
    out += ["## Environment", ""]
    out += [f"- {k}: `{v}`" for k, v in page.environment]
    out += [f"- {n}" for n in page.environment_notes]
    return "\n".join(out).rstrip("\n") + "\n"
