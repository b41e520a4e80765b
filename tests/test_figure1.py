"""The figure1 study: the four-layer net, epochs to target with censoring (the shared
definition in effects), lr selection on runs read through collect, the paired ratio and its CI,
the summary's schema, the figure1 config block, the CIFAR-10 branch, one seed per job through
the launcher, and the report section."""

from __future__ import annotations

import copy
import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
import yaml

from alexnet_bench.cli import main
from alexnet_bench.collect import load_run
from alexnet_bench.config import RunConfig
from alexnet_bench.effects import Interval, paired, ratio_of_means
from alexnet_bench.effects import time_to_target as epochs_to_target
from alexnet_bench.errors import ConfigError, DataError
from alexnet_bench.figure1.analysis import curve as run_curve
from alexnet_bench.figure1.analysis import lr_score, select_lr
from alexnet_bench.figure1.results import (
    build_summary,
    check_summary,
    chosen_lr,
    explained_record,
    final_dir,
    load_summary,
    selection_record,
    sweep_dir,
)
from alexnet_bench.figure1.settings import Figure1Settings, log_grid
from alexnet_bench.model import build_model
from alexnet_bench.reports import build_report, output_captions
from alexnet_bench.train import run_training

from .conftest import REPO, tiny_run

T975_DF2 = 4.3026527  # Student t, 97.5% quantile, 2 degrees of freedom
STUDY = yaml.safe_load((REPO / "config.yaml").read_text())
TARGET = 0.25
VP, ERA = "variance_preserving", "cuda_convnet"


@pytest.fixture
def block() -> dict:
    """config.yaml's figure1 block with shapes10 data (no auto-detection of a CIFAR directory)."""
    return {**copy.deepcopy(STUDY["figure1"]), "data": "synthetic"}


def curve(t: float, epochs: int, start: float = 0.9) -> list[float]:
    """Training errors that fall linearly from ``start`` and reach TARGET exactly at epoch ``t``."""
    return [max(0.01, start - (start - TARGET) * k / t) for k in range(1, epochs + 1)]


def write_run(
    run_dir: Path,
    errors: list[float],
    lr: float,
    seed: int,
    status: str = "completed",
    source: str = "synthetic",
    val_gap: float = 0.15,
) -> None:
    """A run directory as the training job writes it (only the fields the analysis reads); the
    validation error is the training error + ``val_gap``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "status": status,
        "config": {"train": {"lr": lr, "seed": seed}},
        "data": {"source": source, "num_train": 2000, "image_size": 32},
        "time_to_target": {"target_train_error": TARGET, "error": "train_top1_error"},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with open(run_dir / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "train_loss", "train_top1_error", "val_top1_error"])
        for e, err in enumerate(errors, start=1):
            w.writerow([e, 1.0 if math.isfinite(err) else "nan", err, err + val_gap])


# -- the network --------------------------------------------------------------------------------
def test_layers18pct_shapes_and_parameters() -> None:
    model = build_model({"arch": "layers18pct", "activation": "tanh"}, 10, 32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.classifier.in_features == 64 * 4 * 4  # cuda-convnet pools: 32 -> 16 -> 8 -> 4
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (5, 5), (2, 2)),
        (32, (5, 5), (2, 2)),
        (64, (5, 5), (2, 2)),
    ]
    pools = [type(m).__name__ for m in model.features if "Pool" in type(m).__name__]
    assert pools == ["MaxPool2d", "AvgPool2d", "AvgPool2d"]  # as in layers-18pct.cfg
    assert not any(
        isinstance(m, torch.nn.Dropout) or "LRN" in type(m).__name__ for m in model.modules()
    )
    assert sum(p.numel() for p in model.parameters()) == 2432 + 25632 + 51264 + 10250


def test_both_activations_start_from_the_same_draws_scaled_by_their_gain() -> None:
    torch.manual_seed(3)
    relu = build_model({"arch": "layers18pct", "activation": "relu"}, 10, 32)
    torch.manual_seed(3)
    tanh = build_model({"arch": "layers18pct", "activation": "tanh"}, 10, 32)
    ratio = (5 / 3) / math.sqrt(2)
    for (name, a), (_, b) in zip(relu.named_parameters(), tanh.named_parameters(), strict=True):
        if name.endswith("bias"):
            assert not a.any() and not b.any()
        elif name.startswith("classifier"):
            assert torch.equal(a, b)  # linear output layer: gain 1 in both
        else:
            torch.testing.assert_close(b, a * ratio)
            fan_in = a[0].numel()
            assert abs(a.std().item() * math.sqrt(fan_in) - math.sqrt(2)) < 0.1


#: initW of dnouri/cuda-convnet example-layers/layers-18pct.cfg, read from the file itself
LAYERS_18PCT_INITW = {"conv1": 0.0001, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_paper_init_is_layers_18pct_cfg_initw_for_both_activations(activation: str) -> None:
    torch.manual_seed(5)
    model = build_model({"arch": "layers18pct", "activation": activation, "init": "paper"}, 10, 32)
    layers = model.weight_layers()
    assert list(layers) == list(LAYERS_18PCT_INITW)
    for name, layer in layers.items():
        std, n = layer.weight.std().item(), layer.weight.numel()
        # sample std of n normal draws: relative standard error 1/sqrt(2n); allow 5 of them
        assert abs(std / LAYERS_18PCT_INITW[name] - 1) < 5 / math.sqrt(2 * n), (name, std)
        assert abs(layer.weight.mean().item()) < 5 * LAYERS_18PCT_INITW[name] / math.sqrt(n)
        assert not layer.bias.any()  # layers-18pct.cfg has no initB: biases 0
    assert model.config["init_std"] == LAYERS_18PCT_INITW
    torch.manual_seed(5)
    other = build_model({"arch": "layers18pct", "activation": "relu", "init": "paper"}, 10, 32)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)  # no gain: the two activations start from identical weights


def test_variance_preserving_init_is_unchanged_by_the_init_option() -> None:
    torch.manual_seed(9)
    default = build_model({"arch": "layers18pct", "activation": "tanh"}, 10, 32)
    torch.manual_seed(9)
    auto = build_model({"arch": "layers18pct", "activation": "tanh", "init": "auto"}, 10, 32)
    for a, b in zip(default.parameters(), auto.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="does not apply to model.arch=layers18pct"):
        RunConfig({"model": {"arch": "layers18pct", "init": "lsuv"}})


def test_normalise_mean_feeds_pixels_minus_the_mean_on_the_0_255_scale() -> None:
    """cuda-convnet's CIFAR provider: data - data_mean on raw pixels, no division."""
    from alexnet_bench.data import build_data

    base = {
        "data": {
            "source": "synthetic",
            "num_train": 64,
            "num_val": 32,
            "image_size": 32,
            "stored_size": 32,
        },
        "augment": {"crop_flip": False, "pca_lighting": False},
        "train": {"batch_size": 32},
        "runtime": {"device": "cpu"},
    }
    std_units = build_data(RunConfig(base), torch.device("cpu"))
    raw = build_data(
        RunConfig({**base, "data": {**base["data"], "normalise": "mean"}}), torch.device("cpu")
    )
    images, _ = next(iter(raw.val))
    x = raw.augment(images, train=False)
    mean255 = 255 * std_units.augment.mean
    torch.testing.assert_close(x, images.float() - mean255, atol=1e-3, rtol=0)
    y = std_units.augment(images, train=False)
    assert 0.5 < y.std().item() < 2 and x.std().item() > 20  # unit variance vs pixel units
    assert "normalise" not in RunConfig(base).to_dict()["data"]  # absent: old hashes stay valid


def test_alexnet_keys_still_build_alexnet_and_model_split_is_rejected() -> None:
    assert type(build_model({"activation": "tanh"}, 10, 32)).__name__ == "AlexNet"
    with pytest.raises(ConfigError, match="runtime.parallel=model"):
        RunConfig(tiny_run(model={"arch": "layers18pct"}, runtime={"gpus": 2, "parallel": "model"}))
    assert "arch" not in RunConfig(tiny_run()).to_dict()["model"]  # old config hashes unchanged


def test_stop_at_target_ends_the_run_after_the_first_epoch_below_it(tmp_path: Path) -> None:
    cfg = RunConfig(
        tiny_run(
            model={"arch": "layers18pct"},
            train={"epochs": 4, "target_train_error": 0.999, "stop_at_target": True},
        )
    )
    metrics = run_training(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    assert metrics["time_to_target"]["epoch"] == 1
    assert metrics["model"]["arch"] == "layers18pct"


# -- epochs to target and censoring -------------------------------------------------------------
def test_epochs_to_target_interpolates_between_epoch_ends() -> None:
    c = epochs_to_target([0.9, 0.5, 0.2, 0.1], TARGET)
    assert c.kind == "reached" and c.first_epoch == 3
    assert c.value == pytest.approx(2 + 0.25 / 0.3) and c.text() == "2.8"
    assert epochs_to_target([0.9, 0.25, 0.1], TARGET).value == pytest.approx(2.0)  # on the line


def test_runs_that_never_reach_the_target_are_censored_not_invented() -> None:
    never = epochs_to_target([0.9, 0.8, 0.7], TARGET)
    assert never.kind == "right-censored" and never.value is None
    assert (never.lower, never.upper, never.text()) == (3.0, math.inf, "> 3")
    assert never.score == math.inf
    first = epochs_to_target([0.2, 0.1], TARGET)
    assert first.kind == "left-censored" and first.value is None
    assert (first.lower, first.upper, first.text()) == (0.0, 1.0, "≤ 1")


def test_a_diverged_run_counts_only_its_finite_epochs(tmp_path: Path) -> None:
    write_run(tmp_path / "r", [0.9, 0.6, math.nan], lr=0.1, seed=1, status="diverged")
    r = load_run(tmp_path / "r" / "metrics.json")
    assert run_curve(r) == [0.9, 0.6] and r.ttt_epochs.text() == "> 2"
    write_run(tmp_path / "f", [], lr=0.1, seed=1, status="failed")
    assert load_run(tmp_path / "f" / "metrics.json").ttt_epochs.kind == "no data"
    assert load_run(tmp_path / "absent" / "metrics.json").status == "missing"


# -- learning-rate selection on hand-made histories ---------------------------------------------
def _points(tmp_path: Path, spec: dict[float, list[float | None]], epochs: int = 12) -> dict:
    """Sweep runs per lr: a crossing epoch per seed (None = never reaches the target)."""
    points = {}
    for lr, crossings in spec.items():
        runs = []
        for seed, t in enumerate(crossings):
            errors = curve(t, epochs) if t is not None else [0.9 - 0.01 * k for k in range(epochs)]
            write_run(tmp_path / f"lr{lr}" / f"seed{seed}", errors, lr, seed)
            runs.append(load_run(tmp_path / f"lr{lr}" / f"seed{seed}" / "metrics.json"))
        points[lr] = runs
    return points


def test_selection_takes_the_lowest_median_and_a_never_counts_as_infinite(tmp_path: Path) -> None:
    points = _points(tmp_path, {0.001: [None, None], 0.01: [6.0, 8.0], 0.1: [3.0, None]})
    assert lr_score(points[0.1]) == math.inf  # one seed never reached: median of 2 is inf
    choice = select_lr(points)
    assert choice.lr == 0.01 and choice.score == pytest.approx(7.0)
    assert choice.reached and choice.edge is None


def test_selection_ties_go_to_the_smaller_rate_and_edges_are_flagged(tmp_path: Path) -> None:
    tie = select_lr(_points(tmp_path / "a", {0.01: [5.0, 7.0], 0.03: [6.0, 6.0], 0.1: [9.0, 9.0]}))
    assert tie.lr == 0.01 and tie.edge == "smallest"
    top = select_lr(_points(tmp_path / "b", {0.01: [9.0, 9.0], 0.03: [8.0, 8.0], 0.1: [4.0, 5.0]}))
    assert top.lr == 0.1 and top.edge == "largest"


def test_selection_with_three_seeds_uses_the_median(tmp_path: Path) -> None:
    points = _points(tmp_path, {0.01: [4.0, 5.0, None], 0.03: [5.5, 5.5, 5.5], 0.1: [9.0, 9.0, 9]})
    assert select_lr(points).lr == 0.01  # median 5.0 despite one censored seed


def test_selection_when_no_rate_reaches_the_target_is_flagged(tmp_path: Path) -> None:
    points = {}
    for lr in (0.01, 0.03, 0.1):  # nobody reaches 25%; 0.03 ends lowest
        end = 0.3 if lr == 0.03 else 0.5
        for seed in (0, 1):
            write_run(tmp_path / f"lr{lr}" / f"seed{seed}", [0.9, 0.7, end], lr, seed)
        points[lr] = [load_run(tmp_path / f"lr{lr}" / f"seed{s}" / "metrics.json") for s in (0, 1)]
    choice = select_lr(points)
    assert not choice.reached and choice.lr == 0.03 and math.isinf(choice.score)


# -- the paired ratio and its CI ----------------------------------------------------------------
def _crossings(values: list[float | None], epochs: int = 14) -> dict:
    return {
        200 + i: epochs_to_target(curve(t, epochs) if t else [0.9] * epochs, TARGET)
        for i, t in enumerate(values)
    }


def test_ratio_is_the_geometric_mean_of_paired_seeds_with_a_t_interval() -> None:
    r = paired(_crossings([10.0, 10.0, 9.0]), _crossings([4.0, 5.0, 6.0]), ratio=True)
    logs = [math.log(10 / 4), math.log(10 / 5), math.log(9 / 6)]
    mean, half = statistics.fmean(logs), T975_DF2 * statistics.stdev(logs) / math.sqrt(3)
    assert r.kind == "estimate" and r.n == 3 and r.seeds == (200, 201, 202)
    assert r.value == pytest.approx(math.prod([2.5, 2.0, 1.5]) ** (1 / 3))
    assert r.ci_low == pytest.approx(math.exp(mean - half), rel=1e-6)
    assert r.ci_high == pytest.approx(math.exp(mean + half), rel=1e-6)
    assert r.text().endswith("(paired, n=3)") and r.ci_low < r.value < r.ci_high


def test_ratio_with_a_censored_seed_is_only_a_bound() -> None:
    tanh = _crossings([10.0, None, 9.0])
    lower = paired(tanh, _crossings([4.0, 5.0, 6.0]), ratio=True)
    assert lower.kind == "lower bound" and lower.ci_low is None
    assert lower.value == pytest.approx((2.5 * (14 / 5) * 1.5) ** (1 / 3))  # tanh seed: > 14
    assert lower.text().startswith("> ") and lower.censored == (201,)
    assert "seed 201" in lower.text()
    upper = paired(_crossings([10.0, 10.0, 9.0]), _crossings([4.0, None, 6.0]), ratio=True)
    assert upper.kind == "upper bound" and upper.value == pytest.approx(
        (2.5 * 10 / 14 * 1.5) ** (1 / 3)
    )
    both = paired(tanh, _crossings([None, 5.0, 6.0]), ratio=True)
    assert both.kind == "n/a" and both.value is None


def test_ratio_leaves_out_seeds_without_data_in_both_arms() -> None:
    relu, tanh = _crossings([4.0, 5.0]), _crossings([8.0, 10.0, 9.0])
    r = paired(tanh, relu, ratio=True)
    assert r.n == 2 and r.value == pytest.approx(2.0) and r.unpaired == (202,)
    assert paired({}, {}, ratio=True).kind == "n/a"


# -- the figure1 config block ---------------------------------------------------------------------
def test_config_block_expands_to_the_protocol(block: dict) -> None:
    s = Figure1Settings.from_config(block)
    assert s.inits == ("variance_preserving", "cuda_convnet")
    assert s.data == "synthetic" and all(len(g) >= 3 for i in s.inits for g in s.grids[i].values())
    assert s.epochs == {VP: 14, ERA: 40}
    vp = s.grids["variance_preserving"]
    sweep = RunConfig(s.run_config("variance_preserving", "tanh", vp["tanh"][1], seed=100))
    assert sweep.model.arch == "layers18pct" and sweep.model.activation == "tanh"
    assert sweep.model.init == "auto" and sweep.data.normalise is None
    assert sweep.train.weight_decay == 0 and sweep.train.lr_schedule == "constant"
    assert not sweep.augment.crop_flip and not sweep.augment.pca_lighting
    assert sweep.train.stop_at_target and sweep.train.target_train_error == 0.25
    final = RunConfig(s.run_config("variance_preserving", "relu", 0.01, seed=200))
    assert final.train.stop_at_target and final.data.num_train == block["train_images"]
    assert final.train.epochs == 14
    era = RunConfig(s.run_config("cuda_convnet", "relu", 0.001, seed=200))
    assert era.model.init == "paper" and era.data.normalise == "mean" and era.train.epochs == 40
    # apart from the init rule, the two inits' runs are the same protocol
    a = s.run_config("variance_preserving", "relu", 0.001, seed=200)
    b = s.run_config("cuda_convnet", "relu", 0.001, seed=200)
    b["model"].pop("init"), b["data"].pop("normalise")
    assert a == {**b, "train": {**b["train"], "epochs": 14}}
    assert s.lr_for("variance_preserving", "relu", "0.01") == 0.01
    with pytest.raises(ConfigError, match="not on the figure1 grid of variance_preserving/relu"):
        s.lr_for("variance_preserving", "relu", "0.7")


def test_log_grid_is_log_spaced_and_rounded() -> None:
    assert log_grid(0.001, 0.1, 5) == (0.001, 0.00316, 0.01, 0.0316, 0.1)
    with pytest.raises(ConfigError, match="repeats"):
        log_grid(0.01, 0.01001, 6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"final_seeds": [100, 200, 201]}, "also appear in sweep_seeds"),
        ({"final_seeds": [200, 201]}, ">= 3 distinct final_seeds"),
        (
            {
                "inits": {
                    VP: {
                        "epochs": 14,
                        "lr_grid": {
                            "relu": {"min": 0.01, "max": 0.1, "num": 2},
                            "tanh": {"min": 0.01, "max": 0.1, "num": 5},
                        },
                    }
                }
            },
            "figure1.inits.variance_preserving.lr_grid.relu.num must be >= 3",
        ),
        (
            {
                "inits": {
                    VP: {
                        "epochs": 14,
                        "lr_grid": {
                            "relu": {"min": 0.1, "max": 0.01, "num": 5},
                            "tanh": {"min": 0.01, "max": 0.1, "num": 5},
                        },
                    }
                }
            },
            "min must be below max",
        ),
        (
            {
                "inits": {
                    VP: {"epochs": 14, "lr_grid": {"relu": {"min": 0.01, "max": 0.1, "num": 5}}}
                }
            },
            "figure1.inits.variance_preserving.lr_grid needs exactly the keys relu and tanh",
        ),
        ({"inits": {VP: {"lr_grid": {}}}}, "figure1.inits.variance_preserving.epochs is missing"),
        ({"inits": {"xavier": {}}}, "figure1.inits must map"),
        ({"inits": {}}, "figure1.inits must map"),
        ({"run": {"model": {"init": "paper"}}}, "figure1.run.model.init is fixed"),
        ({"run": {"data": {"normalise": "mean"}}}, "figure1.run.data.normalise is fixed"),
        ({"run": {"train": {"weight_decay": 0.0005}}}, "figure1.run.train.weight_decay is fixed"),
        ({"run": {"augment": {"crop_flip": True}}}, "figure1.run.augment.crop_flip is fixed"),
        ({"run": {"runtime": {"amp": "fp8"}}}, "runtime.amp"),
        ({"batch_size": 4000}, "batch_size"),
        ({"train_images": None}, "train_images must be a number"),
        ({"data": "cifar10", "cifar10_root": "/nowhere/cifar"}, "does not exist"),
    ],
)
def test_bad_config_blocks_fail_with_one_line(block: dict, change: dict, message: str) -> None:
    with pytest.raises((ConfigError, DataError), match=message) as info:
        Figure1Settings.from_config({**block, **change})
    assert "\n" not in str(info.value)


def test_workflow_schema_validates_the_figure1_block() -> None:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.validate(STUDY, schema)
    era = STUDY["figure1"]["inits"][ERA]
    for bad in (
        {"sweep_seeds": []},
        {"final_seeds": [1, 1, 2]},
        {"typo": 1},
        {"data": "imagenet"},
        {"inits": {"xavier": era}},
        {"inits": {}},
        {"inits": {ERA: {**era, "epochs": 0}}},
        {"inits": {ERA: {"epochs": 3}}},
        {"inits": {ERA: {**era, "lr_grid": {"relu": {"min": 0.1, "max": 1, "num": 3}}}}},
        {"epochs": 14},
    ):
        study = copy.deepcopy(STUDY)
        study["figure1"].update(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(study, schema)


# -- the CIFAR-10 branch --------------------------------------------------------------------------
def test_cifar10_is_used_when_its_directory_exists(
    block: dict, cifar_dir: Path, tmp_path: Path
) -> None:
    block.update(
        data="auto",
        cifar10_root="cifar-10-batches-py",
        train_images=60,
        val_images=10,
        batch_size=20,
    )
    block["inits"]["cuda_convnet"]["epochs"] = 1
    s = Figure1Settings.from_config(block, base_dir=cifar_dir.parent)
    assert s.data == "cifar10"
    assert Figure1Settings.from_config(block, base_dir=tmp_path / "elsewhere").data == "synthetic"
    cfg = s.run_config("cuda_convnet", "tanh", 0.01)
    cfg["data"]["root"] = str(cifar_dir)
    cfg["runtime"] = {"device": "cpu", "threads": 1}
    cfg["train"]["collapse_check"] = False  # random fake CIFAR pixels cannot be learned
    out = tmp_path / "final" / "tanh" / "seed200"
    assert (
        main(
            [
                "figure1",
                "train",
                "--config-json",
                json.dumps(cfg),
                "--seed",
                "200",
                "--out",
                str(out),
                "--label",
                "stage=final",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["source"] == "cifar10" and metrics["data"]["num_train"] == 60
    assert metrics["model"]["arch"] == "layers18pct" and metrics["status"] == "completed"
    assert metrics["config"]["model"]["init"] == "paper"
    assert metrics["config"]["data"]["normalise"] == "mean"
    assert metrics["run"] == {"seed": 200, "lr": 0.01, "stage": "final"}


def test_figure1_train_is_one_seed_launched_like_any_cell(tmp_path: Path) -> None:
    """A user error of the seed is recorded as a failed cell (launch.train_cell), and the
    learning rate of a final run comes from the selection."""
    (tmp_path / "selection.json").write_text(json.dumps({"chosen": {"tanh": {"lr": 0.02}}}))
    bad = {"model": {"arch": "layers18pct"}, "train": {"batch_size": 10_000}}
    out = tmp_path / "final" / "tanh" / "seed200"
    args = [
        "figure1",
        "train",
        "--config-json",
        json.dumps(bad),
        "--seed",
        "200",
        "--out",
        str(out),
        "--lr-from",
        str(tmp_path / "selection.json"),
        "--activation",
        "tanh",
    ]
    assert main(args) == 2 and not (out / "metrics.json").exists()
    assert main([*args, "--record-failures"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed" and "batch_size" in record["reason"]
    assert record["config"] is None
    assert main([*args[:-2], "--record-failures"]) == 2  # --lr-from needs --activation


# -- summary, outputs and the study report --------------------------------------------------------
def _study_tree(
    root: Path,
    s: Figure1Settings,
    finals: dict[str, dict[str, list[float]]],
    source: str = "synthetic",
    val_gap: float = 0.15,
) -> None:
    """Per init: sweep (fastest at the middle rate, the smallest never reaching the target) and
    final runs with the given crossings."""
    for init, arms in finals.items():
        cap = s.epochs[init]
        for act, crossings in arms.items():
            grid = s.grids[init][act]
            mid = len(grid) // 2
            for i, lr in enumerate(grid):
                t = 6.0 + abs(i - mid) * 2.0 if i else None
                for seed in s.sweep_seeds:
                    errors = curve(t, cap) if t else [0.9] * cap
                    write_run(sweep_dir(root, init, act, lr) / f"seed{seed}", errors, lr, seed)
            for seed, t in zip(s.final_seeds, crossings, strict=True):
                write_run(
                    final_dir(root, init, act) / f"seed{seed}",
                    curve(t, cap),
                    grid[mid],
                    seed,
                    source=source,
                    val_gap=val_gap,
                )


FINALS = {
    VP: {"relu": [4.0, 5.0, 6.0], "tanh": [10.0, 10.0, 9.0]},
    ERA: {"relu": [4.0, 4.0, 5.0], "tanh": [12.0, 13.0, 10.0]},
}


def test_summary_and_report_section(block: dict, tmp_path: Path) -> None:
    s = Figure1Settings.from_config(block)
    root = tmp_path / "results" / "figure1"
    _study_tree(root, s, FINALS)
    for init in s.inits:
        record = selection_record(root, s, init)
        assert record["init"] == init
        assert {a: c["lr"] for a, c in record["chosen"].items()} == {
            a: s.grids[init][a][len(s.grids[init][a]) // 2] for a in ("relu", "tanh")
        }
        assert [r["chosen"] for r in record["sweep"]].count(True) == 2
        assert record["chosen"]["relu"]["edge"] is None
        (root / init / "selection.json").write_text(json.dumps(record))
        assert chosen_lr(root / init / "selection.json", "tanh") == record["chosen"]["tanh"]["lr"]

    summary = build_summary(root, s)
    vp_ratio = (10 / 4 * 10 / 5 * 9 / 6) ** (1 / 3)
    era_ratio = (12 / 4 * 13 / 4 * 10 / 5) ** (1 / 3)
    assert summary["inits"][VP]["ratio"]["kind"] == "estimate"
    assert summary["inits"][VP]["ratio"]["value"] == pytest.approx(vp_ratio)
    assert summary["inits"][ERA]["ratio"]["value"] == pytest.approx(era_ratio)
    # the interaction: paired ratio of the per-seed ratios, with its own t-interval
    it = summary["interaction"]
    per_seed = [
        math.log((12 / 4) / (10 / 4)),
        math.log((13 / 4) / (10 / 5)),
        math.log((10 / 5) / (9 / 6)),
    ]
    m, sd = statistics.fmean(per_seed), statistics.stdev(per_seed)
    assert it["kind"] == "estimate" and it["value"] == pytest.approx(era_ratio / vp_ratio)
    assert it["ci95_low"] == pytest.approx(math.exp(m - T975_DF2 * sd / math.sqrt(3)))
    assert it["ci95_high"] == pytest.approx(math.exp(m + T975_DF2 * sd / math.sqrt(3)))
    share = 100 * math.log(era_ratio / vp_ratio) / math.log(6 / vp_ratio)
    assert f"{share:.0f}% (95% CI" in summary["init_explains"]
    # its interval carries the variance-preserving ratio's uncertainty: Fieller over the seeds,
    # x = log(interaction), y = log(6 / variance-preserving ratio) per seed
    vp_seed = [10 / 4, 10 / 5, 9 / 6]
    x = dict(enumerate(per_seed))
    y = {i: math.log(6 / r) for i, r in enumerate(vp_seed)}
    f = ratio_of_means(x, y)
    explained = summary["explained"]
    assert (explained["kind"], explained["n"], explained["seeds"]) == (
        "estimate",
        3,
        [200, 201, 202],
    )
    assert explained["value"] == pytest.approx(share) == pytest.approx(100 * f.value)
    assert explained["ci95_low"] == pytest.approx(100 * f.ci_low)
    assert explained["ci95_high"] == pytest.approx(100 * f.ci_high)
    assert explained["text"] == summary["init_explains"] and "Fieller" in explained["method"]
    assert (
        f"(95% CI {100 * f.ci_low:.0f}% to {100 * f.ci_high:.0f}%, Fieller over 3 paired seeds)"
        in summary["init_explains"]
    )
    assert summary["paper_era_init"] == ERA
    # data regime: every fake run's validation error is 15 points above its training error
    assert summary["inits"][VP]["gap_at_target"]["relu"] == pytest.approx(0.15)
    assert summary["data_regime"]["met"] is False and "+15.0" in summary["data_regime"]["text"]
    for init in s.inits:
        checks = summary["inits"][init]["checks"]
        assert len(checks) == 8 and all(c["ok"] for c in checks), checks
        assert all(c["check"].startswith(f"{init} ") for c in checks)
    assert {(r["init"], r["activation"]) for r in summary["final"]} == {
        (i, a) for i in s.inits for a in ("relu", "tanh")
    }
    assert summary["data"]["source"] == "synthetic"
    (root / "summary.json").write_text(json.dumps(summary))
    assert load_summary(root / "summary.json") == summary  # it follows its schema
    broken = copy.deepcopy(summary)
    broken["inits"][VP]["ratio"]["kind"] = "guess"
    with pytest.raises(ConfigError, match="figure1_summary.schema.yaml at inits.variance_"):
        check_summary(broken)

    out = tmp_path / "reports"
    info = build_report(tmp_path / "results" / "default", out, figure1_dir=root)
    # the paper-vs-measured row: the paper-era init's ratio (the paper's setting), VP beside it
    assert info["figure1"].startswith(f"{era_ratio:.2f}×")
    assert f"variance-preserving init: {vp_ratio:.2f}×" in info["figure1"]
    captions = output_captions()
    for stem in ("figure1_cnn", "figure1_sweep", "figure1_final"):
        assert any(Path(p).stem == stem for p in info["figures"] + info["tables"]), stem
        assert "Figure 1" in captions[stem]
    page = (out / "index.html").read_text()
    assert 'id="figure1"' in page and "Figure 1 study" in page and "shapes10" in page
    assert "paper-era init" in page and "interaction" in page
    assert (out / "figures" / "figure1_cnn.png").read_bytes().startswith(b"\x89PNG")
    with open(out / "tables" / "paper_vs_measured.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "figure1_epochs_to_target"]
    assert len(rows) == 1 and rows[0]["claim_id"] == "relu_vs_tanh"
    assert float(rows[0]["measured_effect"]) == pytest.approx(era_ratio)
    assert rows[0]["same_direction"] == "yes" and rows[0]["ci95_excludes_null"] in ("yes", "no")
    assert "not CIFAR-10" in rows[0]["caveats"]
    with open(out / "tables" / "figure1_final.csv", newline="") as fh:
        assert {r["init"] for r in csv.DictReader(fh)} == set(s.inits)
    with open(out / "tables" / "forest.csv", newline="") as fh:  # the first figure's row
        forest = [r for r in csv.DictReader(fh) if r["panel"] == "figure1_epochs_to_target"]
    row = "figure1 tanh / figure1 ReLU"
    assert [(r["row"], r["mark"]) for r in forest] == [(row, "measured"), (row, "paper")]
    assert float(forest[0]["value"]) == pytest.approx(era_ratio)
    assert float(forest[1]["value"]) == pytest.approx(6.0)
    md = (out / "summary.md").read_text()
    assert "## Figure 1 study" in md and "Learning-rate sweeps" in md

    (root / "summary.json").unlink()  # results gone: section and files go, a note says why
    build_report(tmp_path / "results" / "default", out, figure1_dir=root)
    assert 'id="figure1"' not in (out / "index.html").read_text()
    assert "snakemake --cores all figure1" in (out / "index.html").read_text()
    assert not (out / "figures" / "figure1_cnn.png").exists()


def test_summary_flags_censored_final_runs_and_edge_choices(block: dict, tmp_path: Path) -> None:
    s = Figure1Settings.from_config(block)
    root = tmp_path / "figure1"
    _study_tree(root, s, FINALS, source="cifar10")
    grid, cap = s.grids[ERA]["tanh"], s.epochs[ERA]
    for seed in s.sweep_seeds:  # the paper-era tanh's largest rate is the fastest: an edge
        write_run(
            sweep_dir(root, ERA, "tanh", grid[-1]) / f"seed{seed}", curve(3.0, cap), grid[-1], seed
        )
    write_run(final_dir(root, ERA, "tanh") / "seed201", [0.9] * cap, grid[1], 201)
    summary = build_summary(root, s)
    assert all(c["ok"] for c in summary["inits"][VP]["checks"])  # per init
    failed = {c["check"]: c["detail"] for c in summary["inits"][ERA]["checks"] if not c["ok"]}
    assert (
        "widen figure1.inits.cuda_convnet.lr_grid.tanh"
        in failed["cuda_convnet tanh: chosen rate inside the grid (the optimum is bracketed)"]
    )
    assert (
        f"seed 201: > {cap}"
        in failed["cuda_convnet tanh: every final run reached the target (no censoring)"]
    )
    assert "final runs used" in failed["cuda_convnet tanh: final runs used the selected rate"]
    era = summary["inits"][ERA]["ratio"]
    assert era["kind"] == "lower bound" and summary["data"]["source"] == "cifar10"
    # a censored seed makes the interaction a bound too, and the sentence says so
    assert (
        summary["interaction"]["kind"] == "lower bound"
        and 201 in summary["interaction"]["censored"]
    )
    assert "at least" in summary["init_explains"]


def test_one_init_alone_has_no_interaction(block: dict, tmp_path: Path) -> None:
    s = Figure1Settings.from_config({**block, "inits": {VP: block["inits"][VP]}})
    root = tmp_path / "figure1"
    _study_tree(root, s, {VP: FINALS[VP]}, val_gap=0.05)
    summary = check_summary(build_summary(root, s))
    assert summary["data_regime"]["met"] is True
    with pytest.raises(ConfigError, match="init 'cuda_convnet' is not in figure1.inits"):
        s.run_config(ERA, "relu", 0.01)  # an init that is not run has no protocol
    assert list(summary["inits"]) == [VP] and summary["paper_era_init"] is None
    assert summary["interaction"]["kind"] == "n/a" and "Not measured" in summary["init_explains"]
    from alexnet_bench.reports.figure1_view import claim_row

    row = claim_row(summary)
    assert row.measured == summary["inits"][VP]["ratio"]["text"]


def _record(p: Any) -> dict:
    """The summary's record of a paired ratio (the fields explained_record reads)."""
    keys = ("kind", "value", "ci_low", "ci_high", "n")
    out = {k.replace("ci_", "ci95_"): getattr(p, k) for k in keys}
    return {**out, "text": p.text(), "seeds": list(p.seeds)}


def _explained(era: dict[int, float], vp: dict[int, float]) -> dict:
    """explained_record of fabricated per-seed tanh / ReLU ratios of the two inits."""
    ones = dict.fromkeys(vp, 1.0)
    ratios = {VP: _record(paired(vp, ones, ratio=True)), ERA: _record(paired(era, ones, True))}
    interaction = _record(paired(era, vp, ratio=True))
    per_seed = {
        init: {s: Interval(r, r) for s, r in values.items()}
        for init, values in ((VP, vp), (ERA, era))
    }
    return {**explained_record(ratios, interaction, per_seed), "interaction": interaction}


def test_the_explained_share_carries_the_variance_preserving_ratios_uncertainty() -> None:
    """Same per-seed interactions (2x, spread 0.1 on the log), once with a variance-preserving
    ratio of exactly 1 in every seed and once with a noisy one of the same geometric mean (its
    log deviations orthogonal to the interaction's): the share is the same, its interval wider."""
    d, e = 0.1, 0.15
    log_it = {s: math.log(2) + d * k for s, k in zip((0, 1, 2), (-1, 0, 1), strict=True)}
    log_vp = {s: e * k for s, k in zip((0, 1, 2), (1, -2, 1), strict=True)}
    fixed = _explained({s: math.exp(x) for s, x in log_it.items()}, dict.fromkeys(log_it, 1.0))
    noisy = _explained(
        {s: math.exp(log_it[s] + log_vp[s]) for s in log_it},
        {s: math.exp(v) for s, v in log_vp.items()},
    )
    # by hand, a known ratio (1 in every seed): the interaction's t-interval over log 6
    # (the former method): (log 2 +- t(2) * d / sqrt 3) / log 6
    share, half = math.log(2) / math.log(6), T975_DF2 * d / math.sqrt(3)
    assert fixed["value"] == pytest.approx(100 * share)
    assert fixed["ci95_low"] == pytest.approx(100 * (math.log(2) - half) / math.log(6), rel=1e-6)
    assert fixed["ci95_high"] == pytest.approx(100 * (math.log(2) + half) / math.log(6), rel=1e-6)
    assert fixed["ci95_low"] == pytest.approx(24.82, abs=0.01)
    assert fixed["ci95_high"] == pytest.approx(52.55, abs=0.01)
    it = fixed["interaction"]
    assert fixed["ci95_low"] == pytest.approx(100 * math.log(it["ci95_low"]) / math.log(6))
    # by hand, the noisy ratio: Fieller with s_xx = d^2, s_yy = 3 e^2, s_xy = 0 (orthogonal):
    # theta = (b +- sqrt(b^2 - a c)) / a, a = y^2 - q s_yy, b = x y, c = x^2 - q s_xx
    x, y, q = math.log(2), math.log(6), T975_DF2**2 / 3
    a, b, c = y * y - q * 3 * e * e, x * y, x * x - q * d * d
    root = math.sqrt(b * b - a * c)
    assert noisy["value"] == pytest.approx(100 * share)
    assert noisy["ci95_low"] == pytest.approx(100 * (b - root) / a, rel=1e-6)
    assert noisy["ci95_high"] == pytest.approx(100 * (b + root) / a, rel=1e-6)
    assert noisy["ci95_low"] < fixed["ci95_low"] - 1 and noisy["ci95_high"] > fixed["ci95_high"] + 1
    assert "Fieller over 3 paired seeds" in noisy["text"]
