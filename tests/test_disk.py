"""Disk use: what a completed run keeps (``train.keep_checkpoint``) and a full disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from alexnet_bench.checkpoint import (
    CHECKPOINT,
    FINAL_WEIGHTS,
    PREVIOUS,
    load_latest,
    retire_checkpoints,
)
from alexnet_bench.config import RunConfig
from alexnet_bench.train import EpochStats, Trainer, run_training

from .conftest import tiny_run

RESUME_FILES = {CHECKPOINT, CHECKPOINT + ".sha256", PREVIOUS, PREVIOUS + ".sha256"}


def weight_files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if ".pt" in p.name}


@pytest.fixture(scope="module")
def kept_all(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A completed 2-epoch run that kept its resume checkpoints (``keep_checkpoint: all``)."""
    out = tmp_path_factory.mktemp("kept") / "run"
    cfg = tiny_run(train={"keep_checkpoint": "all"})
    run_training(RunConfig(cfg), out)
    return out, cfg


@pytest.mark.parametrize(
    ("keep", "expected"),
    [("all", RESUME_FILES), ("final", {FINAL_WEIGHTS}), ("none", set())],
)
def test_completed_run_keeps_what_keep_checkpoint_says(
    tmp_path: Path, keep: str, expected: set[str]
) -> None:
    cfg = RunConfig(tiny_run(train={"keep_checkpoint": keep}))
    metrics = run_training(cfg, tmp_path)
    assert metrics["status"] == "completed" and (tmp_path / "metrics.json").is_file()
    assert weight_files(tmp_path) == expected
    if keep != "all":  # nothing left to resume from
        assert load_latest(tmp_path, cfg.hash) == (None, [])


def test_final_weights_are_the_trained_model(tmp_path: Path) -> None:
    """model_final.pt loads safely (weights only) into a fresh model and reproduces the run's
    final validation loss exactly; it holds no optimiser state."""
    cfg = RunConfig(tiny_run())  # schema default: keep_checkpoint final
    metrics = run_training(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / FINAL_WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == {"config_hash", "epoch", "config", "model"}
    assert state["config_hash"] == cfg.hash and state["epoch"] == cfg.train.epochs
    fresh = Trainer(RunConfig(state["config"]), tmp_path / "probe")
    before = fresh.evaluate().loss
    fresh.model.load_state_dict(state["model"])
    after = fresh.evaluate().loss
    assert after == pytest.approx(metrics["final"]["val_loss"], rel=1e-6)
    assert before != pytest.approx(after, rel=1e-3)  # the check can fail: untrained differs


def test_killed_run_still_resumes_and_completed_run_is_not_resumed(tmp_path: Path) -> None:
    """A run killed mid-training keeps its checkpoints and resumes; once it has completed, a
    rerun finds nothing to resume and trains from the start."""
    cfg = RunConfig(tiny_run(train={"epochs": 3, "keep_checkpoint": "none"}))
    trainer = Trainer(cfg, tmp_path)
    original = trainer.train_epoch

    def killed_in_epoch_3(epoch: int):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(epoch)

    trainer.train_epoch = killed_in_epoch_3  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert weight_files(tmp_path) == RESUME_FILES
    resumed = run_training(cfg, tmp_path)
    assert resumed["resumed_from_epoch"] == 2 and weight_files(tmp_path) == set()
    rerun = run_training(cfg, tmp_path)
    assert rerun["resumed_from_epoch"] is None and rerun["final"] == resumed["final"]


def test_diverged_run_keeps_its_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only completed runs retire their checkpoints (a diverged one stays as it stopped)."""
    original = Trainer.train_epoch

    def diverge_in_epoch_2(self: Trainer, epoch: int) -> EpochStats:
        stats = original(self, epoch)
        if epoch == 2:
            stats.finite = False
        return stats

    monkeypatch.setattr(Trainer, "train_epoch", diverge_in_epoch_2)
    metrics = run_training(RunConfig(tiny_run(train={"keep_checkpoint": "none"})), tmp_path)
    assert metrics["status"] == "diverged" and metrics["diverged_epoch"] == 2
    assert weight_files(tmp_path) == {CHECKPOINT, CHECKPOINT + ".sha256"}


def test_retiring_is_crash_safe_at_every_point(
    kept_all: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after any number of deletions leaves the final epoch's checkpoint or nothing to
    resume from, never the previous generation (which would retrain the last epoch)."""
    src, cfg = kept_all
    model = Trainer(RunConfig(cfg), tmp_path / "probe").model.state_dict()
    real_unlink = Path.unlink
    outcomes: set[int | None] = set()
    crash_after, crashed = 0, True
    while crashed:
        out = tmp_path / f"crash{crash_after}"
        shutil.copytree(src, out)
        done = [0]

        def unlink(self: Path, missing_ok: bool = False, _limit: int = crash_after) -> None:
            if done[0] == _limit:
                raise SystemExit("power loss")
            done[0] += 1
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
        try:
            retire_checkpoints(out)
            crashed = False
        except SystemExit:
            crash_after += 1
        monkeypatch.setattr(Path, "unlink", real_unlink)
        state, _ = load_latest(out, RunConfig(cfg).hash, model)
        outcomes.add(None if state is None else state["epoch"])
    assert crash_after >= len(RESUME_FILES) and outcomes == {2, None}
