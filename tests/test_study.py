"""The study grid: config.yaml resolves to valid run configs; bad studies fail fast."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from alexnet_bench.errors import ConfigError, DataError
from alexnet_bench.study import cells, check_study, family_ablations, resolve_run

from .conftest import REPO


@pytest.fixture
def study() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_every_cell_of_every_synthetic_preset_resolves(study: dict) -> None:
    for preset in ("default", "tiny"):
        study["preset"] = preset
        check_study(study)
        for ablation, seed in cells(study):
            cfg = resolve_run(study, preset, ablation, seed)
            assert cfg.train.seed == seed


def test_ablations_differ_from_baseline_only_where_defined(study: dict) -> None:
    base = resolve_run(study, "default", "baseline", 0).to_dict()
    tanh = resolve_run(study, "default", "tanh", 0).to_dict()
    assert tanh["model"]["activation"] == "tanh"
    tanh["model"]["activation"] = base["model"]["activation"]
    assert tanh == base
    assert resolve_run(study, "default", "gpus2", 1).runtime.gpus == 2


def test_unknown_ablation_and_preset_fail_fast(study: dict) -> None:
    bad = copy.deepcopy(study)
    bad["ablations"].append("no_relu")
    with pytest.raises(ConfigError, match="unknown ablation 'no_relu'"):
        check_study(bad)
    bad = copy.deepcopy(study)
    bad["preset"] = "huge"
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        check_study(bad)


def test_bad_override_names_the_cell_and_key(study: dict) -> None:
    study["ablation_defs"]["tanh"]["overrides"] = {"model": {"activation": "tanhh"}}
    with pytest.raises(ConfigError, match="ablation 'tanh'.*model.activation"):
        check_study(study)


def test_missing_data_directory_fails_before_any_job(study: dict, tmp_path: Path) -> None:
    study["preset"] = "cifar10"
    with pytest.raises(
        DataError, match="data directory 'data/cifar-10-batches-py'.*does not exist"
    ):
        check_study(study, base_dir=tmp_path)


def test_family_targets(study: dict) -> None:
    assert family_ablations(study, "lrn") == ["baseline", "no_lrn"]
    assert family_ablations(study, "augmentation") == [
        "baseline",
        "no_crop_flip",
        "no_pca_lighting",
    ]
