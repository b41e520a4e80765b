"""Training: learning, metrics files, resume after interruption, divergence, CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.train import Trainer, run_training

from .conftest import fit_killed_in_epoch, tiny_run


def read_history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_short_run_learns_and_writes_metrics(tmp_path: Path) -> None:
    cfg = RunConfig(
        tiny_run(
            model={"width": 0.125, "init": "kaiming", "dropout": 0.0},
            data={"num_train": 320},
            train={"epochs": 4, "lr": 0.02},
        )
    )
    metrics = run_training(cfg, tmp_path, {"ablation": "baseline", "seed": 0})
    rows = read_history(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["schema_version"] == 2
    assert on_disk["run"] == {"ablation": "baseline", "seed": 0}
    assert on_disk["config_hash"] == cfg.hash and on_disk["model"]["num_params"] > 0
    for key in (
        "final",
        "best",
        "time_to_target",
        "throughput",
        "step_time",
        "flops",
        "gpu",
        "host",
        "environment",
        "data",
        "parallel",
    ):
        assert key in on_disk, key
    assert on_disk["gpu"]["available"] is False and on_disk["gpu"]["reason"]
    assert on_disk["step_time"]["steps_timed"] > 0
    assert 0 <= on_disk["final"]["val_top1_error"] <= 1
    assert metrics["final"] == on_disk["final"]


def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path) -> None:
    run = tiny_run(train={"epochs": 3})
    full = run_training(RunConfig(run), tmp_path / "full")

    class Killed(Exception):
        pass

    interrupted = tmp_path / "interrupted"
    fit_killed_in_epoch(Trainer(RunConfig(run), interrupted), 3, Killed)
    assert (interrupted / "checkpoint.pt").exists() and not (interrupted / "metrics.json").exists()
    resumed = run_training(RunConfig(run), interrupted)
    assert resumed["resumed_from_epoch"] == 2
    assert [r["epoch"] for r in read_history(interrupted)] == ["1", "2", "3"]
    for key in ("train_loss", "train_top1_error", "val_top1_error", "val_top5_error"):
        assert resumed["final"][key] == pytest.approx(full["final"][key], rel=1e-6, abs=1e-9), key
    # completed (default keep_checkpoint: final): the final weights stay, the resume points go
    assert sorted(p.name for p in interrupted.glob("*.pt*")) == ["model_final.pt"]


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path: Path) -> None:
    run = tiny_run(train={"epochs": 2, "keep_checkpoint": "all"})
    run_training(RunConfig(run), tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"truncated")
    run["train"]["epochs"] = 3
    # a different config (epochs) is a different run: start clean, note why
    metrics = run_training(RunConfig(run), tmp_path / "other")
    assert metrics["resumed_from_epoch"] is None
    from alexnet_bench.checkpoint import load_latest
    from alexnet_bench.identity import run_identity

    original = RunConfig(tiny_run(train={"epochs": 2, "keep_checkpoint": "all"}))
    state, notes = load_latest(tmp_path, run_identity(original.hash, None))
    assert state is not None and state["epoch"] == 1
    assert any("checkpoint.pt" in n and "corrupt" in n for n in notes)


def test_divergence_is_recorded_not_crashed(tmp_path: Path) -> None:
    cfg = RunConfig(
        tiny_run(
            model={"activation": "tanh", "lrn": False, "init": "kaiming"},
            train={"epochs": 3, "lr": 1e6, "lr_schedule": "constant"},
        )
    )
    metrics = run_training(cfg, tmp_path)
    assert metrics["status"] == "diverged" and "non-finite" in metrics["reason"]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())  # valid JSON: NaN -> null
    assert (
        on_disk["status"] == "diverged" and on_disk["diverged_epoch"] == metrics["diverged_epoch"]
    )
    rows = read_history(tmp_path)
    assert len(rows) == metrics["diverged_epoch"] and rows[-1]["train_loss"] == "nan"
    assert all(row["train_loss"] != "nan" for row in rows[:-1])
    assert on_disk["epochs_completed"] == len(rows) - 1


def _cli(tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(
        ["train", "--out", str(tmp_path / "out"), "--config-json", json.dumps(tiny_run()), *extra]
    )
    return code, capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    code, err = _cli(tmp_path, capsys, "--set", "model.activation=sigmoid")
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "error: config key 'model.activation'"
    )
    code, err = _cli(
        tmp_path, capsys, "--set", "data.source=imagefolder", "--set", f"data.root={tmp_path}/nope"
    )
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cli_records_failure_for_the_report(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    (folder / "bad.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "imgs" / "b" / "bad2.png").write_bytes(b"junk")
    code, err = _cli(
        tmp_path,
        capsys,
        "--set",
        "data.source=imagefolder",
        "--set",
        f"data.root={tmp_path / 'imgs'}",
        "--record-failures",
    )
    assert code == 0 and "cannot decode image" in err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "bad" in metrics["reason"]


def test_cli_skips_a_job_needing_more_gpus(tmp_path: Path, capsys) -> None:
    code, err = _cli(
        tmp_path, capsys, "--set", "runtime.device=cuda", "--on-insufficient-gpus", "skip"
    )
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "skipped" and "GPU" in metrics["reason"]
    code, err = _cli(tmp_path, capsys, "--set", "runtime.device=cuda")
    assert code == 2 and err.startswith("error: runtime.device=cuda but no CUDA GPU")


def test_help_documents_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--config",
        "--config-json",
        "--set",
        "--out",
        "--label",
        "--record-failures",
        "--on-insufficient-gpus",
        "--gpu-lock-dir",
    ):
        assert option in text
