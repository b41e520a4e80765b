"""``alexnet-bench compare``: two results directories judged cell by cell (alexnet_bench/versus).

A module fixture trains the tiny cells once, in this process: BASE (4 seeds), the same cells with
channels_last off (other kernels, so other floating-point results, the same distribution) and
the same cells slowed by a delay in every training step (3 seeds: the fourth cell is missing).
Other cases (settings, presets, numerics far apart) are copies of BASE with their records
edited. Nothing here depends on how fast the machine is: the slowed steps sleep three times their
own duration, so NEW is about four times slower on any machine.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.train import Trainer, run_training
from alexnet_bench.versus import compare
from alexnet_bench.versus.numerics import Margin
from alexnet_bench.versus.speed import SPEED_METRICS, verdict

from .conftest import tiny_run
from .test_workflow import snakemake

SEEDS = (0, 1, 2, 3)
#: a step of the slowed runs sleeps this many times its own duration after it
SLOWDOWN = 3.0


def cell_config(seed: int, channels_last: bool = True) -> dict[str, Any]:
    """A tiny cell that learns a little in 5 epochs of 8 steps (about two seconds on one thread).

    The four epochs after the first give a run's own interval 3 degrees of freedom: with 3
    epochs (1 degree) a busy CI machine's epoch-to-epoch noise widened a fourfold slowdown's
    interval past the threshold."""
    return tiny_run(
        model={"width": 0.125, "init": "lsuv"},
        data={"source": "synthetic", "image_size": 32, "num_train": 256, "num_val": 100},
        train={"epochs": 5, "seed": seed, "lr": 0.01},
        eval={"batch_size": 100},
        runtime={"device": "cpu", "threads": 1, "channels_last": channels_last},
    )


def train_cell(root: Path, seed: int, channels_last: bool = True) -> None:
    labels = {"preset": "tiny", "ablation": "baseline", "seed": seed}
    run_training(
        RunConfig(cell_config(seed, channels_last)),
        root / "baseline" / f"seed{seed}",
        labels=labels,
    )


@dataclass(frozen=True)
class Studies:
    base: Path
    channels_off: Path
    slowed: Path


def slowed_steps(step: Any) -> Any:
    """``Trainer.train_step`` taking 1 + SLOWDOWN times as long (whatever the machine's speed)."""

    def slowed(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = step(self, *args, **kwargs)
        time.sleep(SLOWDOWN * (time.perf_counter() - start))  # a slower step, not a wait
        return out

    return slowed


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    """The cells of each seed one after the other, so that paired runs share the machine's
    conditions of the moment (other work on it slows both)."""
    root = tmp_path_factory.mktemp("compare")
    found = Studies(
        root / "base" / "tiny", root / "channels_off" / "tiny", root / "slowed" / "tiny"
    )
    for seed in SEEDS:
        train_cell(found.base, seed)
        train_cell(found.channels_off, seed, channels_last=False)
        if seed != SEEDS[-1]:  # the slowed study lacks the last cell
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(Trainer, "train_step", slowed_steps(Trainer.train_step))
                train_cell(found.slowed, seed)
    return found


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def verdicts(out: Path) -> dict[str, Any]:
    """compare.json's groups by label: the throughput verdict and the numerics verdict."""
    data = json.loads((out / "compare.json").read_text())
    return {
        g["label"]: {
            "speed": next(s for s in g["speed"] if s["measure"] == "throughput"),
            "numerics": g["numerics"],
        }
        for g in data["groups"]
    }


def copy_study(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def edit_records(root: Path, change: Any) -> None:
    """Apply ``change(metrics, seed)`` to every metrics.json under ``root`` (a test's own edit)."""
    for path in sorted(root.rglob("metrics.json")):
        metrics = json.loads(path.read_text())
        change(metrics, int(path.parent.name.removeprefix("seed")))
        path.write_text(json.dumps(metrics))


def test_the_same_results_compared_twice_are_bit_identical_and_unchanged(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = copy_study(studies.base, tmp_path / "again" / "tiny")
    code, out, err = run_cli(capsys, str(studies.base), str(again), "--out", str(tmp_path / "o"))
    assert code == 0 and not err, err
    found = verdicts(tmp_path / "o")["baseline"]
    assert found["numerics"]["verdict"] == "bit-identical"
    assert found["speed"]["verdict"] == "unchanged" and found["speed"]["ratio"] == 1.0
    assert "no regression beyond the threshold (exit 0)" in out
    assert "setting differs" not in out and "environment differs" not in out
    for name in ("index.html", "compare.md", "compare.json"):
        assert "bit-identical" in (tmp_path / "o" / name).read_text()
    assert (tmp_path / "o" / "curves.png").read_bytes().startswith(b"\x89PNG")
    # the study report's layout and style: both pages extend one base template
    css = resources.files("alexnet_bench.reports").joinpath("templates/report.css").read_text()
    page = (tmp_path / "o" / "index.html").read_text()
    assert css.strip() in page and '<nav><a href="#verdicts">Verdicts</a>' in page


def test_a_run_slowed_in_every_step_is_slower_and_exits_1(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, str(studies.base), str(studies.slowed), "--out", str(tmp_path))
    assert code == 1, out
    found = verdicts(tmp_path)["baseline"]
    assert found["speed"]["verdict"] == "slower" and found["speed"]["pairs"] == 3
    assert found["numerics"]["verdict"] == "bit-identical"  # a delay changes no number
    assert "regression (exit 1): baseline: training images/s slower" in out


def test_missing_cells_are_insufficient_data(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The slowed study lacks seed 3; a BASE with an extra ablation has no counterpart for it."""
    _, out, _ = run_cli(
        capsys, str(studies.base), str(studies.slowed), "--out", str(tmp_path / "o")
    )
    cells = json.loads((tmp_path / "o" / "compare.json").read_text())["cells"]
    seed3 = next(c for c in cells if c["cell"] == "baseline/seed3")
    assert seed3["new_status"] == "missing" and seed3["problem"] == "NEW: no such cell"
    assert seed3["numerics"] is None
    assert {s["verdict"] for s in seed3["speed"]} == {"insufficient data"}
    assert "insufficient data: baseline/seed3: NEW: no such cell" in out
    base = copy_study(studies.base, tmp_path / "base" / "tiny")
    shutil.copytree(base / "baseline" / "seed0", base / "tanh" / "seed0")
    result = compare(base, studies.base, 0.05, Margin.parse("1sd"))
    tanh = next(g for g in result.groups if g.label == "tanh")
    assert tanh.numerics.verdict == "insufficient data" and tanh.seeds == "0 of 1"
    assert {s.verdict for s in tanh.speed} == {"insufficient data"}
    assert result.warnings == ["tanh/seed0: NEW: no such cell"] and result.exit_status == 0


def test_cells_skipped_alike_on_both_sides_share_one_line(studies: Studies, tmp_path: Path) -> None:
    """A study's skipped cells (e.g. the two-GPU ones on a CPU) are one warning, not one each."""
    reason = "needs 2 GPUs and none is visible"

    def skip_two(metrics: dict[str, Any], seed: int) -> None:
        if seed in (0, 1):
            metrics.update(status="skipped", reason=reason)

    base = copy_study(studies.base, tmp_path / "base" / "tiny")
    new = copy_study(studies.base, tmp_path / "new" / "tiny")
    for root in (base, new):
        edit_records(root, skip_two)
    result = compare(base, new, 0.05, Margin.parse("1sd"))
    assert result.warnings == [
        f"baseline/seed0, baseline/seed1 (2 cells): BASE and NEW: skipped ({reason})"
    ]


def test_numerics_that_differ_within_seed_noise(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """channels_last off runs other convolution kernels: other rounding, other curves, but the
    same distribution of final errors (margin: two of BASE's seed sd, for headroom)."""
    new = studies.channels_off
    code, out, _ = run_cli(
        capsys, str(studies.base), str(new), "--out", str(tmp_path), "--margin", "2sd"
    )
    found = verdicts(tmp_path)["baseline"]["numerics"]
    assert found["verdict"] == "within noise", found
    assert found["identical"] == 0 and found["pairs"] == 4
    (low90, high90), (low95, high95) = found["ci90"], found["ci95"]
    assert low95 < low90 <= high90 < high95  # the TOST's 90% interval, inside the 95% one
    assert "setting differs: runtime.channels_last: true -> false (4 cells)" in out
    assert "environment differs: channels_last: on -> off" in out
    assert code in (0, 1)  # the speed verdict is this machine's business


def test_one_trained_pair_of_several_gives_its_group_no_speed_verdict(
    studies: Studies, tmp_path: Path
) -> None:
    """Seeds 1-3 failed on NEW: seed 0's within-run interval would call it slower (it is four
    times slower), but one run's epochs leave out the run-to-run spread."""
    new = copy_study(studies.slowed, tmp_path / "new" / "tiny")

    def fail_after_seed0(metrics: dict[str, Any], seed: int) -> None:
        if seed > 0:
            metrics.update(status="failed", reason="out of memory")

    edit_records(new, fail_after_seed0)
    result = compare(studies.base, new, 0.05, Margin.parse("1sd"))
    speed = next(g for g in result.groups if g.label == "baseline").speed
    throughput = next(s for s in speed if s.metric.name == "throughput")
    assert throughput.verdict == "insufficient data" and throughput.ratio < 0.5
    assert throughput.reason.startswith("1 of 4 cells trained on both sides")
    cell = next(c for c in result.cells if c.pair.key.label == "baseline/seed0")
    assert next(s for s in cell.speed if s.metric.name == "throughput").verdict == "slower"
    assert result.exit_status == 0


def test_a_run_diverged_on_one_side_only_leaves_its_group_without_a_numerics_verdict(
    studies: Studies, tmp_path: Path
) -> None:
    """A diverged run's record holds its last finite epoch's error, not a final one: it is not
    paired as if it were, and the group says which cell stopped the test."""
    new = copy_study(studies.channels_off, tmp_path / "new" / "tiny")

    def diverge_seed3(metrics: dict[str, Any], seed: int) -> None:
        if seed == 3:
            metrics.update(status="diverged", reason="loss became NaN at epoch 3")

    edit_records(new, diverge_seed3)
    result = compare(studies.base, new, 0.05, Margin.parse("2sd"))
    numerics = next(g for g in result.groups if g.label == "baseline").numerics
    assert numerics.verdict == "insufficient data" and numerics.delta is None
    assert "diverged on one side only: baseline/seed3" in numerics.reason
    cell = next(c for c in result.cells if c.pair.key.label == "baseline/seed3").numerics
    assert cell is not None and cell.new is None and cell.delta is None
    # diverged on both sides: left out of the test, which the reason says
    base = copy_study(studies.base, tmp_path / "base" / "tiny")
    edit_records(base, diverge_seed3)
    both = compare(base, new, 0.05, Margin.parse("2sd"))
    numerics = next(g for g in both.groups if g.label == "baseline").numerics
    assert numerics.verdict == "within noise", numerics
    assert "(3 of 4 pairs; the others diverged on both sides)" in numerics.reason


def test_a_collapsed_base_seed_does_not_widen_the_seed_sd_margin(
    studies: Studies, tmp_path: Path
) -> None:
    """One seed at chance would make BASE's spread, and a 1sd margin, as wide as chance."""
    base = copy_study(studies.base, tmp_path / "base" / "tiny")

    def collapse_seed3(metrics: dict[str, Any], seed: int) -> None:
        if seed == 3:
            metrics.update(status="collapsed", reason="did not learn")
            metrics["final"]["val_top1_error"] = 0.9

    edit_records(base, collapse_seed3)
    without = copy_study(studies.base, tmp_path / "without" / "tiny")
    shutil.rmtree(without / "baseline" / "seed3")
    margin = compare(base, studies.channels_off, 0.05, Margin.parse("1sd")).margin
    reference = compare(without, studies.channels_off, 0.05, Margin.parse("1sd")).margin
    assert margin.points == pytest.approx(reference.points)
    assert margin.how.endswith("(BASE's seed sd, df 2; 1 collapsed/diverged run(s) left out)")


def test_numerics_far_apart_are_different_and_exit_1(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy_study(studies.base, tmp_path / "new" / "tiny")

    def worse(metrics: dict[str, Any], seed: int) -> None:
        metrics["final"]["val_top1_error"] += 0.20 + 0.01 * seed

    edit_records(new, worse)
    for path in new.rglob("history.csv"):
        history = pd.read_csv(path)
        history["val_top1_error"] += 0.2
        history.to_csv(path, index=False)
    code, out, _ = run_cli(capsys, str(studies.base), str(new), "--out", str(tmp_path / "o"))
    found = verdicts(tmp_path / "o")["baseline"]["numerics"]
    margin = json.loads((tmp_path / "o" / "compare.json").read_text())["margin_pts"]
    assert found["verdict"] == "different" and found["ci95"][0] > margin
    assert code == 1 and "numerics different" in out


def test_result_relevant_settings_that_differ_are_listed_and_provenance_ones_apart(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = copy_study(studies.base, tmp_path / "base" / "tiny")
    new = copy_study(studies.base, tmp_path / "new" / "tiny")

    def changed(metrics: dict[str, Any], seed: int) -> None:
        metrics["config"]["train"]["lr"] = 0.02  # result
        metrics["config"]["data"]["root"] = "/elsewhere"  # provenance

    def identity(digest: str) -> Any:
        def add(metrics: dict[str, Any], seed: int) -> None:
            metrics["identity"] = {
                "config_hash": metrics["config_hash"],
                "data": {"kind": "store", "train": digest, "val": digest},
                "hash": "x",
            }

        return add

    edit_records(new, changed)
    edit_records(base, identity("a1"))
    edit_records(new, identity("b2"))
    result = compare(base, new, 0.05, Margin.parse("1sd"))
    assert [(s.key, s.kind) for s in result.result_settings] == [
        ("train.lr", "result"),
        ("data digest (identity)", "data"),
    ]
    assert [s.key for s in result.settings if not s.result_relevant] == ["data.root"]
    assert result.result_settings[0].base == "0.01" and result.result_settings[0].new == "0.02"
    _, out, _ = run_cli(capsys, str(base), str(new))
    assert "setting differs: train.lr: 0.01 -> 0.02 (4 cells)" in out
    assert "setting differs: data.root" not in out
    assert "provenance setting (not result-relevant) differs: data.root: null -> /elsewhere" in out
    edit_records(new, lambda metrics, seed: metrics.pop("identity"))  # absent on one side: skipped
    assert [s.key for s in compare(base, new, 0.05, Margin.parse("1sd")).result_settings] == [
        "train.lr"
    ]


def test_two_studies_of_different_presets_exit_2_with_one_line(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy_study(studies.base, tmp_path / "default")
    edit_records(new, lambda metrics, seed: metrics["run"].update(preset="default"))
    code, out, err = run_cli(capsys, str(studies.base), str(new))
    assert code == 2 and not out
    assert err.splitlines() == [
        "error: BASE holds preset 'tiny' but NEW holds preset 'default'; compare results of the "
        "same preset (e.g. results/default from two versions)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{base}", "{tmp}/nope"],
            "error: NEW '{tmp}/nope' does not exist; pass a results directory",
        ),
        (["{tmp}", "{base}"], "error: BASE '{tmp}' holds no run"),
        (
            ["{base}", "{base}", "--threshold", "150"],
            "error: --threshold '150' is not a percentage",
        ),
        (["{base}", "{base}", "--margin", "-1"], "error: --margin '-1' is not a positive margin"),
    ],
    ids=["missing", "empty", "threshold", "margin"],
)
def test_bad_input_exits_2_with_one_line(
    studies: Studies,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    fill = {"base": str(studies.base), "tmp": str(tmp_path)}
    code, out, err = run_cli(capsys, *[a.format(**fill) for a in args])
    assert code == 2 and not out and len(err.splitlines()) == 1, err
    assert err.startswith(message.format(**fill))


def test_two_single_cells_compare_over_the_runs_epochs(
    studies: Studies, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = studies.base / "baseline" / "seed1"
    again = copy_study(cell, tmp_path / "tiny" / "baseline" / "seed1")
    code, out, _ = run_cli(capsys, str(cell), str(again), "--out", str(tmp_path / "o"))
    found = verdicts(tmp_path / "o")["baseline"]
    assert code == 0 and found["numerics"]["verdict"] == "bit-identical"
    assert found["speed"]["over"] == "epochs within the run (paired by epoch, n=4)"
    assert found["speed"]["verdict"] == "unchanged"


THROUGHPUT, STEP = SPEED_METRICS[0], SPEED_METRICS[1]


@pytest.mark.parametrize(
    ("metric", "ratio", "low", "high", "expected"),
    [
        (THROUGHPUT, 0.80, 0.70, 0.90, "slower"),
        (THROUGHPUT, 0.97, 0.94, 0.995, "insufficient data"),  # significant, below the threshold
        (THROUGHPUT, 1.00, 0.96, 1.04, "unchanged"),
        (THROUGHPUT, 1.20, 0.90, 1.60, "insufficient data"),  # too wide to tell
        (THROUGHPUT, 1.20, 1.10, 1.30, "faster"),
        (THROUGHPUT, None, None, None, "insufficient data"),
        (STEP, 1.20, 1.10, 1.30, "slower"),  # a longer step is slower
        (STEP, 0.80, 0.70, 0.90, "faster"),
    ],
)
def test_the_speed_verdict_rule(
    metric: Any, ratio: Any, low: Any, high: Any, expected: str
) -> None:
    assert verdict(metric, ratio, low, high, 0.05)[0] == expected


@pytest.mark.slow
def test_the_compare_target_runs_the_cli_from_the_config(studies: Studies, workdir: Path) -> None:
    """`snakemake compare` with the config's compare block: a regression is reported, the job
    succeeds (fail_on_regression: false); it reruns only when a compared result changes."""
    new = copy_study(studies.slowed, workdir / "new" / "tiny")
    args = [
        "--cores",
        "1",
        "compare",
        "--config",
        f"compare={{base: {studies.base}, new: {new}, out: cmp}}",
    ]
    first = snakemake(workdir, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    log = (workdir / "logs" / "compare.log").read_text()
    assert "regression (reported only, exit 0): baseline: training images/s slower" in log
    assert {p.name for p in (workdir / "cmp").iterdir()} == {
        "index.html",
        "compare.md",
        "compare.json",
        "curves.png",
    }
    assert (workdir / "logs" / "benchmark" / "compare.tsv").is_file()
    assert "Nothing to be done" in snakemake(workdir, "-n", *args).stdout
    edit_records(new / "baseline" / "seed0", lambda metrics, seed: metrics.update(notes=["edited"]))
    assert "compare" in snakemake(workdir, "-n", *args).stdout.split("Job stats:")[-1]
