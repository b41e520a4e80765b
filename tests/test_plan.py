"""alexnet-bench plan: cells and epochs still to spend, the schedule, rates read back from
records, the probe end to end, power against simulation, and the workflow target."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexnet_bench.checkpoint import resumable_epoch, save_checkpoint
from alexnet_bench.cli import main
from alexnet_bench.effects import detectable_shift, t_crit
from alexnet_bench.identity import run_identity
from alexnet_bench.plan import actual, schedule
from alexnet_bench.plan.build import Options, build_plan
from alexnet_bench.plan.cells import Host, load_study, plan_cells
from alexnet_bench.plan.power import paired_power, pilot_power, seeds_needed
from alexnet_bench.plan.render import terminal
from alexnet_bench.study import resolve_run
from alexnet_bench.train import Trainer

from .conftest import fit_killed_in_epoch
from .fixtures_reports import write_run
from .test_workflow import job_counts, snakemake

CPU_HOST = Host(gpus=0, cpus=2, name="test")
#: a tiny study: 2 seeds of two arms and a 2-device arm (skipped without GPUs), on the CPU
TINY = [
    "preset=tiny",
    "seeds=[0, 1]",
    "ablations=[baseline, tanh, gpus2]",
    "run={runtime: {device: cpu}}",
]


@pytest.fixture
def study(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(workdir)
    return load_study(workdir / "config.yaml", TINY)


def _finish(
    study: dict[str, Any],
    ablation: str,
    seed: int,
    status: str = "completed",
    config_hash: str | None = None,
    root: Path = Path("results/tiny"),
) -> Path:
    """A finished cell's record (the workflow's outputs) for the planned config."""
    cfg = resolve_run(study, "tiny", ablation, seed)
    out = root / ablation / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "config": cfg.to_dict(), "config_hash": config_hash or cfg.hash}
    (out / "metrics.json").write_text(json.dumps(record))
    (out / "history.csv").write_text("epoch\n")
    return out


# -- cells: what is still to spend ----------------------------------------------------------
def test_tiny_study_cells_epochs_and_completed_cells_cost_nothing(study: dict) -> None:
    cells = plan_cells(study, CPU_HOST)
    assert [c.name for c in cells] == [
        "baseline/seed0",
        "baseline/seed1",
        "tanh/seed0",
        "tanh/seed1",
        "gpus2/seed0",
        "gpus2/seed1",
    ]
    epochs = study["presets"]["tiny"]["run"]["train"]["epochs"]
    per_epoch = (320 // 32) * 32
    assert [c.state for c in cells] == ["train"] * 4 + ["skip"] * 2
    assert [c.epochs for c in cells] == [epochs] * 4 + [0, 0]
    assert sum(c.images for c in cells) == 4 * epochs * per_epoch

    _finish(study, "baseline", 0)  # done: this config's record
    _finish(study, "tanh", 1, status="collapsed")  # a final status too
    _finish(study, "baseline", 1, config_hash="0123456789abcdef")  # another config: rerun
    cells = {c.name: c for c in plan_cells(study, CPU_HOST)}
    assert cells["baseline/seed0"].state == "done" and cells["baseline/seed0"].epochs == 0
    assert cells["tanh/seed1"].state == "done" and cells["tanh/seed1"].images == 0
    assert cells["baseline/seed1"].state == "train" and cells["baseline/seed1"].epochs == epochs


def test_cells_on_a_gpu_host_use_their_devices_and_the_gpu_resource(study: dict) -> None:
    study = {**study, "run": {}}  # device auto
    cells = {c.name: c for c in plan_cells(study, Host(gpus=2, cpus=8))}
    assert cells["gpus2/seed0"].state == "train" and cells["gpus2/seed0"].devices == 2
    assert cells["gpus2/seed0"].gpu == 2 and cells["gpus2/seed0"].threads == 2
    one = {c.name: c for c in plan_cells(study, Host(gpus=1, cpus=8))}
    assert one["gpus2/seed0"].state == "skip" and "needs 2 GPU(s)" in one["gpus2/seed0"].reason


def test_killed_cell_is_planned_at_its_remaining_epochs(study: dict, tmp_path: Path) -> None:
    """A run killed in epoch 3 of 4 (checkpoint after epoch 2) costs 2 epochs, and the rerun
    does resume there."""
    study["presets"]["tiny"]["run"]["train"]["epochs"] = 4
    cfg = resolve_run(study, "tiny", "baseline", 0)
    out = Path("results/tiny/baseline/seed0")
    out.mkdir(parents=True)
    fit_killed_in_epoch(Trainer(cfg, out), 3, KeyboardInterrupt)
    assert resumable_epoch(out, run_identity(cfg.hash, None)) == 2
    cell = next(c for c in plan_cells(study, CPU_HOST) if c.name == "baseline/seed0")
    assert (cell.state, cell.done_epochs, cell.epochs) == ("resume", 2, 2)
    assert cell.images == 2 * (320 // 32) * 32
    assert Trainer(cfg, out).fit().resumed_from == 2  # the real rerun agrees
    assert resumable_epoch(out, "another-config") == 0


def test_resumable_epoch_mirrors_load_latest(tmp_path: Path) -> None:
    """Another config's checkpoint: a fresh start; a corrupt newest one: the previous one;
    nothing is renamed."""
    state = {
        "config_hash": "c",
        "identity_hash": "abc",
        "epoch": 1,
        "elapsed_s": 1.0,
        "history": [],
        "model": {},
        "optimizer": {},
        "scheduler": {},
    }
    save_checkpoint(tmp_path, state)
    save_checkpoint(tmp_path, {**state, "epoch": 2})
    assert resumable_epoch(tmp_path, "abc") == 2
    assert resumable_epoch(tmp_path, "xyz") == 0
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    assert resumable_epoch(tmp_path, "abc") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.prev.pt",
        "checkpoint.prev.pt.sha256",
        "checkpoint.pt",
        "checkpoint.pt.sha256",
    ]
    assert resumable_epoch(tmp_path / "absent", "abc") == 0


# -- schedule ------------------------------------------------------------------------------
def test_list_scheduler_packs_cores_gpus_and_dependencies() -> None:
    jobs = [schedule.Job("peak", 2.0, threads=2)]
    jobs += [schedule.Job(f"c{i}", 10.0, deps=("peak",)) for i in range(4)]
    jobs.append(schedule.Job("report", 1.0, deps=tuple(f"c{i}" for i in range(4))))
    placed = schedule.simulate(jobs, cores=2)
    assert placed["peak"].end == 2.0
    assert [placed[f"c{i}"].start for i in range(4)] == [2.0, 2.0, 12.0, 12.0]
    assert placed["report"].start == 22.0 and placed["report"].end == 23.0
    # a 2-thread job waits for both cores; gpu=1 serialises the GPU jobs
    placed = schedule.simulate(
        [schedule.Job("a", 5.0), schedule.Job("b", 5.0, threads=2), schedule.Job("c", 5.0)], 2
    )
    assert (placed["a"].start, placed["c"].start, placed["b"].start) == (0.0, 0.0, 5.0)
    gpu_jobs = [schedule.Job(f"g{i}", 4.0, gpu=1, devices=1) for i in range(3)]
    placed = schedule.simulate(gpu_jobs, cores=8, gpu_limit=1, host_gpus=2)
    assert max(p.end for p in placed.values()) == 12.0
    # no gpu resource: jobs start at once, then wait for a device lock holding their cores
    placed = schedule.simulate(gpu_jobs, cores=8, gpu_limit=None, host_gpus=2)
    assert placed["g2"].start == 0.0 and placed["g2"].run == 4.0 and placed["g2"].end == 8.0


def test_contention_slows_jobs_side_by_side_only() -> None:
    slow = schedule.contention(factor=1.5, measured_at=2, cpus=2)
    assert slow(1, 1) == 1.0 and slow(2, 2) == 1.5
    assert slow(4, 4) == pytest.approx(2.5 * 2)  # beyond the measurement, and oversubscribed
    jobs = [schedule.Job("a", 10.0), schedule.Job("b", 20.0)]
    placed = schedule.simulate(jobs, cores=2, slowdown=slow)
    assert placed["a"].end == pytest.approx(15.0)  # both at 1/1.5 speed
    assert placed["b"].end == pytest.approx(25.0)  # 20 - 10 left, then alone
    with pytest.raises(Exception, match="gpu=2 but --resources gpu=1"):
        schedule.simulate([schedule.Job("x", 1.0, gpu=2)], cores=2, gpu_limit=1)


# -- rates from an earlier results directory -------------------------------------------------
def _recorded(
    study: dict,
    root: Path,
    ablation: str,
    seed: int,
    train_s: float,
    total_s: float,
    wall_s: float,
    epochs: int = 2,
) -> dict:
    cfg = resolve_run(study, "tiny", ablation, seed)
    out = root / "results" / "tiny" / ablation / f"seed{seed}"
    out.mkdir(parents=True)
    record = {
        "status": "completed",
        "config": cfg.to_dict(),
        "config_hash": cfg.hash,
        "epochs_completed": epochs,
        "train_time_s": train_s,
        "total_time_s": total_s,
        "data": {"num_train": cfg.data.num_train, "num_val": cfg.data.num_val},
        "gpu": {"available": False},
        "environment": {"logical_cpus": 2, "hostname": "node1"},
        "model": {"num_params": 1000},
    }
    (out / "metrics.json").write_text(json.dumps(record))
    (out / "history.csv").write_text("epoch,x\n1,0.5\n2,0.25\n")
    bench = root / "logs" / "benchmark" / "tiny" / ablation
    bench.mkdir(parents=True, exist_ok=True)
    (bench / f"seed{seed}.tsv").write_text(f"s\th:m:s\tmax_rss\n{wall_s}\t0:00:10\t500\n")
    return record


def test_plan_from_recorded_results_gives_their_throughput_back(
    study: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No probe runs; a group's images/s is the records' (images trained / train_time_s) and a
    cell's job time their step, in-job and start-up times."""
    import alexnet_bench.plan.build as build

    monkeypatch.setattr(build, "probe", lambda *a, **k: pytest.fail("probed"))
    old = tmp_path / "node"
    for seed, (train_s, total_s, wall_s) in enumerate([(4.0, 6.0, 10.0), (5.0, 7.5, 12.0)]):
        _recorded(study, old, "baseline", seed, train_s, total_s, wall_s)
    _recorded(study, old, "tanh", 0, 8.0, 11.0, 16.0)
    images = 2 * (320 // 32) * 32  # per run: 2 epochs of 10 steps of 32
    opts = Options(
        cores=2,
        gpu_limit=None,
        host=CPU_HOST,
        results_dir=Path("results/tiny"),
        from_results=old / "results" / "tiny",
    )
    plan = build_plan(study, opts)
    groups = {tuple(g["ablations"]): g for g in plan["groups"]}
    assert groups[("baseline",)]["images_per_s"] == pytest.approx(
        np.median([images / 4.0, images / 5.0])
    )
    assert groups[("tanh",)]["images_per_s"] == pytest.approx(images / 8.0)
    assert groups[("tanh",)]["source"].startswith("recorded in")
    tanh = next(c for c in plan["cells"] if c["cell"] == "tanh/seed1")
    startup = np.median([10.0 - 6.0, 12.0 - 7.5, 16.0 - 11.0])
    assert tanh["work_s"] == pytest.approx(startup + 8.0 + 3.0)  # start-up, steps, rest
    assert plan["totals"]["epochs"] == 8 and plan["host_rates"]["contention"] == 1.0
    # as the workflow's job, Snakemake's measured start-up comes first
    later = build_plan(study, opts, workflow_startup_s=5.0)
    assert later["totals"]["wall_s"] == pytest.approx(plan["totals"]["wall_s"] + 5.0)
    assert later["totals"]["train_wall_s"] == pytest.approx(plan["totals"]["train_wall_s"])


def test_plan_from_results_scales_an_unrecorded_arm_by_flops(study: dict, tmp_path: Path) -> None:
    old = tmp_path / "node"
    record = _recorded(study, old, "baseline", 0, 4.0, 6.0, 10.0)
    record["flops"] = {"train_flops_per_image": 2.0e7}
    path = old / "results/tiny/baseline/seed0/metrics.json"
    path.write_text(json.dumps(record))
    opts = Options(
        cores=2,
        gpu_limit=None,
        host=CPU_HOST,
        results_dir=Path("results/tiny"),
        from_results=old / "results" / "tiny",
    )
    plan = build_plan(study, opts)
    tanh = next(g for g in plan["groups"] if g["ablations"] == ["tanh"])
    assert "scaled by FLOPs" in tanh["source"] and tanh["step_s"] > 0


def test_from_results_without_timings_is_one_line(study: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no trained run with timings"):
        build_plan(
            study,
            Options(
                cores=2,
                gpu_limit=None,
                host=CPU_HOST,
                results_dir=Path("results/tiny"),
                from_results=tmp_path / "empty",
            ),
        )


# -- the probe, end to end (one worker process) ----------------------------------------------
def test_probe_plan_through_the_cli(study: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Probing this host: every cell gets a positive time from measured rates, completed
    cells none, the skipped cells their start-up; plan.json and plan.md are written."""
    _finish(study, "tanh", 0)
    args = [
        "plan",
        *(x for c in TINY for x in ("--config", c)),
        "--cores",
        "1",
        "--host-gpus",
        "0",
        "--window-s",
        "0.05",
        "--repeats",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "baseline/seed0" in out and "wrote reports/plan/plan.json" in out
    plan = json.loads(Path("reports/plan/plan.json").read_text())
    rows = {r["cell"]: r for r in plan["cells"]}
    assert rows["tanh/seed0"]["job_s"] == 0 and rows["tanh/seed0"]["state"] == "done"
    assert rows["baseline/seed0"]["epochs"] == 2 and rows["baseline/seed0"]["job_s"] > 0
    assert set(rows["baseline/seed0"]["parts"]) >= {"start-up", "train steps", "evaluation"}
    assert rows["gpus2/seed0"]["parts"].keys() == {"start-up"}
    assert plan["totals"]["epochs"] == 3 * 2
    assert {j["job"] for j in plan["jobs"]} == {"peak_flops/tiny", "report"}
    assert plan["totals"]["wall_s"] >= plan["totals"]["train_wall_s"] > 0
    assert all(g["step_s"] > 0 and g["eval_images_per_s"] > 0 for g in plan["groups"])
    assert plan["energy_source"].startswith("no power reading")
    assert "| baseline/seed0 |" in Path("reports/plan/plan.md").read_text()


def test_bad_override_is_one_line(workdir: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(workdir)
    assert main(["plan", "--config", "preset"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --config 'preset' must look like KEY=VALUE, e.g. preset=tiny"
    )
    assert main(["plan", "--config", "preset=nope", "--no-write"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


# -- power --------------------------------------------------------------------------------
def _detections(rng: np.random.Generator, n: int, effect: float, sd: float, trials: int) -> float:
    """Share of simulated studies of ``n`` paired seeds whose two-sided 5% paired t-test
    rejects no effect, with differences ~ N(effect, sd)."""
    d = rng.normal(effect, sd, size=(trials, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > t_crit(n - 1)))


def test_planned_seeds_detect_the_effect_80_percent_of_the_time() -> None:
    """Simulated paired differences with a known spread: at the planned seed count the effect
    is detected ~80% of the time, one seed fewer less often. 20000 trials give a binomial
    standard error of sqrt(0.8 * 0.2 / 20000) = 0.0028; the tolerance is 4 of them (0.011),
    which a correct count misses with probability < 1e-4."""
    rng = np.random.default_rng(12345)
    trials, tol = 20_000, 4 * math.sqrt(0.8 * 0.2 / 20_000)
    for effect, sd in ((1.4, 1.0), (1.2, 2.5), (0.4, 0.3)):
        n = seeds_needed(effect, sd)
        assert n is not None and n >= 2
        exact = paired_power(n, effect / sd)
        assert exact >= 0.8 > paired_power(n - 1, effect / sd)
        assert _detections(rng, n, effect, sd, trials) == pytest.approx(exact, abs=tol)
        assert _detections(rng, n, effect, sd, trials) >= 0.8 - tol
        if n > 2:
            assert _detections(rng, n - 1, effect, sd, trials) < 0.8 + tol
    # the smallest effect 5 seeds detect, at that effect: 80% (up to the simulation's error)
    sd = 1.7
    detectable = detectable_shift(5) * sd
    assert _detections(rng, 5, detectable, sd, trials) == pytest.approx(0.8, abs=tol)


def test_seeds_needed_edges() -> None:
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1.0, 0.0) == 2
    assert seeds_needed(0.001, 10.0) is None  # beyond 10000 seeds
    assert seeds_needed(2.0, 1.0) < seeds_needed(1.0, 1.0) < seeds_needed(0.5, 1.0)


def test_pilot_power_rows_use_the_paired_spread(study: dict, tmp_path: Path) -> None:
    """Per ablation and claim: the sd of the pilot's per-seed paired differences, the effect
    the configured seeds detect, the seeds the paper's effect needs and their cost."""
    pilot = tmp_path / "pilot"
    base = [0.30, 0.32, 0.28, 0.31]
    lrn = [0.33, 0.33, 0.31, 0.35]  # differences 3, 1, 3, 4 pts
    for seed, (b, a) in enumerate(zip(base, lrn, strict=True)):
        write_run(pilot, "baseline", seed, val_top1=b)
        write_run(pilot, "no_lrn", seed, val_top1=a)
    study = {**study, "ablations": ["baseline", "no_lrn"], "seeds": [0, 1, 2]}
    priced: list[Any] = []

    def cost(arms: list[tuple[str, int]]) -> tuple[float, float, str]:
        priced.append(arms)
        return 10.0 * sum(n for _, n in arms), 5.0, "core-s"

    rows = pilot_power(pilot, study, cost)
    diffs = 100 * (np.array(lrn) - np.array(base))
    sd = float(np.std(diffs, ddof=1))
    ablation = next(r for r in rows if r.kind == "ablation" and r.name == "no_lrn")
    assert ablation.pilot_seeds == 4 and ablation.sd == pytest.approx(sd)
    assert ablation.observed == pytest.approx(diffs.mean())
    assert ablation.detectable == pytest.approx(detectable_shift(3) * sd)
    claim = next(r for r in rows if r.name == "lrn" and r.metric == "val_top1")
    assert claim.target == 1.4 and claim.target_source == "paper"
    assert claim.seeds_needed == seeds_needed(1.4, sd)
    assert claim.cost_device_s == 10.0 * 2 * claim.seeds_needed
    assert [("no_lrn", claim.seeds_needed), ("baseline", claim.seeds_needed)] in priced
    tanh = next(r for r in rows if r.name == "relu_vs_tanh")
    assert tanh.sd is None and "no completed pilot runs" in tanh.note


# -- predicted vs actual ------------------------------------------------------------------
def test_actual_times_against_the_plan(tmp_path: Path) -> None:
    results = tmp_path / "results" / "tiny"
    bench = tmp_path / "logs" / "benchmark" / "tiny"
    plan = {
        "created_unix": time.time() - 100,
        "created": "then",
        "source": "probed",
        "results_dir": str(results),
        "totals": {"train_wall_s": 30.0},
        "notes": [],
        "host_rates": {"contention_note": "a step took 1.5x as long"},
        "cells": [
            {
                "cell": f"baseline/seed{s}",
                "ablation": "baseline",
                "seed": s,
                "state": "train",
                "job_s": 20.0,
                "parts": {"start-up": 5.0},
                "config_hash": "h",
            }
            for s in (0, 1)
        ],
    }
    for seed, wall in ((0, 25.0), (1, 15.0)):
        out = results / "baseline" / f"seed{seed}"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(
            json.dumps({"status": "completed", "config_hash": "h", "total_time_s": wall - 4})
        )
        (bench / "baseline").mkdir(parents=True, exist_ok=True)
        (bench / "baseline" / f"seed{seed}.tsv").write_text(f"s\tcpu_time\n{wall}\t1\n")
    now = time.time()
    os.utime(results / "baseline/seed0/metrics.json", (now, now))
    os.utime(results / "baseline/seed1/metrics.json", (now - 5, now - 5))
    result = actual.compare(plan, results)
    assert [r["ratio"] for r in result["rows"]] == [pytest.approx(1.25), pytest.approx(0.75)]
    totals = result["totals"]
    assert totals["job_ratio"] == pytest.approx(1.0)
    assert totals["actual_wall_s"] == pytest.approx(25.0)  # seed0 started first, ended last
    assert totals["wall_ratio"] == pytest.approx(25.0 / 30.0)
    assert result["parts"]["start-up"]["actual_median_s"] == pytest.approx(4.0)
    plan_path = tmp_path / "reports" / "plan" / "plan.json"
    plan_path.parent.mkdir(parents=True)
    plan_path.write_text(json.dumps(plan))
    section = actual.report_section(plan_path, results)
    assert section is not None and "actual/predicted 0.83" in section["lead"]
    assert [row[4] for row in section["rows"]] == ["1.25", "0.75"]
    assert actual.report_section(plan_path, tmp_path / "elsewhere") is None
    # a cell that has not run since the plan leaves the wall time out
    plan["cells"].append({**plan["cells"][0], "cell": "tanh/seed0", "ablation": "tanh"})
    assert actual.compare(plan, results)["totals"]["actual_wall_s"] is None


def test_report_shows_the_plan_section(tmp_path: Path) -> None:
    from alexnet_bench.reports.report import build_report

    from .fixtures_reports import STUDY, build_study_results

    results, expected = build_study_results(tmp_path / "results" / "default")
    plan = {
        "created_unix": 0,
        "created": "then",
        "source": "probed",
        "notes": [],
        "results_dir": str(results),
        "totals": {"train_wall_s": 30.0},
        "host_rates": {},
        "cells": [
            {
                "cell": "baseline/seed0",
                "ablation": "baseline",
                "seed": 0,
                "state": "train",
                "job_s": 20.0,
                "parts": {},
                "config_hash": json.loads(expected[0].read_text())["config_hash"],
            }
        ],
    }
    out = tmp_path / "reports"
    (out / "plan").mkdir(parents=True)
    (out / "plan" / "plan.json").write_text(json.dumps(plan))
    build_report(results, out, STUDY, expected)
    assert "Predicted vs actual time" in (out / "summary.md").read_text()
    assert 'id="plan"' in (out / "index.html").read_text()


# -- the workflow target ------------------------------------------------------------------
def test_plan_target_dry_run_and_lint(workdir: Path) -> None:
    dry = snakemake(workdir, "-n", "plan", "--cores", "2", "--resources", "gpu=1")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert job_counts(dry.stdout) == {"plan": 1}
    assert "alexnet-bench plan --study-json" in dry.stdout
    assert "--cores 2 --gpu-resource 1 --out reports/plan" in dry.stdout
    lint = snakemake(workdir, "--lint", "--cores", "1")
    assert lint.returncode == 0 and "plan.smk" not in lint.stdout + lint.stderr, lint.stdout


def test_image_folder_study_plans_its_store_builds(
    workdir: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An image-folder preset: the prepare_data jobs still to run (one store per split, with its
    images), and the probe's stand-in: a store built by the real builder from a sample of the
    tree, timed (the prepare jobs' rate), with the full store's in-memory choice."""
    from alexnet_bench.config import deep_merge
    from alexnet_bench.imagefolder import store_dir
    from alexnet_bench.plan.build import _probe_config, _store_jobs
    from alexnet_bench.plan.probe import ProbeGroup, sample_stores

    monkeypatch.chdir(workdir)
    run = (
        f"run={{data: {{root: {image_folder}, image_size: 32, stored_size: 36, workers: 0}}, "
        "train: {batch_size: 4}, eval: {batch_size: 4}, "
        "runtime: {compile: false, amp: 'off', device: cpu}}"
    )
    study = load_study("config.yaml", ["preset=imagenet", "seeds=[0]", "ablations=[baseline]", run])
    cells = plan_cells(study, CPU_HOST)
    stores = _store_jobs(study, cells)
    names = [store_dir(".", split, 36).name for split in ("train", "val")]
    assert [Path(s["store"]).name for s in stores] == names  # train-36px-v2-<decoders>, val-...
    assert sum(s["images"] for s in stores) == 18 and {s["size"] for s in stores} == {36}
    group = ProbeGroup(cells[0].group, _probe_config(cells[0]))
    [sampled], rates = sample_stores([group], tmp_path)
    data = sampled.config["data"]
    assert data["in_memory"] == "yes" and Path(data["cache"]).is_relative_to(tmp_path)
    assert all((Path(s) / "manifest.json").is_file() for s in prepared_stores_of(sampled))
    assert set(rates) == {s["store"] for s in stores}
    assert all(r["s_per_image"] > 0 and r["bytes_per_image"] >= 3 * 36**2 for r in rates.values())
    assert not Path("data-cache").exists()  # the study's cache is left alone
    assert deep_merge(group.config, {"data": data}) == sampled.config


def prepared_stores_of(group: Any) -> list[str]:
    from alexnet_bench.config import RunConfig
    from alexnet_bench.study import prepared_stores

    return prepared_stores(RunConfig(group.config))


def test_groups_are_dealt_so_every_worker_has_neighbours() -> None:
    """Fewer groups than workers: groups repeat, so the probe runs as many jobs side by side as
    the study; a model-parallel group on a GPU host goes to worker 0, which sees every GPU."""
    from alexnet_bench.plan.probe import ProbeGroup, _deal, _env

    one, two = ProbeGroup("one", {}), ProbeGroup("two", {})
    towers = ProbeGroup("towers", {"runtime": {"gpus": 2, "parallel": "model"}})

    def keys(assign: list[list[dict]]) -> list[list[str]]:
        return [[g["key"] for g in w] for w in assign]

    assert keys(_deal([one], 3)) == [["one"], ["one"], ["one"]]
    assert keys(_deal([one, two, towers], 2)) == [["one", "towers"], ["two"]]
    assert keys(_deal([one, two, towers], 2, host_gpus=2)) == [["towers", "one"], ["two"]]
    env0, env1 = _env(2, 0, host_gpus=2), _env(2, 1, host_gpus=2)
    assert env0["OMP_NUM_THREADS"] == "2" and env1["MKL_NUM_THREADS"] == "2"
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        assert (env0["CUDA_VISIBLE_DEVICES"], env1["CUDA_VISIBLE_DEVICES"]) == ("0,1", "1")


def test_a_finished_study_costs_nothing_and_probes_nothing(
    study: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alexnet_bench.plan.build as build

    monkeypatch.setattr(build, "probe", lambda *a, **k: pytest.fail("probed"))
    for cell in plan_cells(study, CPU_HOST):
        _finish(
            study,
            cell.ablation,
            cell.seed,
            status="skipped" if cell.state == "skip" else "completed",
        )
    for name in ("index.html", "summary.md"):
        (Path("reports") / name).parent.mkdir(exist_ok=True)
        (Path("reports") / name).write_text("")
    plan = build_plan(
        study, Options(cores=2, gpu_limit=None, host=CPU_HOST, results_dir=Path("results/tiny"))
    )
    assert plan["totals"]["cells_done"] == 6 and plan["totals"]["wall_s"] == 0
    assert plan["jobs"] == [] and plan["totals"]["epochs"] == 0
    assert "Cells: 6 (0 to train, 6 done" in terminal(plan)
