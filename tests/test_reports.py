"""Report tests on hand-written run directories: numbers, robustness, outputs, idempotence."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from alexnet_bench.collect import collect
from alexnet_bench.effects import summarize, t_crit, welch
from alexnet_bench.reports import build_report, caption_path, captions_dir
from alexnet_bench.reports.paper_vs_measured import evaluate
from alexnet_bench.reports.study_input import normalize_study
from tests.fixtures_reports import STUDY, build_study_results, write_run
from tests.test_report_consistency import html_tables, md_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 10: 2.2281389, 30: 2.0422725}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("study")
    res, expected = build_study_results(root)
    out = root / "reports"
    result = build_report(res, out, study=STUDY, expected=expected)
    return {"root": root, "res": res, "expected": expected, "out": out, "result": result}


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = "ablation" if "ablation" in rows[0] and "seed" not in rows[0] else None
    if key:
        return {r[key]: r for r in rows}
    return {f"{r['ablation']}/seed{r['seed']}": r for r in rows}


def _f(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


# ----------------------------------------------------------------------------- statistics


def test_t_quantiles_match_the_t_table() -> None:
    for df, value in T975.items():
        assert t_crit(df) == pytest.approx(value, abs=1e-6)
    assert t_crit(1e7) == pytest.approx(1.959964, abs=1e-5)


def test_summarize_and_welch_by_hand() -> None:
    s = summarize([30.0, 34.0, None, float("nan")])
    assert (s.n, s.mean) == (2, 32.0)
    assert s.std == pytest.approx(math.sqrt(8.0))
    assert s.ci_half == pytest.approx(12.7062047 * math.sqrt(8.0) / math.sqrt(2))
    one = summarize([5.0])
    assert one.n == 1 and math.isnan(one.std) and not one.has_ci
    d = welch([1.0, 2.0, 3.0], [11.0, 12.0, 13.0])
    # equal variances and sizes: Welch df = 4, se = sqrt(1/3 + 1/3)
    assert d.value == -10.0 and d.df == pytest.approx(4.0)
    assert d.ci_high - d.value == pytest.approx(2.7764451 * math.sqrt(2 / 3), rel=1e-6)
    assert d.ci_high < 0  # the interval excludes zero


# ----------------------------------------------------------------------------- tables


def test_ablation_table_numbers_are_hand_computed(report: dict) -> None:
    rows = _csv(report["out"] / "tables" / "ablations.csv")
    base, tanh, no_lrn, gpus2 = rows["baseline"], rows["tanh"], rows["no_lrn"], rows["gpus2"]
    # baseline val top-1 30 and 34 %: mean 32, sd sqrt(8), CI half = t(1) * sd / sqrt(2)
    assert _f(base["val_top1_err_pct_mean"]) == pytest.approx(32.0)
    assert _f(base["val_top1_err_pct_std"]) == pytest.approx(2.8284271, rel=1e-7)
    assert _f(base["val_top1_err_pct_ci95_half"]) == pytest.approx(12.7062047 * 2, rel=1e-7)
    assert _f(base["val_top1_err_pct_ci95_low"]) == pytest.approx(32 - 25.4124094, rel=1e-6)
    assert _f(base["val_top5_err_pct_mean"]) == pytest.approx(6.0)
    assert _f(base["val_top5_err_pct_ci95_half"]) == pytest.approx(12.7062047, rel=1e-7)
    assert base["val_top1_delta_pts"] == ""  # the reference itself
    # tanh: the diverged seed (90 %) is not averaged in; n=1 -> no sd / CI
    assert tanh["status_summary"] == "1 completed, 1 diverged"
    assert (tanh["completed"], tanh["diverged"]) == ("1", "1")
    assert _f(tanh["val_top1_err_pct_mean"]) == pytest.approx(40.0)
    assert tanh["val_top1_err_pct_std"] == "" and tanh["val_top1_err_pct_ci95_half"] == ""
    # Δ is paired: only seed 0 has a learned run in both arms: 40 - 30 (Welch: 40 - 32)
    assert _f(tanh["val_top1_delta_pts"]) == pytest.approx(10.0)
    assert tanh["val_top1_delta_pts_n_pairs"] == "1" and tanh["val_top1_delta_pts_ci95_low"] == ""
    assert _f(tanh["val_top1_delta_welch_pts"]) == pytest.approx(8.0)
    # the accuracy row says which seeds the Δ left out and why
    assert tanh["val_top1_left_out"] == (
        "1 of 2 tanh seeds left out: diverged (seed 1); "
        "1 of 2 baseline seeds left out: its tanh run diverged (seed 1)"
    )
    assert base["val_top1_left_out"] == "none"
    # time to target: baseline 3/5 epochs, 10/14 s -> means 4 epochs, 12 s; tanh 9 epochs, 60 s.
    # The diverged tanh seed 1 never reached the target: it counts, right-censored at its last
    # epoch with a finite loss (epoch 2 of 3, 2 * 5 s), so the paired ratio is a lower bound:
    # the geometric mean of 9 / 3 and 2 / 5 (seconds: 60 / 10 and 10 / 14)
    assert _f(base["ttt_epoch_mean"]) == pytest.approx(4.0)
    assert _f(base["ttt_seconds_mean"]) == pytest.approx(12.0)
    assert _f(tanh["ttt_epoch_ratio_vs_baseline"]) == pytest.approx(math.sqrt(9 / 3 * 2 / 5))
    assert _f(tanh["ttt_seconds_ratio_vs_baseline"]) == pytest.approx(math.sqrt(6 * 10 / 14))
    assert tanh["ttt_epoch_ratio_vs_baseline_kind"] == "lower bound"
    assert (tanh["ttt_reached"], tanh["ttt_trained"]) == ("1", "2")
    # no_lrn: the failed seed (99 %) is not averaged in; paired on seed 0: 36 - 30, 8 - 5
    assert no_lrn["status_summary"] == "1 completed, 1 failed"
    assert _f(no_lrn["val_top1_err_pct_mean"]) == pytest.approx(36.0)
    assert _f(no_lrn["val_top1_delta_pts"]) == pytest.approx(6.0)
    assert _f(no_lrn["val_top5_delta_pts"]) == pytest.approx(3.0)
    assert rows["no_dropout"]["status_summary"] == "1 completed, 1 missing"
    assert rows["plain_pooling"]["status_summary"] == "1 completed, 1 unparseable"
    assert _f(rows["plain_pooling"]["val_top1_delta_pts"]) == pytest.approx(-3.0)  # 31 - 34
    # gpus2: 31 / 33 % vs 30 / 34 %: per seed +1, -1: mean 0, sd sqrt(2), half t(1) * 1
    assert _f(gpus2["val_top1_delta_pts"]) == pytest.approx(0.0, abs=1e-9)
    assert _f(gpus2["val_top1_delta_pts_ci95_high"]) == pytest.approx(T975[1], rel=1e-6)
    # Welch beside it (labelled): se = sqrt(8/2 + 2/2), df = 25/17
    se = math.sqrt(5.0)
    half = _f(gpus2["val_top1_delta_welch_ci95_high"])
    assert T975[2] * se < half < T975[1] * se
    assert _f(gpus2["throughput_img_s_mean"]) == pytest.approx(1220.0)
    assert list(rows) == ["baseline", "tanh", "no_lrn", "no_dropout", "plain_pooling", "gpus2"]


def test_runs_csv_lists_every_cell_with_status(report: dict) -> None:
    rows = _csv(report["out"] / "tables" / "runs.csv")
    assert len(rows) == 12
    assert rows["tanh/seed1"]["status"] == "diverged"
    assert "nan at epoch 3" in rows["tanh/seed1"]["reason"]
    assert rows["no_lrn/seed1"]["status"] == "failed"
    assert rows["no_dropout/seed0"]["status"] == "missing"
    bad = rows["plain_pooling/seed0"]
    assert bad["status"] == "unparseable" and "invalid JSON" in bad["reason"]
    assert bad["path"].endswith("plain_pooling/seed0/metrics.json")
    assert _f(rows["baseline/seed1"]["val_top1_err_pct"]) == pytest.approx(34.0)
    assert rows["baseline/seed0"]["num_params"] == "2345678"


def test_problem_cells_are_listed_with_reasons(report: dict) -> None:
    page = (report["out"] / "index.html").read_text()
    md = (report["out"] / "summary.md").read_text()
    for text in (page, md):
        assert "tanh/seed1" in text and "loss is nan at epoch 3" in text
        assert "no_lrn/seed1" in text and "DataError: corrupt file x.png" in text
        assert "no_dropout/seed0" in text and "run directory does not exist" in text
        assert "plain_pooling/seed0/metrics.json" in text and "invalid JSON" in text
    assert report["result"]["counts"] == {
        "completed": 8,
        "collapsed": 0,
        "diverged": 1,
        "failed": 1,
        "skipped": 0,
        "missing": 1,
        "unparseable": 1,
        "unknown": 0,
    }
    assert [Path(p).parent.name for p in report["result"]["left_out"]] == ["seed7"]
    assert "not part of this study and was left out: baseline/seed7" in page


def test_identical_problem_reasons_share_a_row(tmp_path: Path) -> None:
    """One Problems row per distinct (status, reason), naming its cells; another reason, or the
    same reason with another status, is a row of its own."""
    from .test_report_consistency import html_tables, md_tables

    res = tmp_path / "results" / "default"
    skip = "needs 2 GPUs but this host has none (on_insufficient_gpus: skip); recorded, not run"
    for seed in (0, 1, 2):
        write_run(res, "baseline", seed)
        write_run(res, "gpus2", seed, status="skipped", reason=skip, epochs=0, history=False)
    write_run(res, "tanh", 0, status="failed", reason=skip, epochs=1)
    write_run(res, "tanh", 1, status="failed", reason="DataError: corrupt file x.png", epochs=2)
    write_run(res, "tanh", 2)
    study = {"baseline": "baseline", "seeds": [0, 1, 2], "ablations": ["baseline", "gpus2", "tanh"]}
    out = tmp_path / "reports"
    build_report(res, out, study=study)
    for where, tables in (("HTML", html_tables(out)), ("Markdown", md_tables(out))):
        key = (
            "problems" if where == "HTML" else next(k for k in tables if k.startswith("Collapsed"))
        )
        rows = [
            (r["Status"], r["Reason"], r["Cells"], r["Which (epochs done)"]) for r in tables[key]
        ]
        assert rows == [
            ("skipped", skip, "3", "gpus2/seed0 (0 ep), gpus2/seed1 (0 ep), gpus2/seed2 (0 ep)"),
            ("failed", skip, "1", "tanh/seed0 (1 ep)"),
            ("failed", "DataError: corrupt file x.png", "1", "tanh/seed1 (2 ep)"),
        ], where
    page = (out / "index.html").read_text()
    assert page.count(skip) == 2  # once per row, not once per cell
    assert str(res / "gpus2" / "seed2" / "metrics.json") in page  # the paths: the row's note


def test_long_columns_become_numbered_notes_in_html() -> None:
    from alexnet_bench.reports.html import table_view
    from alexnet_bench.reports.tables import Table

    t = Table(
        title="Paper vs measured",
        columns=["Claim", "Effect", "Same direction?", "Caveats"],
        rows=[["a", "+1.00 pts", "yes", "long text"], ["b", "n/a", "n/a", "–"]],
        aside=("Caveats",),
    )
    view = table_view(t)
    assert view["columns"] == ["Claim", "Effect", "Same direction?", "Notes"]
    assert view["notes"] == [{"label": "a", "parts": [("Caveats", "long text")]}]
    assert [c["note"] for r in view["rows"] for c in r["cells"]] == [None] * 3 + [1] + [None] * 4
    assert view["rows"][0]["cells"][2]["badge"] == "b-yes"
    assert view["rows"][1]["cells"][2]["badge"] == "b-na"
    assert t.frame().columns.tolist() == t.columns  # Markdown keeps every column


def test_the_page_escapes_what_it_shows(tmp_path: Path) -> None:
    """Autoescaped templates: text from the runs and the study is shown, never interpreted."""
    res = tmp_path / "results" / "default"
    write_run(res, "baseline", 0)
    write_run(res, "tanh", 0, status="failed", reason="<script>alert(1)</script> & more")
    study = {
        "baseline": "baseline",
        "seeds": [0],
        "ablations": {"baseline": {"description": "<b>bold</b>"}, "tanh": {}},
    }
    build_report(res, tmp_path / "out", study=study)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<script>" not in page and "<b>bold</b>" not in page and "&lt;b&gt;bold" in page


# ----------------------------------------------------------------------------- claims


def _claims(report: dict) -> dict[str, dict[str, str]]:
    with open(report["out"] / "tables" / "paper_vs_measured.csv", newline="") as fh:
        return {f"{r['claim_id']}:{r['metric']}:{r['compared']}": r for r in csv.DictReader(fh)}


def test_paper_vs_measured_rows(report: dict) -> None:
    rows = _claims(report)
    ep = rows["relu_vs_tanh:ttt_epoch:tanh / baseline"]
    # paired by seed: seed 0 9 / 3 epochs; the diverged tanh seed 1 never reached the target and
    # counts as right-censored at epoch 2 (its last finite epoch) against the baseline's 5: a
    # lower bound, the geometric mean of the per-seed lower bounds
    assert _f(ep["measured_effect"]) == pytest.approx(math.sqrt(9 / 3 * 2 / 5))
    assert ep["measured"] == "> 1.10× (paired, n=2, censored: seed 1)"
    assert (ep["same_direction"], ep["ci95_excludes_null"], ep["p_value"]) == ("yes", "n/a", "")
    assert "excluded" not in ep["caveats"] and "left out" not in ep["caveats"]
    assert (
        "censored: tanh seed 1 diverged without reaching 50% train error: counted as never "
        "reaching it, right-censored at epoch 2, its last epoch with a finite loss (the loss of "
        "epoch 3 was not finite)"
    ) in ep["caveats"]
    # no unpaired estimate: Welch on the exact values alone would drop the censored seed
    assert ep["welch"] == "n/a (censored seeds: no unpaired estimate)"
    assert "1 of 2" not in ep["caveats"]  # no seed is left out of time to target
    assert "synthetic" in ep["caveats"] and "4-layer CNN" in ep["caveats"]
    assert "target here is 50%" in ep["caveats"]
    sec = rows["relu_vs_tanh:ttt_seconds:tanh / baseline"]
    # seconds: 60 / 10 and (2 epochs * 5 s) / 14 s
    assert _f(sec["measured_effect"]) == pytest.approx(math.sqrt(6 * 10 / 14))
    assert "right-censored at 10.0 s of training" in sec["caveats"]
    lrn = rows["lrn:val_top1:no_lrn − baseline"]
    assert _f(lrn["measured_effect"]) == pytest.approx(6.0)  # 36 - 30, seed 0
    assert lrn["welch"].startswith("+4.00")  # 36 - mean(30, 34)
    assert lrn["same_direction"] == "yes"
    assert "1 of 2 no_lrn seeds left out: failed (seed 1)" in lrn["caveats"]
    assert "ImageNet 224 px" in lrn["caveats"] and "6 epochs" in lrn["caveats"]
    pool = rows["overlapping_pooling:val_top1:plain_pooling − baseline"]
    assert _f(pool["measured_effect"]) == pytest.approx(-3.0)  # 31 - 34, seed 1
    assert pool["same_direction"] == "no"
    drop = rows["dropout:ttt_epoch:baseline / no_dropout"]
    assert _f(drop["measured_effect"]) == pytest.approx(5.0 / 2.0)  # seed 1: 5 / 2 epochs
    gap = rows["dropout:overfit_gap:no_dropout − baseline"]
    assert _f(gap["measured_effect"]) == pytest.approx((33 - 5) - (34 - 22))  # seed 1
    pca = rows["pca_lighting:val_top1:no_pca_lighting − baseline"]
    assert pca["measured"] == "not in this study" and pca["same_direction"] == "n/a"
    half = rows["two_gpus:val_top1:half_width − gpus2"]
    assert half["measured"] == "not in this study"
    assert "half_width/half_kernels not in this study" in half["caveats"]
    ddp = rows["two_gpus:val_top1:gpus2 − baseline"]
    assert _f(ddp["measured_effect"]) == pytest.approx(0.0, abs=1e-9)
    assert (ddp["same_direction"], ddp["ci95_excludes_null"]) == ("yes", "no")
    assert _f(ddp["p_value"]) == pytest.approx(1.0)  # mean 0: the t statistic is 0
    assert "ran on CPU" in ddp["caveats"]
    assert _f(ddp["n_a"]) == 2 and _f(ddp["n_b"]) == 2 and _f(ddp["n_pairs"]) == 2
    # per-seed differences +1 and -1: mean 0, sd sqrt(2), half-width t(1) * sqrt(2) / sqrt(2)
    assert _f(ddp["ci95_high"]) == pytest.approx(T975[1])


def test_claims_spread_censoring_and_fallback(tmp_path: Path) -> None:
    res = tmp_path / "results" / "default"
    for seed, (b, n) in enumerate([(0.300, 0.400), (0.310, 0.410), (0.305, 0.405)]):
        write_run(res, "baseline", seed, val_top1=b, ttt_epoch=3, ttt_seconds=9.0)
        write_run(res, "no_lrn", seed, val_top1=n)
        write_run(res, "plain_pooling", seed, val_top1=b + (0.004 if seed else -0.004))
        write_run(res, "tanh", seed, ttt_epoch=None, ttt_seconds=None, epochs=10)
        write_run(res, "half_kernels", seed, val_top1=b + 0.02)
    study = normalize_study(
        {
            "baseline": "baseline",
            "seeds": [0, 1, 2],
            "ablations": ["baseline", "no_lrn", "plain_pooling", "tanh", "half_kernels"],
        }
    )
    rows = {
        f"{r.claim_id}:{r.metric}:{r.compared}": r
        for r in evaluate(collect(res, study=study), study, "baseline")
    }
    lrn = rows["lrn:val_top1:no_lrn − baseline"]
    # +10 points in every seed: the paired interval has width 0; Welch (sd 0.5 on both sides,
    # n=3, df 4) has half-width t(4) * sqrt(2 * 0.25 / 3)
    assert lrn.measured_effect == pytest.approx(10.0)
    assert lrn.ci_low == pytest.approx(10.0) and lrn.ci_high == pytest.approx(10.0)
    assert (lrn.same_direction, lrn.ci_excludes_null) == ("yes", "yes")
    assert lrn.measured == "+10.00 pts [+10.00, +10.00] (paired, n=3)"
    assert lrn.welch_high - 10.0 == pytest.approx(2.7764451 * math.sqrt(0.5 / 3))
    assert lrn.welch == "+10.00 pts [+8.87, +11.13] (Welch, unpaired, n=3 vs 3)"
    assert lrn.resolves == ""  # the interval excludes 0: nothing to say about a null
    pool = rows["overlapping_pooling:val_top1:plain_pooling − baseline"]
    assert pool.ci_excludes_null == "no"  # per-seed -0.4, +0.4, +0.4 points
    # the null: |Δ| below the interval's far end, and what 3 seeds could detect at sd 0.46
    p = pool.effect
    assert pool.resolves.startswith(f"|Δ| < {max(-p.ci_low, p.ci_high):.1f} pts (95%)")
    assert "detectable: " in pool.resolves
    tanh = rows["relu_vs_tanh:ttt_epoch:tanh / baseline"]
    # tanh never reached the target in its 10 epochs: only a bound, 10 / 3
    assert tanh.measured == "> 3.33× (paired, n=3, censored: seeds 0, 1, 2)"
    assert tanh.effect.kind == "lower bound" and tanh.same_direction == "yes"
    assert tanh.ci_excludes_null == "n/a"
    assert any("tanh did not reach 50% train error within 10 epochs" in c for c in tanh.caveats)
    half = rows["two_gpus:val_top1:half_kernels − baseline"]
    assert half.measured_effect == pytest.approx(2.0)
    assert "gpus2_model not in this study; compared with baseline instead" in half.caveats


def test_a_run_below_the_target_after_its_first_epoch_counts_as_reaching_it(
    tmp_path: Path,
) -> None:
    """Left-censored (below the target after epoch 1): it reached the target, at a bound, so it
    is counted as reached and named, not folded into the mean or shown as 'not reached'."""
    res = tmp_path / "results" / "default"
    for seed in range(3):
        write_run(res, "baseline", seed, ttt_epoch=3, ttt_seconds=9.0)
    for seed, ttt in enumerate([1, 4, 5]):
        write_run(res, "tanh", seed, ttt_epoch=ttt, ttt_seconds=3.0 * ttt)
    history = res / "tanh" / "seed0" / "history.csv"
    rows = list(csv.DictReader(history.open()))
    rows[0]["train_top1_error"] = "0.4"  # already below the 50% target after epoch 1
    with history.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    study = {"baseline": "baseline", "seeds": [0, 1, 2], "ablations": ["baseline", "tanh"]}
    out = tmp_path / "reports"
    info = build_report(res, out, study=study)
    assert info["ttt_reached"]["tanh"] == 3
    speed = {r["Ablation"]: r for r in md_tables(out)["Speed and resources"]}
    assert speed["tanh"]["Epochs to 50% train err"] == (
        "4.5 (1 within the first epoch, not in the mean)"
    )
    assert _csv(out / "tables" / "ablations.csv")["tanh"]["ttt_reached"] == "3"


def test_a_collapsed_seed_is_a_censored_time_to_target_and_named_on_the_accuracy_row(
    tmp_path: Path,
) -> None:
    """tanh collapses in seed 2 of 3: its time to target is a bound that counts that seed (it
    never reached the target), and its accuracy row says the Δ left that seed out, and why."""
    res = tmp_path / "results" / "default"
    for seed, (ttt, top1) in enumerate([(2, 0.30), (3, 0.32), (4, 0.31)]):
        write_run(res, "baseline", seed, val_top1=top1, ttt_epoch=ttt, ttt_seconds=3.0 * ttt)
    for seed, (ttt, top1) in enumerate([(4, 0.40), (5, 0.43)]):
        write_run(res, "tanh", seed, val_top1=top1, ttt_epoch=ttt, ttt_seconds=3.0 * ttt)
    collapsed = {"status": "collapsed", "reason": "did not learn", "train_top1": 0.9}
    write_run(res, "tanh", 2, val_top1=0.9, ttt_epoch=None, ttt_seconds=None, **collapsed)
    study = {"baseline": "baseline", "seeds": [0, 1, 2], "ablations": ["baseline", "tanh"]}
    out = tmp_path / "reports"
    info = build_report(res, out, study=study)
    assert info["ttt_reached"]["tanh"] == 2

    # epochs: 4 / 2, 5 / 3 and, for the collapsed seed, > 6 / 4 (right-censored at its last
    # epoch, 6): the geometric mean of the per-seed lower bounds, (2 * 5/3 * 3/2)^(1/3) = 5^(1/3)
    # (without the collapsed seed it would be an estimate over 2 seeds, sqrt(10/3) = 1.83)
    bound = f"> {5 ** (1 / 3):.2f}× (paired, n=3, censored: seed 2)"
    # seconds: 12 / 6, 15 / 9 and > 30 / 12 (6 epochs of 5 s: the fixture's epoch time)
    bound_s = f"> {(2 * 15 / 9 * 30 / 12) ** (1 / 3):.2f}× (paired, n=3, censored: seed 2)"
    left_out = (
        "1 of 3 tanh seeds left out: collapsed (seed 2); "
        "1 of 3 baseline seeds left out: its tanh run collapsed (seed 2)"
    )
    for where, tables in (("HTML", html_tables(out)), ("Markdown", md_tables(out))):
        speed = {
            r["Ablation"]: r for r in tables["speed" if where == "HTML" else "Speed and resources"]
        }
        tanh = speed["tanh"]
        assert tanh["TTT ratio vs baseline, epochs (paired)"] == bound, where
        assert tanh["TTT ratio vs baseline, seconds (paired)"] == bound_s, where
        assert tanh["Epochs to 50% train err"] == "4.5 (2/3 reached)", where
        accuracy = tables["accuracy" if where == "HTML" else "Accuracy vs baseline"]
        rows = {r["Ablation"]: r for r in accuracy}
        assert rows["tanh"]["Seeds left out of Δ (why)"] == left_out, where
        assert rows["tanh"]["Δ top-1 vs baseline (paired, 95% CI)"].endswith("(paired, n=2)")
        assert rows["baseline"]["Seeds left out of Δ (why)"] == "none", where
        findings = {r["Ablation"]: r for r in tables["findings" if where == "HTML" else "Findings"]}
        assert findings["tanh"]["Seeds left out of Δ (why)"] == left_out, where
    ablations = _csv(out / "tables" / "ablations.csv")
    assert ablations["tanh"]["ttt_epoch_ratio_vs_baseline_kind"] == "lower bound"
    assert ablations["tanh"]["val_top1_left_out"] == left_out
    claims = _claims({"out": out})
    ttt = claims["relu_vs_tanh:ttt_epoch:tanh / baseline"]
    assert ttt["measured"] == bound and ttt["welch"].startswith("n/a (censored seeds")
    assert "right-censored at epoch 6, its last epoch" in ttt["caveats"]
    assert "left out" not in ttt["caveats"]
    page = (out / "index.html").read_text()
    assert "in time to target the collapsed seeds count as never reaching it" in page


# ----------------------------------------------------------------------------- outputs


def test_figures_are_valid_png_and_svg(report: dict) -> None:
    figs = sorted((report["out"] / "figures").glob("*.png"))
    names = {p.stem for p in figs}
    assert {
        "learning_curves_epoch",
        "learning_curves_time",
        "figure1_relu_vs_tanh",
        "time_to_target",
        "throughput",
        "scaling",
    } <= names
    assert "energy_per_image" not in names  # CPU runs: no telemetry
    for png in figs:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        img = mpimg.imread(png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        svg = png.with_suffix(".svg")
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg")
        assert b"<dc:date>" not in svg.read_bytes()


def test_html_is_self_contained(report: dict) -> None:
    page = (report["out"] / "index.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') == len(report["result"]["figures"])
    assert "<table" in page and "Paper vs measured" in page and "Accuracy vs baseline" in page
    assert "32.00 ± 2.83" in page  # baseline top-1 mean ± sd
    assert "no GPU telemetry" in page  # energy figure skipped, with a note
    assert "Multi-device scaling (CPU runs, not GPUs)" in page
    assert "95% CI excludes 0 (ratios: 1)?" in page and "Exceeds seed spread" not in page
    assert "excludes no effect" in page and "paired" in page
    assert "abc1234" in page and "testhost" in page  # environment
    assert "ablation_defs:" in page  # study YAML
    md = (report["out"] / "summary.md").read_text()
    accuracy = {r["Ablation"]: r for r in md_tables(report["out"])["Accuracy vs baseline"]}
    row = accuracy["baseline"]
    assert [row["What changes"], row["Runs"], row["Val top-1 err % (mean ± sd)"]] == [
        "paper settings",
        "2 completed",
        "32.00 ± 2.83",
    ]
    assert "| baseline " in md and "| paper settings " in md  # pandas' pipe table
    assert "(figures/learning_curves_epoch.png)" in md


def test_rebuild_is_byte_identical(report: dict) -> None:
    out = report["out"]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    build_report(report["res"], out, study=STUDY, expected=report["expected"])
    after = sorted(p for p in out.rglob("*") if p.is_file())
    assert after == files
    changed = [str(p.relative_to(out)) for p in files if p.read_bytes() != before[p]]
    assert changed == []


def test_gpu_telemetry_figures(tmp_path: Path) -> None:
    res = tmp_path / "results" / "gpu"
    for seed in (0, 1):
        write_run(res, "baseline", seed, gpu=True, throughput=5000.0 + seed, epochs=3)
        write_run(res, "gpus2", seed, gpu=True, throughput=9000.0 + seed, world_size=2, epochs=3)
    result = build_report(res, tmp_path / "out", study=None)
    names = {Path(p).stem for p in result["figures"]}
    assert {"energy_per_image", "gpu_timeline", "scaling"} <= names
    rows = _csv(tmp_path / "out" / "tables" / "ablations.csv")
    assert _f(rows["baseline"]["energy_per_image_j_mean"]) == pytest.approx(0.0625)
    assert _f(rows["baseline"]["gpu_util_pct_mean"]) == pytest.approx(91.0)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "1.80×" in page  # speedup 9000.5 / 5000.5
    assert "CPU runs" not in page


def test_empty_and_garbage_inputs_do_not_crash(tmp_path: Path) -> None:
    res = tmp_path / "results" / "default"
    (res / "baseline" / "seed0").mkdir(parents=True)
    (res / "baseline" / "seed0" / "metrics.json").write_text("[1, 2]")
    (res / "baseline" / "seed1").mkdir(parents=True)  # no metrics.json yet
    result = build_report(res, tmp_path / "out", study={"ablations": {"baseline": {}}})
    assert result["counts"]["unparseable"] == 1 and result["counts"]["missing"] == 1
    page = (tmp_path / "out" / "index.html").read_text()
    assert "no completed run" in page
    assert (tmp_path / "out" / "summary.md").is_file()


# ----------------------------------------------------------------------------- CLI, captions


def test_cli_study_json_and_expected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from alexnet_bench.reports.cli import main

    res = tmp_path / "results" / "default"
    write_run(res, "baseline", 0, epochs=2)
    missing = res / "tanh" / "seed0" / "metrics.json"
    study = {
        "preset": "default",
        "seeds": [0],
        "baseline": "baseline",
        "ablations": ["baseline", "tanh"],
        "ablation_defs": {"baseline": {}, "tanh": {}},
    }
    code = main(
        [
            "--results",
            str(res),
            "--out",
            str(tmp_path / "out"),
            "--study-json",
            json.dumps(study),
            "--expected",
            str(res / "baseline/seed0/metrics.json"),
            str(missing),
            "--snakemake-report-dir",
            str(tmp_path / "captions"),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["counts"]["completed"] == 1 and summary["counts"]["missing"] == 1
    assert (tmp_path / "captions" / "learning_curves.rst").is_file()
    assert main(["--results", str(res), "--study-json", "{bad"]) == 2


@pytest.mark.parametrize("layout", ["missing", "empty", "no_run_dirs"])
def test_report_cli_rejects_results_without_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, layout: str
) -> None:
    from alexnet_bench.cli import main

    res = tmp_path / "results" / "default"
    if layout != "missing":
        res.mkdir(parents=True)
    if layout == "no_run_dirs":  # stray files and directories that are not <ablation>/seed<N>
        (res / "notes.txt").write_text("x")
        (res / "baseline" / "old").mkdir(parents=True)
    code = main(["report", "--results", str(res), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and str(res) in err[0]
    assert not (tmp_path / "out").exists()


def test_report_of_run_directories_without_completed_runs_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from alexnet_bench.cli import main

    res = tmp_path / "results" / "default"
    (res / "baseline" / "seed0").mkdir(parents=True)  # a job that never finished
    assert main(["report", "--results", str(res), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["counts"]["missing"] == 1 and summary["counts"]["completed"] == 0
    assert (tmp_path / "out" / "index.html").is_file()


def test_add_report_parser_registers_subcommand() -> None:
    import argparse

    from alexnet_bench.reports.cli import add_report_parser, run_report

    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--results", "r", "--out", "o", "--expected", "a", "b"])
    assert args.func is run_report and args.expected == ["a", "b"]
    with pytest.raises(SystemExit), io.StringIO() as _:
        parser.parse_args(["report", "--study-json", "x", "--study-yaml", "y"])


def test_every_figure_and_table_has_a_snakemake_caption(report: dict) -> None:
    from alexnet_bench.reports import output_captions

    captions = output_captions()
    stems = [Path(p).stem for p in report["result"]["figures"] + report["result"]["tables"]]
    assert len(stems) >= 8  # the fixture study renders most figures
    for stem in stems:
        assert captions.get(stem, "").strip(), f"no caption for {stem}"


def test_caption_files_exist() -> None:
    assert captions_dir().is_dir()
    for name in ("learning_curves", "time_to_target", "paper_vs_measured", "ablations_table"):
        assert caption_path(name).read_text().strip()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_no_table_is_wider_than_the_page_at_1280_px(report: dict, tmp_path: Path) -> None:
    """Headless Chromium lays the page out 1280 px wide with every <details> open: no table
    scrolls sideways and the page has no horizontal scroll."""
    probe = (
        "<script>document.querySelectorAll('details').forEach(d => { d.open = true; });"
        "const t = [...document.querySelectorAll('.tablewrap')].map("
        "w => [w.querySelector('table').id, w.scrollWidth, w.clientWidth]);"
        "document.title = 'WIDTHS ' + JSON.stringify({page: document.documentElement.scrollWidth,"
        " view: window.innerWidth, tables: t});</script>"
    )
    page = tmp_path / "index.html"
    page.write_text((report["out"] / "index.html").read_text() + probe)
    dom = subprocess.run(
        [
            shutil.which("chromium") or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,900",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = json.loads(re.search(r"<title>WIDTHS (.*?)</title>", dom).group(1))
    assert found["view"] == 1280 and found["page"] <= 1280, found
    assert len(found["tables"]) >= 8  # findings, claims, accuracy, speed (3), problems, runs
    wide = [(name, sw, cw) for name, sw, cw in found["tables"] if sw > cw or cw == 0]
    assert wide == []


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_headless_chromium_screenshot(report: dict, tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "screenshot_report.sh"
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["bash", str(script), str(report["out"] / "index.html"), str(shot), "1200,1600"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert mpimg.imread(shot).shape[:2] == (1600, 1200)


def test_environment_section_reads_only_keys_the_writer_writes() -> None:
    """The report's environment table reads the record's typed ``environment`` section; every
    field of it must be a key ``collect_environment`` writes, or the row is silently blank."""
    import dataclasses

    from alexnet_bench.runrecord import Environment
    from alexnet_bench.telemetry.environment import collect_environment

    read = {f.name for f in dataclasses.fields(Environment)}
    assert {"torch", "torch_cuda", "driver_version", "timestamp_utc"} <= read
    written = set(collect_environment())
    assert read <= written, sorted(read - written)
