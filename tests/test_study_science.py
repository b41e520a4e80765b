"""What makes the study's numbers trustworthy: fair arms, the collapse detector, paired
statistics, the MFU bound, time to target and the calibration criteria."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from alexnet_bench.calibration import choose, load_candidates
from alexnet_bench.collect import collect
from alexnet_bench.config import RunConfig
from alexnet_bench.diagnostics import activation_health
from alexnet_bench.effects import paired
from alexnet_bench.lsuv import unit_variance_init
from alexnet_bench.metrics import collapse_reason, time_to_target
from alexnet_bench.model import CONV_INDICES, AlexNet
from alexnet_bench.record import flops_record
from alexnet_bench.reports.paper_vs_measured import evaluate
from alexnet_bench.reports.study_input import normalize_study
from alexnet_bench.telemetry.peak import cpu_peak_for
from alexnet_bench.train import Trainer, build_optimizer, build_scheduler, step_scheduler

from .conftest import tiny_run
from .fixtures_reports import STUDY, write_run

LN10 = math.log(10)


def _rows(losses: list[float], vals: list[float], train_errors: list[float] | None = None):
    errors = train_errors or [0.5] * len(losses)
    return [
        {
            "epoch": i + 1,
            "train_loss": loss,
            "train_top1_error": err,
            "val_top1_error": val,
            "elapsed_s": 10.0 * (i + 1),
        }
        for i, (loss, val, err) in enumerate(zip(losses, vals, errors, strict=True))
    ]


# -- collapse detector -------------------------------------------------------------------------
def test_collapse_detector_flags_runs_stuck_at_chance() -> None:
    # no_lrn seed 1 of the old default: loss ln(10) from epoch 2 on, val error 0.90
    stuck = _rows([2.9, LN10, LN10 + 1e-5, LN10], [0.9, 0.9, 0.9, 0.9])
    assert "training loss stayed at ln(10)" in collapse_reason(stuck, 10)
    # loss not at ln(10) (an unbalanced constant guess) but predictions at chance
    at_chance = _rows([2.1, 2.0], [0.70, 0.89])
    assert "validation top-1 error 0.890 is at chance" in collapse_reason(at_chance, 10)
    # a single epoch's mean loss near ln(10) is a run starting to learn, not a collapse
    assert collapse_reason(_rows([2.294], [0.73]), 10) is None
    # learning runs, slow or fast
    assert collapse_reason(_rows([2.33, 2.18, 1.98], [0.85, 0.79, 0.72]), 10) is None
    assert collapse_reason(_rows([1.0, 0.5], [0.3, 0.1]), 10) is None
    # two classes: chance is 0.5 error and ln 2
    assert collapse_reason(_rows([math.log(2), math.log(2)], [0.3, 0.3]), 2) is not None


# the stubbed epochs take no optimizer step, so torch warns about the scheduler's step
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`:UserWarning")
def test_collapsed_run_gets_its_own_status(tmp_path: Path, monkeypatch) -> None:
    """A run whose loss stays at ln(C) ends as 'collapsed', with the reason, not 'completed'."""
    from alexnet_bench import train as train_mod

    monkeypatch.setattr(
        train_mod.Trainer,
        "train_epoch",
        lambda self, epoch: train_mod.EpochStats(LN10, 0.9, None, 160, 0.1),
    )
    cfg = RunConfig(tiny_run(train={"epochs": 2, "checkpoint": False, "collapse_check": True}))
    metrics = train_mod.run_training(cfg, tmp_path)
    assert metrics["status"] == "collapsed"
    assert "did not learn" in metrics["reason"]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "collapsed"


# -- time to target ----------------------------------------------------------------------------
def test_time_to_target_interpolates_between_epochs() -> None:
    history = _rows([2.0, 1.5, 1.0], [0.5, 0.4, 0.3], train_errors=[0.8, 0.4, 0.2])
    ttt = time_to_target(history, 0.25)
    assert (ttt["epoch"], ttt["seconds"], ttt["censoring"]) == (3, 30.0, None)
    assert ttt["epoch_interpolated"] == pytest.approx(2 + (0.4 - 0.25) / (0.4 - 0.2))
    assert ttt["seconds_interpolated"] == pytest.approx(20 + 10 * 0.75)
    # below the target after the first epoch: left-censored (<= 1 epoch), no invented value;
    # the same definition every study uses (effects.time_to_target)
    first = time_to_target(_rows([1.0], [0.3], train_errors=[0.1]), 0.25)
    assert (first["epoch"], first["censoring"], first["epoch_interpolated"]) == (1, "left", None)
    never = time_to_target(history, 0.1)
    assert never["epoch"] is None and never["epoch_interpolated"] is None
    assert never["censoring"] == "right"


# -- paired statistics -------------------------------------------------------------------------
def test_paired_difference_on_hand_made_data() -> None:
    # per-seed differences 2, 3, 1: mean 2, sd 1, half-width t(2) * 1 / sqrt(3)
    result = paired({0: 12.0, 1: 13.0, 2: 11.0, 3: 99.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert result.n == 3 and result.seeds == (0, 1, 2)
    assert result.value == pytest.approx(2.0) and result.unpaired == (3,)
    half = 4.302652729749464 / math.sqrt(3)
    assert (result.ci_low, result.ci_high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert result.excludes_null is False  # 2 +- 2.48 includes 0
    # large seed effects shared by both arms cancel in the pairs; Welch cannot resolve it
    from alexnet_bench.effects import welch

    a, b = {0: 12.0, 1: 22.2, 2: 31.8}, {0: 10.0, 1: 20.0, 2: 30.0}
    pair = paired(a, b)
    assert pair.value == pytest.approx(2.0) and pair.excludes_null is True
    w = welch(a.values(), b.values())
    assert w.ci_low < 0 < w.ci_high


def test_paired_ratio_is_a_geometric_mean_with_a_log_interval() -> None:
    result = paired({0: 6.0, 1: 12.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 1.0}, ratio=True)
    logs = [math.log(6), math.log(6), math.log(3)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = 4.302652729749464 * sd / math.sqrt(3)
    assert result.value == pytest.approx(math.exp(mean))
    assert result.ci_low == pytest.approx(math.exp(mean - half))
    assert result.ci_high == pytest.approx(math.exp(mean + half))
    assert paired({0: 2.0}, {0: 1.0}, ratio=True).has_ci is False
    assert paired({0: None, 1: 2.0}, {0: 1.0}).n == 0


def test_report_excludes_collapsed_runs_and_counts_them(tmp_path: Path) -> None:
    res = tmp_path / "results" / "default"
    for seed in (0, 1, 2):
        write_run(res, "baseline", seed, val_top1=0.10 + 0.01 * seed)
        if seed == 1:
            write_run(
                res,
                "no_lrn",
                seed,
                status="collapsed",
                val_top1=0.90,
                reason="did not learn: training loss stayed at ln(10)",
            )
        else:
            write_run(res, "no_lrn", seed, val_top1=0.12 + 0.01 * seed)
    study = normalize_study({**STUDY, "seeds": [0, 1, 2], "ablations": ["baseline", "no_lrn"]})
    runs = collect(res, study=study)
    rows = {f"{r.claim_id}:{r.metric}": r for r in evaluate(runs, study, "baseline")}
    lrn = rows["lrn:val_top1"]
    assert lrn.n_pairs == 2  # seed 1 collapsed: left out of the effect
    assert lrn.measured_effect == pytest.approx(2.0)
    assert "1 of 3 no_lrn seeds left out: collapsed (seed 1)" in lrn.caveats

    from alexnet_bench.reports.report import build_report

    out = build_report(
        res,
        tmp_path / "reports",
        study=STUDY | {"seeds": [0, 1, 2], "ablations": ["baseline", "no_lrn"]},
    )
    assert out["counts"]["collapsed"] == 1
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "no_lrn: 1/3 seed(s) collapsed" in page and "no_lrn/seed1" in page


# -- fair arms: one idea changed, the signal scale not --------------------------------------
ARMS = {
    "baseline": {},
    "no_lrn": {"lrn": False},
    "tanh": {"activation": "tanh"},
    "plain_pooling": {"pooling": "plain"},
    "no_dropout": {"dropout": 0.0},
}


def _pre_activation_stds(model: AlexNet, x: torch.Tensor) -> list[float]:
    layers = [model.features[i] for i in CONV_INDICES] + [model.classifier[1], model.classifier[4]]
    stds: list[float] = []
    hooks = [m.register_forward_hook(lambda m, i, o: stds.append(o.std().item())) for m in layers]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return stds


def test_unit_variance_init_equalises_signal_scale_across_arms() -> None:
    """He init: removing LRN (a fixed gain of 2**-0.75 per LRN layer at this scale) makes the
    later layers' signal ~2.8x larger. The data-dependent init gives every arm unit-variance
    pre-activations in every hidden layer, from the same random draws (paired init)."""
    x = torch.randn(64, 3, 32, 32)
    kaiming, lsuv, weights = {}, {}, {}
    for arm, options in ARMS.items():
        torch.manual_seed(0)
        model = AlexNet(10, width=0.125, image_size=32, init="lsuv", **options)
        weights[arm] = [model.features[i].weight.detach().clone() for i in CONV_INDICES]
        kaiming[arm] = _pre_activation_stds(model, x)
        unit_variance_init(model, x)
        lsuv[arm] = _pre_activation_stds(model, x)
    assert kaiming["no_lrn"][-1] / kaiming["baseline"][-1] > 2.0  # the side effect removed
    for arm, stds in lsuv.items():
        assert stds == pytest.approx([1.0] * 7, rel=1e-4), arm
        for w, w_base in zip(weights[arm], weights["baseline"], strict=True):
            assert torch.equal(w, w_base)  # the same draws before rescaling


def test_unit_variance_init_needs_zero_biases() -> None:
    model = AlexNet(10, width=0.125, image_size=32, init="paper")
    with pytest.raises(ValueError, match="zero biases"):
        unit_variance_init(model, torch.randn(4, 3, 32, 32))


def test_arms_with_the_same_seed_share_data_order_and_initial_weights(tmp_path: Path) -> None:
    """Pairing: the same seed gives two arms the same batches, augmentation draws and (after
    the shape-independent rescaling) weights whose directions agree."""
    firsts, convs = {}, {}
    for arm, options in {"baseline": {}, "no_dropout": {"dropout": 0.0}}.items():
        cfg = RunConfig(tiny_run(model={"width": 0.125, "init": "lsuv", **options}))
        trainer = Trainer(cfg, tmp_path / arm)
        trainer.data.train.set_epoch(1)
        images, labels = next(iter(trainer.data.train))
        gen = torch.Generator().manual_seed(5)
        firsts[arm] = (labels, trainer.data.augment(images, train=True, generator=gen))
        convs[arm] = trainer.model.features[0].weight.detach()
    assert torch.equal(firsts["baseline"][0], firsts["no_dropout"][0])
    assert torch.equal(firsts["baseline"][1], firsts["no_dropout"][1])
    assert torch.equal(convs["baseline"], convs["no_dropout"])


# -- diagnostics -----------------------------------------------------------------------------
def test_activation_health_finds_dead_relus_and_lrn_load() -> None:
    torch.manual_seed(0)
    model = AlexNet(10, width=0.125, image_size=32, init="kaiming")
    with torch.no_grad():
        model.features[0].bias.fill_(-1e6)  # conv1 never fires
    health = activation_health(model, torch.randn(16, 3, 32, 32))
    assert health["dead_relu_fraction"]["conv1"] == 1.0
    # LRN after a dead layer sees zeros: alpha * sum / k is 0 there
    assert health["lrn_alpha_sum_over_k"]["lrn1"] == 0.0
    live = activation_health(
        AlexNet(10, width=0.125, image_size=32, init="kaiming"), torch.randn(16, 3, 32, 32)
    )
    assert 0 < live["lrn_alpha_sum_over_k"]["lrn1"] < 0.01  # k dominates: LRN is a gain here
    assert activation_health(nn.Linear(2, 2), torch.randn(1, 2)) is None


# -- schedules -------------------------------------------------------------------------------
def test_plateau_schedule_divides_when_validation_stops_improving() -> None:
    cfg = RunConfig(tiny_run(train={"lr_schedule": "plateau", "lr_patience": 1, "lr": 0.1}))
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    sched = build_scheduler(opt, cfg)
    lrs = []
    for val_error in (0.5, 0.4, 0.4, 0.4, 0.3, 0.35):
        step_scheduler(sched, val_error)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01])


# -- MFU is never above 1 ----------------------------------------------------------------------
def _peak_file(path: Path, flops: float, host: str | None = None) -> Path:
    path.write_text(
        json.dumps({"host": host or socket.gethostname(), "peak_flops_by_threads": {"1": flops}})
    )
    return path


def test_cpu_peak_file_is_used_only_on_its_host(tmp_path: Path) -> None:
    good = _peak_file(tmp_path / "peak.json", 5e10)
    assert cpu_peak_for(good, 1)[0] == 5e10
    assert cpu_peak_for(good, 2) is None  # thread count not measured
    assert cpu_peak_for(_peak_file(tmp_path / "other.json", 5e10, host="elsewhere"), 1) is None
    assert cpu_peak_for(tmp_path / "absent.json", 1) is None


def test_mfu_above_one_is_never_recorded(tmp_path: Path) -> None:
    cfg = RunConfig(tiny_run(train={"epochs": 1, "checkpoint": False}))
    torch.set_num_threads(1)
    trainer = Trainer(cfg, tmp_path, peak_flops_file=_peak_file(tmp_path / "p.json", 1e3))
    flops = flops_record(
        trainer.describe(), images_per_s=100.0
    )  # any real rate exceeds a 1 kFLOP/s "peak"
    assert flops["mfu"] is None and "not reported" in flops["peak_note"]
    assert flops["peak_source"] == "measured-matmul-once"
    sane = Trainer(cfg, tmp_path, peak_flops_file=_peak_file(tmp_path / "q.json", 1e15))
    assert 0 < flops_record(sane.describe(), images_per_s=100.0)["mfu"] < 1


# -- calibration criteria ----------------------------------------------------------------------
def _calibration_study(candidates: dict[str, Any]) -> dict[str, Any]:
    return {
        "preset": "default",
        "seeds": [0, 1],
        "baseline": "baseline",
        "ablations": ["baseline", "tanh", "gpus2"],
        "presets": {
            "default": {
                "run": {"data": {"num_train": 200, "num_val": 50}, "train": {"batch_size": 8}}
            }
        },
        "ablation_defs": {
            "baseline": {"family": "baseline", "overrides": {}},
            "tanh": {"family": "activation", "overrides": {"model": {"activation": "tanh"}}},
            "gpus2": {"family": "gpus", "overrides": {"runtime": {"gpus": 2}}},
        },
        "calibration": {
            "arms": ["baseline", "tanh"],
            "seeds": [100, 101],
            "candidates": candidates,
            "criteria": {
                "learned_max_val_error": 0.5,
                "baseline_max_val_error": 0.15,
                "baseline_max_last_epoch_gain": 0.02,
                "target_train_error": 0.25,
                "target_arms": ["baseline", "tanh"],
                "max_study_minutes": 2,
                "cores": 2,
                "fixed_overhead_s": 30,
            },
        },
    }


def _calibration_run(root: Path, cand: str, arm: str, seed: int, cpu_s: float, **kw) -> None:
    """A run whose curves flatten at the end (last epoch: val error -0.5 points)."""
    path = write_run(root / cand, arm, seed, **kw)
    metrics = json.loads(path.read_text())
    metrics["host"]["process_lifetime_cpu_s"] = cpu_s
    path.write_text(json.dumps(metrics))
    val, train = metrics["final"]["val_top1_error"], metrics["final"]["train_top1_error"]
    vals = [0.8, 0.5, 0.35, 0.25, val + 0.005, val]
    trains = [0.85, 0.6, 0.45, 0.35, train + 0.01, train]
    lines = [
        "epoch,train_loss,train_top1_error,val_loss,val_top1_error,val_top5_error,lr,"
        "epoch_time_s,elapsed_s,images_per_s"
    ]
    for e, (v, t) in enumerate(zip(vals, trains, strict=True), start=1):
        lines.append(f"{e},1.0,{t},1.0,{v},0.05,0.01,5,{5 * e},800")
    (path.parent / "history.csv").write_text("\n".join(lines) + "\n")


def test_calibration_criteria_and_choice(tmp_path: Path) -> None:
    root = tmp_path / "calibration"
    study = _calibration_study(
        {"good": {}, "tied": {}, "better_but_slow": {}, "collapses": {}, "cheap": {}}
    )
    for seed in (100, 101):
        # good: baseline 12%, tanh learns, both reach 25% train error (train error 20%)
        _calibration_run(root, "good", "baseline", seed, 20.0, val_top1=0.12)
        _calibration_run(root, "good", "tanh", seed, 20.0, val_top1=0.14)
        # lower error, but 60 s per job: (2 seeds x (60 + 60) + 2 x 3.5) / 2 cores + 30 s > 2 min
        _calibration_run(root, "better_but_slow", "baseline", seed, 60.0, val_top1=0.08)
        _calibration_run(root, "better_but_slow", "tanh", seed, 60.0, val_top1=0.10)
        _calibration_run(root, "collapses", "baseline", seed, 20.0, val_top1=0.09)
        status = "collapsed" if seed == 101 else "completed"
        _calibration_run(root, "collapses", "tanh", seed, 20.0, val_top1=0.9, status=status)
        # within 0.5 points of 'good' and cheaper: wins the tie
        _calibration_run(root, "tied", "baseline", seed, 15.0, val_top1=0.124)
        _calibration_run(root, "tied", "tanh", seed, 15.0, val_top1=0.15)
        _calibration_run(root, "cheap", "baseline", seed, 10.0, val_top1=0.11)
        _calibration_run(root, "cheap", "tanh", seed, 10.0, val_top1=0.2, train_top1=0.3)
    results = {r.name: r for r in load_candidates(root, study)}
    good = results["good"]
    assert good.passed and good.learned == "4/4" and good.target_reached == "4/4"
    # gpus2 is recorded as skipped on a host without GPUs (cpu_standins: skip): start-up only
    assert good.projected_minutes == pytest.approx(((2 * (20 + 20) + 2 * 3.5) / 2 + 30) / 60)
    assert results["better_but_slow"].passes["fits budget"] is False
    assert results["collapses"].passes["arms learn"] is False
    assert "tanh/seed101: collapsed" in results["collapses"].not_learned
    # 'cheap' never reaches 25% training error with tanh (train error 30%)
    assert results["cheap"].passes["target reached"] is False
    assert results["tied"].passed
    assert choose(list(results.values())).name == "tied"
    assert results["tied"].chosen and not good.chosen
    # the convergence criterion reads the last-epoch change of the baseline's val error
    assert good.baseline_last_gain == pytest.approx(0.005)
    assert good.baseline_val_error == pytest.approx(0.12)
    # the verdict's files: the CSV's numbers and the Markdown table (pandas) of the same rows
    from alexnet_bench.reports.calibration import write_calibration

    assert write_calibration(root, tmp_path / "out", study)["chosen"] == "tied"
    csv_rows = pd.read_csv(tmp_path / "out" / "calibration.csv").set_index("candidate")
    assert csv_rows.loc["good", "baseline_val_top1_pct"] == pytest.approx(12.0)
    assert csv_rows.loc["good", "baseline_last_epoch_gain_pct"] == pytest.approx(0.5)
    assert bool(csv_rows.loc["tied", "chosen"]) and not bool(csv_rows.loc["cheap", "passes"])
    md = (tmp_path / "out" / "calibration.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| `good`"))
    assert [c.strip() for c in row.strip("|").split("|")][-7:-2] == [
        "4/4",
        "12.0 (0.0)",
        "0.5",
        "4/4",
        "20",
    ]
    assert "**Chosen: `tied`**" in md and "| `tied` **(chosen)**" in md
    # with CPU stand-ins trained, gpus2 (not calibrated) costs the baseline's time per device
    study["cpu_standins"] = "run"
    good = {r.name: r for r in load_candidates(root, study)}["good"]
    assert good.projected_minutes == pytest.approx(((2 * (20 + 20 + 2 * 20)) / 2 + 30) / 60)


def test_lrn_gain_is_lrn_without_its_normalisation() -> None:
    """lrn: gain keeps exactly what LRN does to a vanishing signal (x * k**-beta) and nothing
    else; at this scale alpha * sum(a**2) is tiny, so the baseline's LRN is nearly this gain."""
    from alexnet_bench.model import LRNGain, PaperLRN

    x = torch.randn(4, 12, 8, 8)
    assert torch.allclose(LRNGain()(x), PaperLRN(alpha=0.0)(x), rtol=1e-6, atol=0)
    assert LRNGain().gain == pytest.approx(2**-0.75)
    torch.manual_seed(0)
    base = AlexNet(10, width=0.125, image_size=32, init="lsuv")
    torch.manual_seed(0)
    gain = AlexNet(10, width=0.125, image_size=32, init="lsuv", lrn="gain")
    batch = torch.randn(32, 3, 32, 32)
    factors_base = unit_variance_init(base, batch)
    factors_gain = unit_variance_init(gain, batch)
    # the same rescaling in both arms (LRN barely normalises), unlike plain removal
    assert factors_gain == pytest.approx(factors_base, rel=1e-3)
    with pytest.raises(ValueError, match="unknown lrn"):
        AlexNet(10, width=0.125, image_size=32, lrn="half")


def test_two_tower_split_with_lrn_gain_matches_unsplit_model() -> None:
    from alexnet_bench.parallel import TwoTowerAlexNet

    torch.manual_seed(0)
    model = AlexNet(10, width=0.125, image_size=32, init="kaiming", lrn="gain").eval()
    towers = TwoTowerAlexNet(model, ["cpu", "cpu"]).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(towers(x), model(x), atol=1e-5)
