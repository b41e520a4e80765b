"""The paper's claims are data (alexnet_bench/paper_claims.yaml); a study adds or replaces claims in
config.yaml's `claims:` list, validated before any job starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from alexnet_bench.claims import CLAIMS, parse_claims, study_claims
from alexnet_bench.collect import RUN_VALUES, collect, run_value
from alexnet_bench.errors import ConfigError
from alexnet_bench.reports.paper_vs_measured import evaluate
from alexnet_bench.study import check_study
from tests.fixtures_reports import STUDY, build_study_results

from .conftest import REPO

DROPOUT_CLAIM = {
    "id": "dropout_accuracy",
    "statement": "Dropout lowers the validation error",
    "reference": "Sec. 4.2",
    "paper_setting": "ImageNet",
    "paper_source": "imagenet",
    "comparisons": [
        {
            "label": "val top-1 error, no dropout − baseline",
            "metric": "val_top1",
            "kind": "diff",
            "a": ["no_dropout"],
            "b": ["@baseline"],
            "paper_effect": None,
            "paper_text": "higher without dropout",
            "expect": 1,
        }
    ],
}


def test_others_found_are_quoted_with_a_link_and_their_numbers_add_up() -> None:
    """Every independent measurement beside a paper claim names its source with an https link
    and a verbatim quote; where it gives numbers, the effect is a - b (ratio: a / b) of them and
    each number appears in the quote (errors here are 100 - the accuracy quoted)."""
    found = [(cmp, o) for c in CLAIMS for cmp in c.comparisons for o in cmp.others]
    assert {o.url for _, o in found} >= {
        "https://arxiv.org/abs/1409.1556",
        "https://github.com/facebookresearch/pycls/issues/94",
        "https://github.com/ducha-aiki/caffenet-benchmark/blob/master/README.md",
        "https://arxiv.org/abs/1207.0580",
    }
    for cmp, o in found:
        assert o.url.startswith("https://") and o.quote.strip() and o.setting.strip()
        if o.effect is None:
            assert o.a is None and o.b is None
            continue
        assert o.a is not None and o.b is not None
        expected = o.a / o.b if cmp.kind == "ratio" else o.a - o.b
        assert o.effect == pytest.approx(expected, abs=1e-9), o.source
        for x in (o.a, o.b):  # as quoted: the error itself, or 1 - accuracy as a fraction
            shown = {f"{x:g}", f"{(100 - x) / 100:.3f}"}
            assert any(s in o.quote for s in shown), (o.source, x)


def test_the_paper_claims_load_from_their_data_file() -> None:
    assert [c.id for c in CLAIMS] == [
        "relu_vs_tanh",
        "lrn",
        "overlapping_pooling",
        "dropout",
        "pca_lighting",
        "crop_flip",
        "two_gpus",
    ]
    lrn = next(c for c in CLAIMS if c.id == "lrn")
    assert lrn.comparisons[0].a == ("no_lrn",) and lrn.comparisons[0].paper_effect == 1.4


def test_a_claim_in_config_is_evaluated_beside_the_papers(tmp_path: Path) -> None:
    res, _ = build_study_results(tmp_path)
    runs = collect(res)
    study = {**copy.deepcopy(STUDY), "claims": [DROPOUT_CLAIM]}
    rows = evaluate(runs, study, "baseline")
    added = [r for r in rows if r.claim_id == "dropout_accuracy"]
    assert len(added) == 1 and added[0].compared == "no_dropout − baseline"
    assert len(rows) == 1 + sum(len(c.comparisons) for c in CLAIMS)


def test_a_config_claim_replaces_the_paper_claim_of_the_same_id() -> None:
    renamed = copy.deepcopy(DROPOUT_CLAIM)
    renamed["id"] = "lrn"
    renamed["comparisons"][0]["a"] = ["without_lrn"]  # e.g. the LRN ablation renamed
    claims = study_claims({"claims": [renamed]})
    assert [c.id for c in claims] == [c.id for c in CLAIMS]
    assert next(c for c in claims if c.id == "lrn").comparisons[0].a == ("without_lrn",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("comparisons"), "config.yaml claims.0: 'comparisons' is a required"),
        (lambda c: c["comparisons"][0].update(kind="sum"), "claims.0.comparisons.0.kind"),
        (lambda c: c["comparisons"][0].update(metric="val_acc"), "unknown metric 'val_acc'"),
    ],
)
def test_a_malformed_claim_is_one_line_naming_where(change, message: str) -> None:
    claim = copy.deepcopy(DROPOUT_CLAIM)
    change(claim)
    with pytest.raises(ConfigError) as err:
        parse_claims([claim], "config.yaml claims")
    text = str(err.value)
    assert message in text and "\n" not in text


def test_check_study_rejects_a_malformed_claims_block() -> None:
    study = yaml.safe_load((REPO / "config.yaml").read_text())
    check_study(study)  # the repository's study is valid
    study["claims"] = [{"id": "x"}]
    with pytest.raises(ConfigError, match="claims"):
        check_study(study)


def test_every_named_run_value_is_known_to_run_value(tmp_path: Path) -> None:
    res, _ = build_study_results(tmp_path)
    run = next(r for r in collect(res) if r.completed)
    for name in RUN_VALUES:
        run_value(run, name)  # never KeyError
    with pytest.raises(KeyError):
        run_value(run, "not_a_value")
