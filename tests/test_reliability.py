"""Fault injection: kills, signals, corrupt files, bad inputs and concurrent workflows.

Each test injects one fault into real processes (the CLI, Snakemake and its jobs, torchrun's
workers) on tiny data and checks that nothing is lost and that every failure is explained.
``docs/reliability.md`` maps each fault to the test that proves it.

Where a kill must land mid-epoch, or a test must act while a job is still running, the job is
held, not slowed: ``tests/faultinject/sitecustomize.py`` (put on ``PYTHONPATH``) logs every
training step to a progress file and stops each process right before a chosen step until the
test releases it. The test waits for that hold, acts (kills the job, or starts a competing
Snakemake), and checks afterwards that the last checkpoint is the previous epoch's. No test
depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from alexnet_bench.checkpoint import CHECKPOINT, PREVIOUS, load_latest, save_checkpoint
from alexnet_bench.cli import main
from alexnet_bench.collect import load_run
from alexnet_bench.config import RunConfig
from alexnet_bench.errors import DeviceError
from alexnet_bench.gpu_lock import acquire_gpus
from alexnet_bench.identity import run_identity
from alexnet_bench.reports import build_report
from alexnet_bench.study import resolve_run
from alexnet_bench.train import Trainer, run_training

from .conftest import tiny_run
from .helpers import (
    checkpoint_epoch,
    image_dir,
    metric_rows,
    metrics_of,
    progress_lines,
    read_history,
    release,
    snakemake_cmd,
    snapshot,
    stop,
    study_dir,
    train_cmd,
    wait_for_hold,
    with_faults,
)

FAKE_GPU = "GPU-fault-injection"  # a CUDA_VISIBLE_DEVICES entry no GPU has: torch sees no CUDA


# ------------------------------------------------------------------------------ helpers


def lock_is_free(lock_dir: Path, pool: list[str]) -> bool:
    try:
        acquire_gpus(len(pool), lock_dir, pool, timeout_s=0).release()
    except DeviceError:
        return False
    return True


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A completed 2-epoch tiny run (checkpoint.pt = epoch 2, checkpoint.prev.pt = epoch 1)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = tiny_run(train={"keep_checkpoint": "all"})
    run_training(RunConfig(cfg), out)
    return out, cfg


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------- kill -9 and resume (CLI)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill9_mid_epoch_resumes_from_last_checkpoint_equal_to_uninterrupted(
    tmp_path: Path, proc_env: dict[str, str]
) -> None:
    """SIGKILL inside epoch 2; the rerun resumes at epoch 1 and ends bitwise like a clean run.

    The job holds a (fake) GPU lock; the rerun must reclaim the dead job's stale lock.
    """
    run = tiny_run(train={"epochs": 3})
    full = run_training(RunConfig(run), tmp_path / "full")  # uninterrupted, device cpu
    killed = tiny_run(train={"epochs": 3}, runtime={"device": "auto", "threads": 1})
    out, locks, progress = tmp_path / "killed", tmp_path / "locks", tmp_path / "progress"
    env = {**proc_env, "CUDA_VISIBLE_DEVICES": FAKE_GPU}  # cpu, but a lockable device
    lock_args = ("--gpu-lock-dir", str(locks), "--gpu-wait-s", "10")
    job = subprocess.Popen(
        train_cmd(out, killed, *lock_args),
        env=with_faults(env, progress, hold_at=(2, 3)),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_hold(progress, proc=job)  # steps 1-2 of epoch 2 done, held before step 3
        assert not lock_is_free(locks, [FAKE_GPU]), "the running job must hold its GPU lock"
        job.send_signal(signal.SIGKILL)
        job.wait(30)
    finally:
        stop(job)
    assert job.returncode == -signal.SIGKILL
    assert checkpoint_epoch(out / CHECKPOINT) == 1, "the kill must land inside epoch 2"
    assert not (out / "metrics.json").exists() and not (out / "history.csv").exists()

    rerun = subprocess.run(
        train_cmd(out, killed, *lock_args), env=env, capture_output=True, text=True, timeout=180
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = metrics_of(out)
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] == 1
    assert metrics["notes"] == []
    assert [r["epoch"] for r in read_history(out)] == ["1", "2", "3"]  # no gap, no duplicate
    assert metric_rows(out) == metric_rows(tmp_path / "full")
    assert metrics["final"] == full["final"] and metrics["best"] == full["best"]
    assert lock_is_free(locks, [FAKE_GPU])


# ------------------------------------------------------------------- SIGINT / SIGTERM (CLI)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigint_and_sigterm_leave_no_outputs_release_the_gpu_lock_and_explain(
    tmp_path: Path, proc_env: dict[str, str]
) -> None:
    """Ctrl-C and SIGTERM mid-epoch: one 'interrupted' line, status 128+n, no metrics.json or
    history.csv (so Snakemake cannot take the job as complete), no temp files, the GPU lock free
    and a verified checkpoint to resume from. Both jobs run at once (one per core)."""
    cfg = tiny_run(train={"epochs": 3}, runtime={"device": "auto", "threads": 1})
    env = {**proc_env, "CUDA_VISIBLE_DEVICES": FAKE_GPU}
    jobs: dict[signal.Signals, tuple[subprocess.Popen, Path, Path]] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            out, locks = tmp_path / sig.name / "out", tmp_path / sig.name / "locks"
            progress = tmp_path / sig.name / "progress"
            out.parent.mkdir()
            cmd = train_cmd(out, cfg, "--gpu-lock-dir", str(locks))
            proc = subprocess.Popen(
                cmd,
                env=with_faults(env, progress, hold_at=(2, 3)),
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            jobs[sig] = (proc, out, locks)
        for sig, (proc, out, locks) in jobs.items():
            wait_for_hold(out.parent / "progress", proc=proc)
            assert not lock_is_free(locks, [FAKE_GPU])
            proc.send_signal(sig)
        for proc, _, _ in jobs.values():
            proc.wait(60)
    finally:
        for proc, _, _ in jobs.values():
            stop(proc)
    for sig, (proc, out, locks) in jobs.items():
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 128 + sig, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last == (
            f"interrupted by {sig.name}: no metrics.json was written; rerun the same "
            f"command to resume from {out / CHECKPOINT}"
        )
        assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, CHECKPOINT + ".sha256"]
        state, notes = load_latest(out, run_identity(RunConfig(cfg).hash, None))
        assert state is not None and state["epoch"] == 1 and notes == []
        assert lock_is_free(locks, [FAKE_GPU])


class _FakeSampler:
    """Stands in for GpuSampler: a real thread that only stop() ends (daemon, so a regression
    fails the test instead of hanging the interpreter at exit)."""

    instances: ClassVar[list[_FakeSampler]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._stop.wait, name="FakeSampler", daemon=True)
        _FakeSampler.instances.append(self)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)

    def summary(self, images: int | None = None) -> dict[str, Any]:
        return {"available": False, "reason": "fake"}


@pytest.mark.timeout(120)
def test_sigterm_in_process_stops_telemetry_releases_lock_restores_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real SIGTERM to this process mid-epoch: the sampler thread is joined, the GPU lock
    released (another open file can take it at once), no metrics.json, handlers restored."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", FAKE_GPU)
    monkeypatch.setattr("alexnet_bench.train.GpuSampler", _FakeSampler)
    original_epoch = Trainer.train_epoch

    def killed_in_epoch_2(self: Trainer, epoch: int) -> Any:
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_epoch_2)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out, locks = tmp_path / "out", tmp_path / "locks"
    cfg = tiny_run(runtime={"device": "auto", "threads": 1})
    _FakeSampler.instances.clear()
    code = main(
        ["train", "--out", str(out), "--config-json", json.dumps(cfg), "--gpu-lock-dir", str(locks)]
    )
    err = capsys.readouterr().err
    alive = [s.thread.is_alive() for s in _FakeSampler.instances]
    for sampler in _FakeSampler.instances:
        sampler.stop()
    assert code == 128 + signal.SIGTERM and "interrupted by SIGTERM" in err
    assert alive == [False], "the telemetry thread must be stopped when the job is interrupted"
    assert lock_is_free(locks, [FAKE_GPU])
    assert not (out / "metrics.json").exists() and checkpoint_epoch(out / CHECKPOINT) == 1
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# ------------------------------------------------------------------ DDP jobs interrupted


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["sigterm_launcher", "sigkill_worker"])
def test_interrupted_ddp_job_stops_every_process_and_stays_resumable(
    fault: str, tmp_path: Path, proc_env: dict[str, str]
) -> None:
    """A 2-process DDP job (CPU stand-in) in epoch 2: SIGTERM to its launcher, or SIGKILL of
    one worker (an OOM kill). Every process stops (no worker outlives the job to write
    metrics.json later), the GPU locks stay held until the last one has exited, nothing is
    recorded as 'failed' even with --record-failures (a rerun must resume, not skip the cell),
    the job explains itself in one line and the epoch-1 checkpoint is intact."""
    cfg = tiny_run(train={"epochs": 3}, runtime={"device": "auto", "threads": 1, "gpus": 2})
    out, locks, progress = tmp_path / "out", tmp_path / "locks", tmp_path / "progress"
    pool = [f"{FAKE_GPU}-0", f"{FAKE_GPU}-1"]
    env = with_faults({**proc_env, "CUDA_VISIBLE_DEVICES": ",".join(pool)}, progress, (2, 3))
    cmd = train_cmd(out, cfg, "--gpu-lock-dir", str(locks), "--record-failures")
    job = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        workers = wait_for_hold(progress, proc=job, ranks=2)  # both ranks mid-epoch 2
        assert len(workers) == 2 and job.pid not in workers
        assert not lock_is_free(locks, pool)
        if fault == "sigterm_launcher":
            job.send_signal(signal.SIGTERM)
        else:
            rank1 = {p for p, r, e, _ in progress_lines(progress) if r == 1 and e == 2}
            os.kill(rank1.pop(), signal.SIGKILL)
        deadline = time.monotonic() + 120
        while job.poll() is None and time.monotonic() < deadline:
            if lock_is_free(locks, pool):  # free now, so no worker may still be running after
                assert not [pid for pid in workers if _alive(pid)], "GPUs unlocked too early"
            time.sleep(0.05)
        job.wait(10)
        err = job.stderr.read() if job.stderr else ""
    finally:
        stop(job)
    last = err.strip().splitlines()[-1]
    if fault == "sigterm_launcher":
        assert job.returncode == 128 + signal.SIGTERM, err[-3000:]
        assert last.startswith("interrupted by SIGTERM: no metrics.json was written"), last
    else:
        assert job.returncode not in (0, 2), err[-3000:]
        assert last.startswith("error: DDP worker group exited with status"), last
        assert "rerun the job to resume" in last
    alive = [pid for pid in workers if _alive(pid)]
    assert alive == [], f"DDP workers {alive} outlived their job"
    assert not (out / "metrics.json").exists() and not (out / "history.csv").exists()
    state, notes = load_latest(out, run_identity(RunConfig(cfg).hash, None))
    assert state is not None and state["epoch"] == 1 and notes == []
    assert lock_is_free(locks, pool)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.timeout(60)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_sigkill_of_the_launcher_stops_its_supervised_child(tmp_path: Path) -> None:
    """kill -9 of a process running ``launch.supervise`` (the DDP launcher) still stops the child:
    the kernel delivers SIGTERM to it (PR_SET_PDEATHSIG), so torchrun cannot run on orphaned."""
    pid_file = tmp_path / "child.pid"
    child = (
        f"import os, signal; open({str(pid_file)!r}, 'w').write(str(os.getpid())); signal.pause()"
    )
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from alexnet_bench.launch import supervise; "
                f"sys.exit(supervise([sys.executable, '-c', {child!r}], {{}}))"
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        launcher.kill()
        launcher.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), "the supervised child outlived its SIGKILLed parent"
    finally:
        launcher.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


# ---------------------------------------------------------------- corrupt checkpoints


class _Payload:
    """Unpickling this would run code (create a file): a safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _garbage_without_sidecar(path: Path) -> None:
    (path.parent / (path.name + ".sha256")).unlink()
    path.write_bytes(b"\x00garbage, not a zip archive")


def _truncated_without_sidecar(path: Path) -> None:
    (path.parent / (path.name + ".sha256")).unlink()
    _truncate(path)


def _unsafe_pickle(path: Path) -> None:
    (path.parent / (path.name + ".sha256")).unlink()
    torch.save({"epoch": 9, "model": _Payload(path.parent / "PWNED")}, path)


def _wrong_content(path: Path) -> None:
    """A valid, checksummed torch file that is not a resumable checkpoint."""
    save_checkpoint(path.parent, {"epoch": 2, "note": "not a checkpoint"})


CORRUPTIONS = {
    "truncated": _truncate,
    "bit_flip": _flip_byte,
    "garbage_no_sidecar": _garbage_without_sidecar,
    "truncated_no_sidecar": _truncated_without_sidecar,
    "unsafe_pickle": _unsafe_pickle,
    "wrong_content": _wrong_content,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_unusable_checkpoint_is_named_quarantined_and_previous_used(
    corrupt: Any, finished_run: tuple[Path, dict], tmp_path: Path
) -> None:
    src, cfg = finished_run
    out = copy_run(src, tmp_path / "run")
    if corrupt is _wrong_content:  # save_checkpoint rotates the good one into .prev first
        (out / PREVIOUS).unlink()
    corrupt(out / CHECKPOINT)
    model = Trainer(RunConfig(cfg), tmp_path / "probe").model.state_dict()
    state, notes = load_latest(out, run_identity(RunConfig(cfg).hash, None), model)
    assert state is not None and state["epoch"] == (2 if corrupt is _wrong_content else 1)
    assert len(notes) == 1 and str(out / CHECKPOINT) in notes[0] and "skipped" in notes[0]
    assert (out / (CHECKPOINT + ".corrupt")).exists() and not (out / CHECKPOINT).exists()
    assert not (out / "PWNED").exists(), "torch.load must not unpickle arbitrary objects"


def test_checkpoint_for_other_parameter_shapes_starts_fresh(
    finished_run: tuple[Path, dict], tmp_path: Path
) -> None:
    """Same config hash, other parameter shapes (another code version): clean restart, no crash."""
    src, cfg = finished_run
    out = copy_run(src, tmp_path / "run")
    wider = Trainer(RunConfig(tiny_run(model={"width": 0.25})), tmp_path / "probe")
    for name in (CHECKPOINT, PREVIOUS):
        state = torch.load(out / name, weights_only=True)
        state["model"] = wider.model.state_dict()
        torch.save(state, out / name)
        (out / (name + ".sha256")).unlink()
    (out / "metrics.json").unlink()
    code = main(["train", "--out", str(out), "--config-json", json.dumps(cfg)])
    assert code == 0
    metrics = metrics_of(out)
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] is None
    assert "of shape" in metrics["notes"][0] and str(out / CHECKPOINT) in metrics["notes"][0]


@pytest.mark.timeout(180)
def test_corrupt_checkpoints_fall_back_then_restart_never_crash_loop(
    finished_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job killed after its last checkpoint, whose checkpoint.pt is then truncated, resumes
    from checkpoint.prev.pt; with both generations corrupt it restarts cleanly; every rerun
    completes, with the same result as the uninterrupted run."""
    src, cfg = finished_run
    out = copy_run(src, tmp_path / "run")
    args = ["train", "--out", str(out), "--config-json", json.dumps(cfg)]
    for name in ("metrics.json", "history.csv"):  # as if killed after the last checkpoint
        (out / name).unlink()
    _truncate(out / CHECKPOINT)
    assert main(args) == 0
    metrics = metrics_of(out)
    assert metrics["resumed_from_epoch"] == 1
    assert f"unusable checkpoint {out / CHECKPOINT} skipped" in metrics["notes"][0]
    assert metric_rows(out) == metric_rows(src) and metrics["final"] == metrics_of(src)["final"]

    for name in ("metrics.json", "history.csv"):
        (out / name).unlink()
    _garbage_without_sidecar(out / CHECKPOINT)
    _flip_byte(out / PREVIOUS)
    for attempt in range(2):  # the second rerun finds the fresh run's good checkpoints
        assert main(args) == 0, capsys.readouterr().err
        metrics = metrics_of(out)
        assert metrics["status"] == "completed" and metric_rows(out) == metric_rows(src)
        if attempt == 0:
            assert metrics["resumed_from_epoch"] is None
            assert [
                str(out / CHECKPOINT) in metrics["notes"][0],
                str(out / PREVIOUS) in metrics["notes"][1],
            ] == [True, True]
        else:
            assert metrics["resumed_from_epoch"] == 2 and metrics["notes"] == []


# ------------------------------------------------------------ corrupt metrics / history


def test_corrupt_metrics_and_history_are_reported_by_path(
    finished_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = finished_run
    results = tmp_path / "results" / "tiny"
    good = copy_run(src, results / "baseline" / "seed0")
    truncated = copy_run(src, results / "tanh" / "seed0")
    (truncated / "metrics.json").write_text((good / "metrics.json").read_text()[:200])
    bad_history = copy_run(src, results / "no_lrn" / "seed0")
    (bad_history / "history.csv").write_bytes(b"\xff\xfe\x00binary\x00junk")

    run = load_run(truncated / "metrics.json")
    assert run.status == "unparseable" and "invalid JSON at line" in (run.reason or "")
    assert any("history.csv unreadable" in n for n in load_run(bad_history / "metrics.json").notes)
    assert main(["list-failed", str(results)]) == 0
    assert capsys.readouterr().out.split() == [str(truncated / "metrics.json")]

    build_report(results, tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert str(truncated / "metrics.json") in summary and "unparseable" in summary


# ------------------------------------------------------------------------- divergence


def _poison(value: float) -> Any:
    original = Trainer.train_epoch

    def poisoned(self: Trainer, epoch: int) -> Any:
        if epoch == 2:  # make the loss non-finite from here on, like an exploding update
            with torch.no_grad():
                self.model.classifier[-1].bias[0] = value
        return original(self, epoch)

    return poisoned


@pytest.mark.parametrize("value", [float("nan"), float("-inf")], ids=["nan", "inf"])
def test_divergence_records_epoch_and_last_finite_metrics_and_report_shows_it(
    value: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN (or an infinite loss) in epoch 2: status diverged at epoch 2, 'final' holds epoch
    1's metrics, the history ends with the diverged row, the report lists it with its epoch."""
    results = tmp_path / "results" / "tiny"
    ok = results / "baseline" / "seed0"
    run_training(RunConfig(tiny_run()), ok, {"ablation": "baseline", "seed": 0})
    monkeypatch.setattr(Trainer, "train_epoch", _poison(value))
    bad = results / "poisoned" / "seed0"
    metrics = run_training(
        RunConfig(tiny_run(train={"epochs": 3})), bad, {"ablation": "poisoned", "seed": 0}
    )
    on_disk = metrics_of(bad)
    assert on_disk["status"] == "diverged" and on_disk["diverged_epoch"] == 2
    assert on_disk["epochs_completed"] == 1 and "epoch 2" in on_disk["reason"]
    rows = read_history(bad)
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["train_loss"] == "nan"
    for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error"):
        assert on_disk["final"][key] == float(rows[0][key]) == metrics["final"][key], key

    build_report(results, tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    problems = summary.split("## Collapsed, failed, skipped, diverged", 1)[1].split("## All runs")[
        0
    ]
    assert "poisoned" in problems and "diverged" in problems and "epoch 2" in problems
    assert "baseline" not in problems


# ----------------------------------------------------------------- bad inputs (CLI)


def _folder(kind: str) -> Any:
    def make(tmp: Path) -> list[str]:
        root = tmp / f"data-{kind}"
        if kind == "empty":
            root.mkdir()
        elif kind == "one_class":
            image_dir(root, classes=1)
        elif kind == "corrupt":
            image_dir(root, classes=2, corrupt=True)
        return [
            "--set",
            "data.source=imagefolder",
            "--set",
            f"data.root={root}",
            "--set",
            "train.batch_size=2",
        ]

    return make


def _malformed_yaml(tmp: Path) -> list[str]:
    (tmp / "bad.yaml").write_text("model:\n  activation: [relu\n")
    return ["--config", str(tmp / "bad.yaml")]


def _sets(*items: str) -> Any:
    return lambda tmp: [a for item in items for a in ("--set", item)]


BAD_INPUTS = {
    "malformed_yaml": (_malformed_yaml, "malformed YAML in"),
    "missing_config_file": (lambda tmp: ["--config", str(tmp / "nope.yaml")], "does not exist"),
    "invalid_json": (lambda tmp: ["--config-json", '{"train": '], "is not valid JSON"),
    "unknown_key": (
        _sets("model.lrm=false"),
        "unknown config key 'model.lrm' (did you mean 'lrn'?)",
    ),
    "unknown_section": (_sets("modle.width=1"), "unknown config key 'modle'"),
    "wrong_type": (_sets("train.lr=fast"), "config key 'train.lr' must be a number"),
    "float_epochs": (_sets("train.epochs=2.0"), "config key 'train.epochs' must be an integer"),
    "unknown_ablation_value": (_sets("model.activation=sigmoid"), "set it to one of: relu, tanh"),
    "zero_batch": (_sets("train.batch_size=0"), "'train.batch_size' is 0 but must be >= 1"),
    "negative_batch": (_sets("train.batch_size=-4"), "'train.batch_size' is -4 but must be >= 1"),
    "zero_lr": (_sets("train.lr=0"), "'train.lr' is 0 but must be > 0"),
    "negative_lr": (_sets("train.lr=-0.1"), "'train.lr' is -0.1 but must be > 0"),
    "nan_lr": (_sets("train.lr=.nan"), "'train.lr' is nan; set it to a finite number"),
    "batch_over_data": (_sets("train.batch_size=500"), "exceeds the 160 synthetic training images"),
    "stored_below_crop": (
        _sets("data.stored_size=32", "data.image_size=40"),
        "data.stored_size (32) is smaller",
    ),
    "missing_data_dir": (_folder("missing"), "does not exist; set data.root"),
    "empty_data_dir": (_folder("empty"), "holds no images"),
    "one_class_data_dir": (_folder("one_class"), "a classifier needs at least 2"),
    "corrupt_image": (_folder("corrupt"), "set data.on_bad_image: skip"),
    "too_many_gpus_schema": (_sets("runtime.gpus=9"), "'runtime.gpus' is 9 but must be <= 8"),
    "more_gpus_than_machine": (
        _sets("runtime.device=cuda", "runtime.gpus=2"),
        "needs 2 GPU(s) but this machine exposes 1",
    ),
}


@pytest.mark.parametrize(("make_args", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_before_training_and_results_stay_untouched(
    make_args: Any,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    finished_run: tuple[Path, dict],
) -> None:
    out = copy_run(finished_run[0], tmp_path / "out")  # a finished run's results
    before = snapshot(out)

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started despite a bad input")

    monkeypatch.setattr(Trainer, "train_epoch", no_training)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", FAKE_GPU)  # one lockable (fake) device
    args = ["train", "--out", str(out), "--gpu-lock-dir", str(tmp_path / "locks")]
    extra = make_args(tmp_path)
    if "--config-json" not in extra:
        args += ["--config-json", json.dumps(tiny_run())]
    code = main([*args, *extra])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert message in errors[0] and "; " in errors[0], errors[0]  # the problem; the fix
    assert snapshot(out) == before


def test_corrupt_image_skipped_and_counted_in_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = image_dir(tmp_path / "data", classes=3, per_class=6, corrupt=True)
    cfg = tiny_run(
        data={"source": "imagefolder", "root": str(root), "on_bad_image": "skip"},
        train={"epochs": 1, "batch_size": 4},
    )
    out = tmp_path / "out"
    assert main(["train", "--out", str(out), "--config-json", json.dumps(cfg)]) == 0
    data = metrics_of(out)["data"]
    assert data["skipped_files"] == 1 and data["skipped_examples"] == [
        str(root / "class0" / "broken.jpg")
    ]
    assert data["num_train"] + data["num_val"] == 18


# ------------------------------------------------------------------ Snakemake workflows


def locks_of(workdir: Path) -> list[str]:
    locks = workdir / ".snakemake" / "locks"
    return sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []


@pytest.fixture
def popen_group() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts in their own session; all killed at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        stop(proc)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_snakemake_ctrl_c_then_kill9_then_rerun_resumes_to_the_uninterrupted_result(
    tmp_path: Path, proc_env: dict[str, str], popen_group: list[subprocess.Popen]
) -> None:
    """Ctrl-C (SIGINT to the whole process group) in epoch 2: no outputs, locks released.
    Rerun, kill -9 of Snakemake and its job in epoch 3: a stale lock, which Snakemake refuses
    with its --unlock hint. After --unlock, a rerun with --rerun-incomplete resumes from epoch 2
    and the finished run equals an uninterrupted one."""
    workdir = study_dir(tmp_path, run={"train": {"epochs": 3}})
    target = "results/tiny/baseline/seed0/metrics.json"
    cell = workdir / "results" / "tiny" / "baseline" / "seed0"
    study = yaml.safe_load((workdir / "config.yaml").read_text())
    reference = run_training(resolve_run(study, "tiny", "baseline", 0), tmp_path / "reference")

    def start(progress: Path, held_epoch: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            snakemake_cmd(workdir, "--cores", "1", target),
            env=with_faults(proc_env, progress, hold_at=(held_epoch, 3)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        popen_group.append(proc)
        return proc

    first = start(tmp_path / "progress1", held_epoch=2)
    wait_for_hold(tmp_path / "progress1", proc=first)  # 2 steps into epoch 2
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    log = first.communicate(timeout=120)[0]
    assert first.returncode != 0
    assert not (cell / "metrics.json").exists() and not (cell / "history.csv").exists()
    assert checkpoint_epoch(cell / CHECKPOINT) == 1 and locks_of(workdir) == []
    job_log = (workdir / "logs" / "train" / "tiny" / "baseline" / "seed0.log").read_text()
    assert job_log.strip().splitlines()[-1].startswith("interrupted by SIGINT"), log[-3000:]

    second = start(tmp_path / "progress2", held_epoch=3)
    wait_for_hold(tmp_path / "progress2", proc=second)  # 2 steps into epoch 3
    assert progress_lines(tmp_path / "progress2")[0][2] == 2, "the rerun must resume at epoch 2"
    os.killpg(second.pid, signal.SIGKILL)  # power loss / OOM kill of Snakemake and its job
    second.wait(30)
    assert not (cell / "metrics.json").exists() and checkpoint_epoch(cell / CHECKPOINT) == 2
    assert locks_of(workdir) != []

    refused = subprocess.run(
        snakemake_cmd(workdir, "--cores", "1", target),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    unlock = subprocess.run(
        snakemake_cmd(workdir, "--unlock"),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    final = subprocess.run(
        snakemake_cmd(workdir, "--cores", "1", "--rerun-incomplete", target),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    metrics = metrics_of(cell)
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] == 2
    assert [r["epoch"] for r in read_history(cell)] == ["1", "2", "3"]
    assert metric_rows(cell) == metric_rows(tmp_path / "reference")
    assert metrics["final"] == reference["final"] and locks_of(workdir) == []


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_second_snakemake_is_refused_and_a_diverged_cell_does_not_stop_the_study(
    tmp_path: Path, proc_env: dict[str, str], popen_group: list[subprocess.Popen]
) -> None:
    """While a study runs, a second snakemake on the same directory exits with Snakemake's
    LockException before starting any job; the first finishes undisturbed: its diverging cell is recorded as
    diverged (exit 0, so the study continues), the baseline completes, the report shows both.

    The first invocation's training jobs are held before their first step until the second has
    been refused, so it is still running then, however long the second takes to start."""
    explode = {
        "family": "activation",
        "description": "learning rate far too high",
        "overrides": {
            "model": {"activation": "tanh", "lrn": False},
            "train": {"lr": 1.0e6, "lr_schedule": "constant"},
        },
    }
    workdir = study_dir(
        tmp_path, ablations=["baseline", "explode"], ablation_defs={"explode": explode}
    )
    progress = tmp_path / "progress"
    first = subprocess.Popen(
        snakemake_cmd(workdir, "--cores", "2"),
        env=with_faults(proc_env, progress, hold_at=(1, 1)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    popen_group.append(first)
    wait_for_hold(progress, proc=first)  # a training job waits: the study cannot finish
    second = subprocess.run(
        snakemake_cmd(workdir, "--cores", "2"),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout + second.stderr
    assert first.poll() is None, "the refusal must happen while the first invocation runs"
    assert not (workdir / "logs" / "report.log").exists()  # the second started no job
    release(progress)

    log = first.communicate(timeout=360)[0]
    assert first.returncode == 0, log[-4000:]
    results = workdir / "results"
    baseline = metrics_of(results / "tiny" / "baseline" / "seed0")
    exploded = metrics_of(results / "tiny" / "explode" / "seed0")
    assert baseline["status"] == "completed" and baseline["epochs_completed"] == 2
    assert exploded["status"] == "diverged" and exploded["diverged_epoch"] >= 1
    rows = read_history(results / "tiny" / "explode" / "seed0")
    assert len(rows) == exploded["diverged_epoch"] and rows[-1]["train_loss"] == "nan"
    summary = (workdir / "reports" / "summary.md").read_text()
    assert f"loss became non-finite in epoch {exploded['diverged_epoch']}" in summary
    assert locks_of(workdir) == []


def _fake_results(workdir: Path) -> Path:
    cell = workdir / "results" / "tiny" / "baseline" / "seed0"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text('{"status": "completed"}\n')
    (cell / "history.csv").write_text("epoch,train_loss\n1,2.3\n")
    return workdir / "results"


def _one_class_dir(workdir: Path) -> list[str]:
    root = image_dir(workdir / "one-class", classes=1)
    return ["--config", "preset=imagenet", f"run={{data: {{root: {root}}}}}"]


def _empty_dir(preset: str) -> Any:
    def make(workdir: Path) -> list[str]:
        (workdir / "empty").mkdir()
        return ["--config", f"preset={preset}", f"run={{data: {{root: {workdir / 'empty'}}}}}"]

    return make


WORKFLOW_BAD_INPUTS = {
    "malformed_yaml": (None, "malformed YAML in 'config.yaml' at line"),
    "unknown_key": (["--config", "run={model: {lrm: false}}"], "unknown config key 'model.lrm'"),
    "wrong_type": (["--config", "run={train: {epochs: two}}"], "'train.epochs' must be an integer"),
    "unknown_ablation": (
        ["--config", "ablations=[baseline,no_relu]"],
        "unknown ablation 'no_relu'",
    ),
    "zero_batch": (["--config", "run={train: {batch_size: 0}}"], "'train.batch_size' is 0 but"),
    "negative_lr": (["--config", "run={train: {lr: -0.1}}"], "'train.lr' is -0.1 but must be > 0"),
    "missing_data_dir": (
        ["--config", "preset=cifar10"],
        "data directory 'data/cifar-10-batches-py'",
    ),
    "empty_data_dir": (_empty_dir("imagenet"), "holds no images"),
    "no_cifar_batches": (_empty_dir("cifar10"), "no CIFAR-10 batches under"),
    "one_class_data_dir": (_one_class_dir, "a classifier needs at least 2"),
    "too_many_gpus": (
        ["--config", "run={runtime: {gpus: 9}}"],
        "'runtime.gpus' is 9 but must be <= 8",
    ),
}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("args", "message"), WORKFLOW_BAD_INPUTS.values(), ids=WORKFLOW_BAD_INPUTS.keys()
)
def test_workflow_bad_input_fails_before_any_job_and_keeps_results(
    args: Any, message: str, tmp_path: Path, proc_env: dict[str, str]
) -> None:
    workdir = study_dir(tmp_path)
    results = _fake_results(workdir)
    before = snapshot(results)
    if args is None:
        (workdir / "config.yaml").write_text("preset: tiny\nseeds: [0, 1\n")
        args = []
    elif callable(args):
        args = args(workdir)
    result = subprocess.run(
        snakemake_cmd(workdir, "--cores", "1", "--forceall", *args),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if message in line]
    assert len(lines) == 1 and "; " in lines[0], output[-3000:]
    assert snapshot(results) == before and not (workdir / "logs").exists()


@pytest.mark.timeout(120)
def test_snakemake_config_overrides_are_typed(tmp_path: Path, proc_env: dict[str, str]) -> None:
    """`--config seeds=[0,1] 'run={train: {epochs: 3, lr: 1e-3}}'` (the README's form) works:
    Snakemake hands nested values over as strings, the workflow types them."""
    workdir = study_dir(tmp_path)
    result = subprocess.run(
        snakemake_cmd(
            workdir,
            "-n",
            "-p",
            "--cores",
            "1",
            "--config",
            "seeds=[0,1]",
            "run={train: {epochs: 3, lr: 1e-3}, model: {lrn: false}}",
        ),
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for seed in (0, 1):
        assert f"results/tiny/baseline/seed{seed}/metrics.json" in result.stdout
    assert '"epochs":3' in result.stdout and '"lr":0.001' in result.stdout
    assert '"lrn":false' in result.stdout
