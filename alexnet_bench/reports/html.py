"""The self-contained HTML page: inline CSS, figures embedded as base64 PNG, no external assets."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

from .figures import FigureFile
from .paper_vs_measured import NULL_COLUMN
from .tables import Table

CSS = """
:root { --fg:#1d2329; --muted:#5f6b76; --line:#dde3e8; --bg:#ffffff; --soft:#f5f7f9;
        --accent:#1f5f99; --ok:#1e7b47; --bad:#b03a2e; --warn:#a66a00; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--soft); }
main { max-width:1320px; margin:0 auto; padding:28px 32px 60px; background:var(--bg); }
h1 { font-size:28px; margin:0 0 4px; }
h2 { font-size:21px; margin:40px 0 10px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:26px 0 8px; }
p, li { max-width:95ch; }
.sub { color:var(--muted); margin:0 0 18px; }
nav { display:flex; flex-wrap:wrap; gap:6px 16px; padding:10px 14px; background:var(--soft);
      border:1px solid var(--line); border-radius:8px; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; }
nav a:hover { text-decoration:underline; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:18px 0; }
.card { min-width:118px; padding:10px 16px; border:1px solid var(--line); border-radius:8px;
        background:var(--bg); }
.card .n { font-size:26px; font-weight:700; line-height:1.1; }
.card .l { color:var(--muted); font-size:13px; }
.card.completed .n { color:var(--ok); }
.card.collapsed .n, .card.diverged .n, .card.failed .n, .card.unparseable .n, .card.unknown .n { color:var(--bad); }
.card.skipped .n, .card.missing .n { color:var(--warn); }
.box { background:#eef4fa; border-left:4px solid var(--accent); padding:10px 16px; margin:12px 0;
       border-radius:4px; }
.box.warn { background:#fff6e5; border-left-color:var(--warn); }
.box ul { margin:6px 0; padding-left:20px; }
.tablewrap { overflow-x:auto; margin:8px 0 4px; border:1px solid var(--line); border-radius:6px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:6px 9px; border-bottom:1px solid var(--line); vertical-align:top; text-align:left; }
th { background:#eef1f4; font-weight:600; position:sticky; top:0; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:nth-child(even) { background:#fafbfc; }
tr.baseline td { background:#eef4fa; font-weight:600; }
tr.absent td { color:var(--muted); }
tr.cont td { border-top:none; }
table.claims td:nth-child(1) { min-width:190px; }
table.claims td:nth-child(4) { min-width:220px; font-size:12px; }
table.claims td:nth-child(5) { min-width:140px; }
table.claims td:nth-child(10) { min-width:260px; font-size:12px; color:var(--muted); }
.note { color:var(--muted); font-size:13px; margin:4px 0 14px; }
.badge { display:inline-block; padding:0 7px; border-radius:10px; font-size:12px; font-weight:600;
         white-space:nowrap; }
.b-yes, .b-completed { background:#dff3e7; color:var(--ok); }
.b-no, .b-collapsed, .b-diverged, .b-failed, .b-unparseable, .b-unknown { background:#fbe3e0; color:var(--bad); }
.b-na, .b-skipped, .b-missing { background:#f1f1f1; color:var(--muted); }
figure { margin:18px 0 30px; padding:12px; border:1px solid var(--line); border-radius:8px; }
figure img { max-width:100%; height:auto; display:block; margin:0 auto; }
figcaption { color:var(--muted); font-size:13px; margin-top:8px; }
figcaption b { color:var(--fg); }
pre { background:#f6f8fa; border:1px solid var(--line); border-radius:6px; padding:12px;
      overflow-x:auto; font-size:12.5px; line-height:1.4; }
dl.env { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; font-size:14px; }
dl.env dt { color:var(--muted); }
dl.env dd { margin:0; font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:13px; }
details summary { cursor:pointer; color:var(--accent); margin:6px 0; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
"""

BADGE_COLUMNS = {"Status", "Same direction?", NULL_COLUMN}
BADGE_CLASS = {
    "yes": "b-yes",
    "no": "b-no",
    "n/a": "b-na",
    "completed": "b-completed",
    "collapsed": "b-collapsed",
    "diverged": "b-diverged",
    "failed": "b-failed",
    "skipped": "b-skipped",
    "missing": "b-missing",
    "unparseable": "b-unparseable",
    "unknown": "b-unknown",
}


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
    findings: Table
    claims: Table
    null_rule: str
    accuracy: Table
    speed: Table
    scaling: Table | None
    figures: list[FigureFile]
    figure_notes: list[str]
    problems: Table
    runs: Table
    study_yaml: str
    environment: list[tuple[str, str]]
    environment_notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extras: list[Extra] = field(default_factory=list)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(t: Table, with_title: bool = True, tag: str = "h3") -> str:
    parts = []
    if with_title and t.title:
        parts.append(f"<{tag}>{esc(t.title)}</{tag}>")
    if not t.rows:
        parts.append('<p class="note">(none)</p>')
        return "\n".join(parts)
    numeric = t.numeric or [False] * len(t.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        cls = t.row_classes[i] if i < len(t.row_classes) and t.row_classes[i] else ""
        cells = []
        for col, num, cell in zip(t.columns, numeric, row, strict=True):
            content = esc(cell)
            if col in BADGE_COLUMNS and cell in BADGE_CLASS:
                content = f'<span class="badge {BADGE_CLASS[cell]}">{content}</span>'
            cells.append(f'<td class="num">{content}</td>' if num else f"<td>{content}</td>")
        attr = f' class="{esc(cls)}"' if cls else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    table_attr = f' class="{esc(t.css)}"' if t.css else ""
    parts.append(
        f'<div class="tablewrap"><table{table_attr}><thead><tr>'
        + head
        + "</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )
    if t.note:
        parts.append(f'<p class="note">{esc(t.note)}</p>')
    return "\n".join(parts)


def figure_html(f: FigureFile) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (
        f'<figure id="fig-{esc(f.name)}">'
        f'<img src="data:image/png;base64,{data}" alt="{esc(f.title)}">'
        f"<figcaption><b>{esc(f.title)}.</b> {esc(f.caption)} "
        f'Files: <a href="figures/{esc(f.name)}.svg">SVG</a>, '
        f'<a href="figures/{esc(f.name)}.png">PNG</a>.</figcaption></figure>'
    )


def extra_html(x: Extra) -> str:
    notes = "".join(f"<li>{esc(n)}</li>" for n in x.notes)
    checks = "".join(f"<li>{esc(c)}</li>" for c in x.checks)
    parts = [f'<section id="{esc(x.id)}">', f"<h2>{esc(x.title)}</h2>"]
    parts.append(f"<p><b>{esc(x.lead)}</b></p>")
    parts.append(f'<div class="box"><ul>{notes}</ul></div>')
    if checks:
        parts.append(
            f'<p class="note">Checks (criteria fixed before the ratio):</p><ul>{checks}</ul>'
        )
    parts += [figure_html(f) for f in x.figures]
    parts += [table_html(t) for t in x.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render(page: Page) -> str:
    from ..collect import ALL_STATUSES

    cards = "".join(
        f'<div class="card {s}"><div class="n">{page.counts.get(s, 0)}</div>'
        f'<div class="l">{esc(s)}</div></div>'
        for s in ALL_STATUSES
        if page.counts.get(s, 0) or s in ("completed", "collapsed", "diverged", "failed", "missing")
    )
    how = "".join(f"<li>{esc(x)}</li>" for x in page.how_to_read)
    warnings = ""
    if page.warnings:
        warnings = (
            '<div class="box warn"><b>Attention</b><ul>'
            + "".join(f"<li>{esc(w)}</li>" for w in page.warnings)
            + "</ul></div>"
        )
    figure_notes = ""
    if page.figure_notes:
        figure_notes = (
            '<div class="box"><b>Figures not shown</b><ul>'
            + "".join(f"<li>{esc(n)}</li>" for n in page.figure_notes)
            + "</ul></div>"
        )
    figs = "\n".join(figure_html(f) for f in page.figures)
    env = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in page.environment)
    env_notes = "".join(f'<p class="note">{esc(n)}</p>' for n in page.environment_notes)
    scaling = table_html(page.scaling) if page.scaling is not None else ""
    nav_items = [
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
    nav = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in nav_items)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(page.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{esc(page.title)}</h1>
<p class="sub">{esc(page.subtitle)}</p>
<nav>{nav}</nav>
<div class="cards">{cards}</div>
{warnings}
<section id="how">
<h2>How to read this</h2>
<div class="box"><ul>{how}</ul></div>
</section>
<section id="findings">
<h2>Findings</h2>
{table_html(page.findings, with_title=False)}
</section>
<section id="claims">
<h2>Paper vs measured</h2>
<p class="note"><b>Rule for “{esc(NULL_COLUMN)}”:</b> {esc(page.null_rule)}</p>
{table_html(page.claims, with_title=False)}
</section>
{"".join(extra_html(x) for x in page.extras)}
<section id="accuracy">
<h2>Accuracy vs baseline</h2>
{table_html(page.accuracy, with_title=False)}
</section>
<section id="speed">
<h2>Speed and resources</h2>
{table_html(page.speed, with_title=False)}
{scaling}
</section>
<section id="figures">
<h2>Figures</h2>
{figure_notes}
{figs}
</section>
<section id="problems">
<h2>Collapsed, failed, skipped, diverged, missing and unparseable cells</h2>
<p class="note">These runs are listed here and counted in the tables, but never averaged in; in time to target a collapsed or diverged run counts as never reaching the target (censored).</p>
{table_html(page.problems, with_title=False)}
</section>
<section id="runs">
<h2>All runs</h2>
<details><summary>Show the per-run table ({len(page.runs.rows)} rows; also in tables/runs.csv)</summary>
{table_html(page.runs, with_title=False)}
</details>
</section>
<section id="study">
<h2>Study configuration</h2>
<pre>{esc(page.study_yaml)}</pre>
</section>
<section id="environment">
<h2>Environment</h2>
<dl class="env">{env}</dl>
{env_notes}
</section>
<footer>Generated by <code>alexnet-bench report</code> from the run directories;
tables as CSV in <code>tables/</code>, figures as PNG/SVG in <code>figures/</code>.</footer>
</main>
</body>
</html>
"""
