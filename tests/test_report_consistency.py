"""One report, one number per effect: from a fixed set of runs, every Δ and ratio the report
shows for an ablation (accuracy and speed tables, paper vs measured, the README-style findings,
in HTML, Markdown and CSV) equals the value of alexnet_bench.effects, computed here from the
runs' known per-seed values."""

from __future__ import annotations

import csv
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from alexnet_bench.effects import Crossing, Paired, holm, paired, resolution
from alexnet_bench.reports import build_report

from .fixtures_reports import write_run

SEEDS = (0, 1, 2, 3)
EPOCHS = 8
EPOCH_S = 5.0  # seconds per epoch of a run that never reaches the target
#: per ablation and seed: (status, val top-1, val top-5, epochs to target or None, seconds)
SPEC: dict[str, list[tuple[str, float, float, int | None, float]]] = {
    "baseline": [
        ("completed", 0.30, 0.08, 3, 9.0),
        ("completed", 0.34, 0.10, 4, 12.0),
        ("completed", 0.28, 0.07, 3, 10.0),
        ("completed", 0.32, 0.09, 5, 14.0),
    ],
    "tanh": [
        ("completed", 0.40, 0.12, 6, 21.0),
        ("completed", 0.45, 0.15, 7, 25.0),
        ("completed", 0.39, 0.11, 6, 20.0),
        ("completed", 0.44, 0.14, None, 0.0),
    ],
    "no_lrn": [
        ("completed", 0.31, 0.08, 3, 9.5),
        ("completed", 0.33, 0.11, 4, 11.0),
        ("completed", 0.29, 0.07, 4, 12.0),
        ("completed", 0.31, 0.09, 5, 15.0),
    ],
    "no_dropout": [
        ("completed", 0.25, 0.06, 2, 6.0),
        ("completed", 0.27, 0.08, 2, 7.0),
        ("collapsed", 0.90, 0.50, None, 0.0),
        ("completed", 0.26, 0.07, 3, 9.0),
    ],
    "plain_pooling": [
        ("completed", 0.30, 0.09, 3, 9.0),
        ("completed", 0.35, 0.10, 4, 12.0),
        ("completed", 0.27, 0.07, 3, 10.0),
        ("completed", 0.33, 0.09, 5, 14.0),
    ],
}
STUDY = {
    "preset": "default",
    "seeds": list(SEEDS),
    "baseline": "baseline",
    "ablations": {name: {"family": name, "description": name} for name in SPEC},
}


def _value(ablation: str, metric: str) -> dict[int, float | Crossing]:
    """The per-seed values as the runs were written: completed runs; for time to target also
    the collapsed ones, which never reached the target (right-censored at their last epoch)."""
    out: dict[int, float | Crossing] = {}
    for seed, (status, top1, top5, ttt, secs) in zip(SEEDS, SPEC[ablation], strict=True):
        if status != "completed" and not (metric.startswith("ttt") and status == "collapsed"):
            continue
        if metric == "val_top1":
            out[seed] = 100 * top1
        elif metric == "val_top5":
            out[seed] = 100 * top5
        elif ttt is None:  # never below the target in EPOCHS epochs
            trained = EPOCHS if metric == "ttt_epoch" else EPOCHS * EPOCH_S
            out[seed] = Crossing("right-censored", trained, math.inf, None, EPOCHS)
        else:
            out[seed] = float(ttt) if metric == "ttt_epoch" else secs
    return out


def expected(metric: str, a: str, b: str) -> Paired:
    return paired(_value(a, metric), _value(b, metric), ratio=metric.startswith("ttt"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("consistency")
    res = root / "results" / "default"
    for ablation, rows in SPEC.items():
        for seed, (status, top1, top5, ttt, secs) in zip(SEEDS, rows, strict=True):
            write_run(
                res,
                ablation,
                seed,
                status=status,
                val_top1=top1,
                val_top5=top5,
                train_top1=0.2,
                ttt_epoch=ttt,
                ttt_seconds=secs or None,
                epochs=EPOCHS,
                reason="did not learn" if status == "collapsed" else None,
            )
    out = root / "reports"
    build_report(res, out, study=STUDY)
    return out


# ----------------------------------------------------------------------------- readers


class _Tables(HTMLParser):
    """The tables of an HTML page by section id: {section: [table, ...]}, a table being its
    rows of cell texts, the header first."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.section = ""
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.section = dict(attrs).get("id", "")
        elif tag == "table":
            self.tables.setdefault(self.section, []).append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.section][-1].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def html_tables(out: Path, which: int = 0) -> dict[str, list[dict[str, str]]]:
    """Table ``which`` (default: the first) of each section of index.html, as dicts per row."""
    parser = _Tables()
    parser.feed((out / "index.html").read_text())
    return {
        section: [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
        for section, tables in parser.tables.items()
        if len(tables) > which and (rows := tables[which])
    }


def md_tables(out: Path) -> dict[str, list[dict[str, str]]]:
    """The first table under each ``## heading`` of summary.md."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading, rows = "", []
    for line in (out / "summary.md").read_text().splitlines():
        if line.startswith("## "):
            heading, rows = line[3:], []
        elif line.startswith("| ") and heading not in tables:
            cells = re.split(r"(?<!\\) \| ", line[2:-2])  # pandas pads the cells
            rows.append([c.strip().replace("\\|", "|") for c in cells])
        elif rows and heading not in tables and not line.startswith("|"):  # the table ended
            tables[heading] = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    return tables


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _close(text: str, value: float | None) -> None:
    if value is None:
        assert text == ""
    else:
        assert float(text) == pytest.approx(value, rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- the checks

ABLATIONS = [a for a in SPEC if a != "baseline"]
TABLE_COLUMNS = {  # section -> {column: metric}
    "accuracy": {
        "Δ top-1 vs baseline (paired, 95% CI)": "val_top1",
        "Δ top-5 vs baseline (paired, 95% CI)": "val_top5",
    },
    "speed": {
        "TTT ratio vs baseline, epochs (paired)": "ttt_epoch",
        "TTT ratio vs baseline, seconds (paired)": "ttt_seconds",
    },
    "findings": {"Δ val top-1 vs baseline (paired, 95% CI)": "val_top1"},
}
MD_HEADINGS = {
    "accuracy": "Accuracy vs baseline",
    "speed": "Speed and resources",
    "findings": "Findings",
}


def test_the_fixture_covers_the_hard_cases() -> None:
    assert expected("ttt_epoch", "tanh", "baseline").kind == "lower bound"  # a censored seed
    assert expected("val_top1", "no_dropout", "baseline").n == 3  # a collapsed seed: unpaired
    assert resolution(expected("val_top1", "no_lrn", "baseline")).null  # a null effect
    assert expected("val_top1", "tanh", "baseline").excludes_null  # a clear one


def test_ablations_csv_holds_the_effects_values(report: Path) -> None:
    rows = {r["ablation"]: r for r in csv_rows(report / "tables" / "ablations.csv")}
    for a in ABLATIONS:
        for metric, prefix in (
            ("val_top1", "val_top1_delta_pts"),
            ("val_top5", "val_top5_delta_pts"),
            ("ttt_epoch", "ttt_epoch_ratio_vs_baseline"),
            ("ttt_seconds", "ttt_seconds_ratio_vs_baseline"),
        ):
            p, row = expected(metric, a, "baseline"), rows[a]
            _close(row[prefix], p.value)
            _close(row[f"{prefix}_ci95_low"], p.ci_low)
            _close(row[f"{prefix}_ci95_high"], p.ci_high)
            assert (row[f"{prefix}_kind"], int(row[f"{prefix}_n_pairs"])) == (p.kind, p.n)


def test_every_table_shows_the_same_paired_effect(report: Path) -> None:
    views = {"HTML": html_tables(report), "Markdown": md_tables(report)}
    for where, tables in views.items():
        for section, columns in TABLE_COLUMNS.items():
            key = section if where == "HTML" else MD_HEADINGS[section]
            rows = {r.get("Ablation"): r for r in tables[key]}
            for a in ABLATIONS:
                for column, metric in columns.items():
                    shown = rows[a][column]
                    p = expected(metric, a, "baseline")
                    assert shown.split("; ")[0] == p.text(), (where, section, a, column)
                    if section == "findings" and resolution(p).null:  # the null statement
                        assert shown.endswith(resolution(p).text(False)), (where, a)
                    assert "Welch" not in shown


def _compared(compared: str) -> tuple[str, str, bool]:
    sep = " / " if " / " in compared else " − "
    a, b = compared.split(sep)
    return a, b, sep == " / "


def test_paper_vs_measured_shows_the_same_effects(report: Path) -> None:
    rows = [r for r in csv_rows(report / "tables" / "paper_vs_measured.csv") if r["measured_kind"]]
    assert len(rows) >= 8
    shown: dict[str, str] = {}
    for r in rows:
        a, b, _ = _compared(r["compared"])
        p = paired(_measure(a, r["metric"]), _measure(b, r["metric"]), ratio=r["kind"] == "ratio")
        assert r["measured"] == p.text() and r["measured_kind"] == p.kind, r["compared"]
        _close(r["measured_effect"], p.value)
        _close(r["ci95_low"], p.ci_low)
        _close(r["ci95_high"], p.ci_high)
        assert int(r["n_pairs"]) == p.n
        shown[f"{r['comparison']} [{r['compared']}]"] = p.text()
    for where, tables in (("HTML", html_tables(report)), ("Markdown", md_tables(report))):
        table = tables["claims" if where == "HTML" else "Paper vs measured"]
        for row in table:
            quantity = row["Measured quantity"]
            if quantity in shown:
                assert row["Measured (paired over seeds, 95% CI)"] == shown[quantity], where
    # the same comparison in the claims and in the tables: one number
    tanh = next(
        r for r in rows if r["compared"] == "tanh / baseline" and r["metric"] == "ttt_epoch"
    )
    assert tanh["measured"] == expected("ttt_epoch", "tanh", "baseline").text()


def _measure(ablation: str, metric: str) -> dict[int, float | Crossing]:
    """Per-seed values of any metric a claim compares (overfit gap: val - train error)."""
    if metric == "overfit_gap":
        return {s: v - 20.0 for s, v in _value(ablation, "val_top1").items()}  # train 20%
    return _value(ablation, metric)


def test_the_findings_summary_repeats_the_claims_numbers(report: Path) -> None:
    """The README-style summary (summary.md, "Findings"): its other effects are the claims'."""
    claims = {
        f"{r['comparison']}: {r['measured']}"
        for r in csv_rows(report / "tables" / "paper_vs_measured.csv")
        if r["measured_kind"]
    }
    findings = {r["Ablation"]: r for r in md_tables(report)["Findings"]}
    assert set(findings) == set(ABLATIONS)
    tanh_other = findings["tanh"]["Other measured effects"]
    assert "epochs to target train error, tanh / ReLU: " in tanh_other
    for part in tanh_other.split("; "):
        if ": " in part and not part.startswith(("|Δ|", "detectable", "within")):
            assert part in claims, part


def test_left_out_seeds_agree_with_the_pairs(report: Path) -> None:
    """Each accuracy row (and the findings row) names the seeds its Δ leaves out, per arm and
    why; their count is what the paired n does not cover."""
    collapsed = (
        "1 of 4 no_dropout seeds left out: collapsed (seed 2); "
        "1 of 4 baseline seeds left out: its no_dropout run collapsed (seed 2)"
    )
    csv_by = {r["ablation"]: r for r in csv_rows(report / "tables" / "ablations.csv")}
    for where, tables in (("HTML", html_tables(report)), ("Markdown", md_tables(report))):
        for section in ("accuracy", "findings"):
            key = section if where == "HTML" else MD_HEADINGS[section]
            rows = {r["Ablation"]: r for r in tables[key]}
            for a in ABLATIONS:
                shown = rows[a]["Seeds left out of Δ (why)"]
                assert shown == (collapsed if a == "no_dropout" else "none"), (where, a)
                left = sum(int(m) for m in re.findall(r"(\d+) of 4 baseline seeds", shown))
                assert left == len(SEEDS) - expected("val_top1", a, "baseline").n
                assert csv_by[a]["val_top1_left_out"] == shown


def test_the_findings_holm_column_is_holm_over_the_tests_it_shows(report: Path) -> None:
    """The family: each row's Δ val top-1 and its other measured effects (the claims of that
    ablation), one test counted once; m = those with a p-value; verdicts = effects.holm."""
    claims = [
        r for r in csv_rows(report / "tables" / "paper_vs_measured.csv") if r["measured_kind"]
    ]
    tests: dict[str, list[tuple[str, tuple[str, str], Paired]]] = {}
    for a in ABLATIONS:
        row_tests = [
            ("Δ top-1", ("val_top1", f"{a} − baseline"), expected("val_top1", a, "baseline"))
        ]
        for r in claims:
            x, y, ratio = _compared(r["compared"])
            if a not in (x, y) or (r["metric"] == "val_top1" and {x, y} == {a, "baseline"}):
                continue
            p = paired(_measure(x, r["metric"]), _measure(y, r["metric"]), ratio=ratio)
            assert (p.p_value is None) == (r["p_value"] == "")  # the CSV holds the same p
            if p.p_value is not None:
                _close(r["p_value"], p.p_value)
            row_tests.append((r["comparison"], (r["metric"], r["compared"]), p))
        tests[a] = row_tests
    family = {key: p.p_value for row in tests.values() for _, key, p in row}
    verdicts = holm(family)
    m = len(verdicts)
    assert 2 <= m < len(family)  # some shown effects are bounds: not in the family
    for where, tables in (("HTML", html_tables(report)), ("Markdown", md_tables(report))):
        rows = {r["Ablation"]: r for r in tables["findings" if where == "HTML" else "Findings"]}
        for a in ABLATIONS:
            cell = rows[a][f"Holds after Holm (m = {m})?"]
            parts = cell.split("; ")
            assert len(parts) == len(tests[a]), (where, a)
            for part, (label, key, _p) in zip(parts, tests[a], strict=True):
                verdict = part.split(": ", 1)[1] if len(tests[a]) > 1 else part
                if len(tests[a]) > 1:
                    assert part.startswith(f"{label}: ")
                if key in verdicts:
                    assert verdict == verdicts[key].text(), (where, a, label)
                else:
                    assert verdict.startswith("not tested"), (where, a, label)
    note = md_tables_note(report, "Findings")
    assert f"m = {m}" in note and f"this table shows {len(family)} paired effects" in note
    holding = sum(v.holds for v in verdicts.values())
    assert f"{holding} of {m} hold" in note


def md_tables_note(out: Path, heading: str) -> str:
    """The italic note under the table of a ``## heading`` of summary.md."""
    text = (out / "summary.md").read_text().split(f"## {heading}\n", 1)[1]
    return next(line for line in text.splitlines() if line.startswith("_"))


def test_the_forest_plot_draws_the_tables_effects(report: Path) -> None:
    """tables/forest.csv is what the first figure draws: per ablation and metric the paired
    effect of the tables (value, interval, kind, pairs, text), the band of a null with what it
    rules out, and the paper's and others' values of paper_vs_measured.csv on the same axis."""
    forest = csv_rows(report / "tables" / "forest.csv")
    measured = {(r["panel"], r["row"]): r for r in forest if r["mark"] == "measured"}
    ablations = {r["ablation"]: r for r in csv_rows(report / "tables" / "ablations.csv")}
    for a in ABLATIONS:
        for metric, prefix in (
            ("val_top1", "val_top1_delta_pts"),
            ("val_top5", "val_top5_delta_pts"),
            ("ttt_epoch", "ttt_epoch_ratio_vs_baseline"),
            ("ttt_seconds", "ttt_seconds_ratio_vs_baseline"),
        ):
            p, row = expected(metric, a, "baseline"), measured[(metric, a)]
            assert (row["a"], row["b"], row["kind"], int(row["n_pairs"])) == (
                a,
                "baseline",
                p.kind,
                p.n,
            )
            assert row["text"] == p.text()
            for key, attr in (("value", "value"), ("ci95_low", "ci_low"), ("ci95_high", "ci_high")):
                _close(row[key], getattr(p, attr))
                column = prefix if key == "value" else f"{prefix}_{key}"
                assert row[key] == ablations[a][column], (a, key)  # the same number
            res = resolution(p)
            _close(row["rules_out"], res.excluded if res.null else None)
    tanh = measured[("ttt_epoch", "tanh")]
    assert tanh["kind"] == "lower bound" and tanh["ci95_low"] == ""  # drawn as an arrow
    assert measured[("val_top1", "no_lrn")]["rules_out"] != ""  # a null: a band
    claims = [
        r for r in csv_rows(report / "tables" / "paper_vs_measured.csv") if r["measured_kind"]
    ]
    paper = {(r["panel"], r["row"]): r for r in forest if r["mark"] == "paper"}
    drawn = 0
    for r in claims:
        x, y, _ = _compared(r["compared"])
        if r["paper_effect"] == "" or "baseline" not in (x, y):
            continue
        flip = x == "baseline"  # drawn as the ablation vs the baseline
        arm = y if flip else x
        value = float(r["paper_effect"])
        value = (1 / value if r["kind"] == "ratio" else -value) if flip else value
        _close(paper[(r["metric"], arm)]["value"], value)
        drawn += 1
    assert drawn >= 4  # ReLU vs tanh (twice), LRN (top-1, top-5), ...
    assert any(r["mark"] == "other" for r in forest)
    page = (report / "index.html").read_text()
    assert page.index('id="fig-forest"') < page.index('id="findings"')  # the first screen
