"""Disk use: what a completed run keeps (``train.keep_checkpoint``) and a full disk."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet_bench.checkpoint import (
    CHECKPOINT,
    FINAL_WEIGHTS,
    PREVIOUS,
    load_latest,
    retire_checkpoints,
    tensor_bytes,
)
from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.errors import DiskFullError
from alexnet_bench.identity import run_identity
from alexnet_bench.io import disk_full_message
from alexnet_bench.train import EpochStats, Trainer, run_training

from .conftest import fit_killed_in_epoch, tiny_run

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
        assert load_latest(tmp_path, run_identity(cfg.hash, None)) == (None, [])


def test_final_weights_are_the_trained_model(tmp_path: Path) -> None:
    """model_final.pt loads safely (weights only) into a fresh model and reproduces the run's
    final validation loss exactly; it holds no optimiser state."""
    cfg = RunConfig(tiny_run())  # schema default: keep_checkpoint final
    metrics = run_training(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / FINAL_WEIGHTS, map_location="cpu", weights_only=True)
    assert set(state) == {"config_hash", "identity_hash", "epoch", "config", "model"}
    assert state["config_hash"] == cfg.hash and state["epoch"] == cfg.train.epochs
    assert state["identity_hash"] == metrics["identity"]["hash"]
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
    fit_killed_in_epoch(Trainer(cfg, tmp_path), 3, KeyboardInterrupt)
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

        def unlink(
            self: Path, missing_ok: bool = False, _limit: int = crash_after, _done: list = done
        ) -> None:
            if _done[0] == _limit:
                raise SystemExit("power loss")
            _done[0] += 1
            real_unlink(self, missing_ok=missing_ok)

        monkeypatch.setattr(Path, "unlink", unlink)
        try:
            retire_checkpoints(out)
            crashed = False
        except SystemExit:
            crash_after += 1
        monkeypatch.setattr(Path, "unlink", real_unlink)
        state, _ = load_latest(out, run_identity(RunConfig(cfg).hash, None), model)
        outcomes.add(None if state is None else state["epoch"])
    assert crash_after >= len(RESUME_FILES) and outcomes == {2, None}


# ------------------------------------------------------------------------------ full disk

TORCH_FULL_DISK = "[enforce fail at inline_container.cc:671] . unexpected pos 576 vs 534"


def _full_disk_writer(monkeypatch: pytest.MonkeyPatch, kind: str, fail_from_call: int) -> None:
    """Make ``torch.save`` in the checkpoint module fail from its ``fail_from_call``-th call, as
    on a full disk: part of the file written, then torch's RuntimeError (the file system reports
    3 MB free before the write, 0 after) or an OSError with ENOSPC (the real free space)."""
    import alexnet_bench.checkpoint as ckpt
    import alexnet_bench.io as io_mod

    real_save, real_usage, calls = torch.save, shutil.disk_usage, [0]
    full = [False]

    def save(obj: object, path: Path) -> None:
        calls[0] += 1
        if calls[0] < fail_from_call:
            return real_save(obj, path)
        Path(path).write_bytes(b"PK\x03\x04" + b"\x00" * 4096)  # what fitted
        full[0] = True
        if kind == "torch_writer":
            raise RuntimeError(TORCH_FULL_DISK)
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_usage(path: str | Path) -> object:
        usage = real_usage(path)
        if kind == "torch_writer":  # 3 MB free before the write, nothing once it failed
            return usage._replace(free=0 if full[0] else 3_000_000)
        return usage

    monkeypatch.setattr(ckpt.torch, "save", save)
    monkeypatch.setattr(io_mod.shutil, "disk_usage", disk_usage)


@pytest.mark.parametrize("kind", ["torch_writer", "enospc"])
@pytest.mark.parametrize("record", [False, True], ids=["plain", "record_failures"])
def test_full_disk_is_one_line_and_the_run_resumes_after(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    record: bool,
) -> None:
    """The disk fills up while epoch 2's checkpoint is written: one ``error: disk full`` line
    naming the file and the space it needs, the exit status and metrics.json of any failure
    (2 and none; 0 and a 'failed' record under --record-failures), epoch 1's checkpoint
    intact, no partial file left; once there is room again, the rerun resumes from epoch 1."""
    cfg = tiny_run(train={"epochs": 3, "keep_checkpoint": "none"})
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--config-json", json.dumps(cfg)]
    _full_disk_writer(monkeypatch, kind, fail_from_call=2)
    code = main([*args, "--record-failures"] if record else args)
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    line = err[0]
    assert line.startswith(f"error: disk full: cannot write {out / CHECKPOINT} (needs about ")
    if kind == "torch_writer":
        assert "MB, 3.0 MB was free on " in line and line.endswith(
            "; free at least 4.2 MB more there and rerun"
        )
    else:  # the real disk had room when the write began (filled by someone else meanwhile)
        assert " was free on " in line and line.endswith("; free space there and rerun")
    if record:
        assert code == 0 and len(err) == 2 and err[1].startswith("recorded failure in")
        on_disk = json.loads((out / "metrics.json").read_text())
        assert on_disk["status"] == "failed" and on_disk["reason"] == line.removeprefix("error: ")
        (out / "metrics.json").unlink()  # what `snakemake -R $(alexnet-bench list-failed)` does
    else:
        assert code == 2 and len(err) == 1 and not (out / "metrics.json").exists()
    assert {p.name for p in out.iterdir() if p.name.startswith(".")} == set()  # no partial file
    state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1

    monkeypatch.undo()  # space freed
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] == 1


def test_needed_space_is_the_checkpoint_size(tmp_path: Path) -> None:
    """The size named in the message is what torch.save writes, within a few percent."""
    trainer = Trainer(RunConfig(tiny_run()), tmp_path)
    state = {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()}
    torch.save(state, tmp_path / "probe.pt")
    assert tensor_bytes(state) == pytest.approx((tmp_path / "probe.pt").stat().st_size, rel=0.05)
    message = disk_full_message(tmp_path / "x.pt", 1_500_000, 400_000)
    assert "(needs about 1.5 MB, 400.0 kB was free on " in message
    assert message.endswith("; free at least 1.1 MB more there and rerun")


def test_other_write_errors_are_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alexnet_bench.checkpoint as ckpt

    def broken(obj: object, path: Path) -> None:
        raise RuntimeError("some other serialisation error")

    monkeypatch.setattr(ckpt.torch, "save", broken)
    with pytest.raises(RuntimeError, match="some other") as info:
        ckpt.save_checkpoint(tmp_path, {"epoch": 1})
    assert not isinstance(info.value, DiskFullError)


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a tmpfs")
def test_full_tmpfs_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A real full file system: a 10 MB tmpfs (private mount namespace) holds epoch 1's 7.2 MB
    checkpoint but not epoch 2's beside it. The job ends with one line, exit status 2, no
    metrics.json, and epoch 1's checkpoint intact (copied out before the tmpfs goes away)."""
    cfg = tiny_run(train={"epochs": 3, "keep_checkpoint": "none"})
    mnt, copy = tmp_path / "mnt", tmp_path / "copy"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=10m tmpfs {mnt} || exit 99; "
        f"{shlex.quote(sys.executable)} -m alexnet_bench.cli train --out {mnt}/run "
        f"--config-json {shlex.quote(json.dumps(cfg))}; rc=$?; cp -r {mnt}/run {copy}; exit $rc"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and err[-1].startswith(
        f"error: disk full: cannot write {mnt}/run/{CHECKPOINT} (needs about 7."
    ), err[-1]
    assert f"MB was free on {mnt}); free at least " in err[-1]  # 10 MB less epoch 1's file
    assert not (copy / "metrics.json").exists()
    assert torch.load(copy / CHECKPOINT, weights_only=True)["epoch"] == 1
