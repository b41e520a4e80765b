"""GPU assignment via lock files, tested with fake device pools (no GPU needed)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from alexnet_bench.errors import DeviceError
from alexnet_bench.gpu_lock import acquire_gpus, visible_gpu_pool


def _hold(lock_dir: str, pool: list[str], needed: int, queue: mp.Queue, done: Any) -> None:
    """Lease, report the devices, and keep them until the test sets ``done`` (not for a fixed
    time: a slow second process must still find the first one's device taken)."""
    lease = acquire_gpus(needed, lock_dir, pool, timeout_s=60, poll_s=0.05)
    queue.put(lease.devices)
    done.wait(120)
    lease.release()


def test_two_jobs_started_at_once_get_different_devices(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    done = ctx.Event()
    procs = [
        ctx.Process(target=_hold, args=(str(tmp_path), ["0", "1"], 1, queue, done), daemon=True)
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    try:
        got = sorted(queue.get(timeout=60)[0] for _ in procs)
    finally:
        done.set()
        for p in procs:
            p.join(10)
    assert got == ["0", "1"]


def test_third_job_waits_until_a_device_is_free(tmp_path: Path) -> None:
    first = acquire_gpus(1, tmp_path, ["0"])
    with pytest.raises(DeviceError, match="no 1 free GPU"):
        acquire_gpus(1, tmp_path, ["0"], timeout_s=0.2, poll_s=0.05)
    first.release()
    assert acquire_gpus(1, tmp_path, ["0"], timeout_s=1).devices == ["0"]


def test_multi_gpu_lease_is_all_or_nothing(tmp_path: Path) -> None:
    one = acquire_gpus(1, tmp_path, ["0", "1", "2"])
    two = acquire_gpus(2, tmp_path, ["0", "1", "2"], timeout_s=1)
    assert sorted(one.devices + two.devices) == ["0", "1", "2"]
    with pytest.raises(DeviceError):
        acquire_gpus(2, tmp_path, ["0", "1", "2"], timeout_s=0.2, poll_s=0.05)
    # the failed attempt left nothing locked: after releasing `one`, exactly its device is free
    freed = one.devices
    one.release()
    assert acquire_gpus(1, tmp_path, ["0", "1", "2"], timeout_s=1).devices == freed


def test_stale_lock_of_a_killed_job_is_reclaimed(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    queue: mp.Queue = ctx.Queue()
    never = ctx.Event()  # the holder keeps its lease until it is killed
    proc = ctx.Process(target=_hold, args=(str(tmp_path), ["0"], 1, queue, never), daemon=True)
    proc.start()
    assert queue.get(timeout=60) == ["0"]
    lock_file = tmp_path / "gpu-0.lock"
    assert lock_file.read_text().strip() == str(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    lease = acquire_gpus(1, tmp_path, ["0"], timeout_s=2, poll_s=0.05)
    assert lease.devices == ["0"] and lock_file.read_text().strip() == str(os.getpid())


def test_more_gpus_than_exist_fails_at_once(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(DeviceError, match="needs 2 GPU.*exposes 1"):
        acquire_gpus(2, tmp_path, ["0"])
    with pytest.raises(DeviceError, match="exposes 0"):
        acquire_gpus(1, tmp_path, [])
    assert time.monotonic() - start < 1


def test_visible_pool_respects_cuda_visible_devices() -> None:
    assert visible_gpu_pool({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpu_pool({"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == ["GPU-abc"]
    assert visible_gpu_pool({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpu_pool({}, count=2) == ["0", "1"]


def test_a_slurm_job_locks_its_own_gpus_in_a_directory_of_its_own(tmp_path: Path) -> None:
    """SLURM numbers a job's GPUs per node (and from 0 under cgroup device constraints): two
    jobs on two nodes both get "GPU 0". A SLURM job that SLURM gave GPUs locks them in
    lock_dir/slurm-job-<id>, so it never waits for another job's lock on "its" number; without
    a SLURM GPU allocation the shared directory is used, as on one machine."""
    from alexnet_bench.gpu_lock import job_lock_dir

    step = {"SLURM_JOB_ID": "41", "SLURM_STEP_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"}
    assert job_lock_dir(tmp_path, step) == tmp_path / "slurm-job-41"
    assert job_lock_dir(tmp_path, {"SLURM_JOB_ID": "7", "SLURM_JOB_GPUS": "0,1"}) == (
        tmp_path / "slurm-job-7"
    )
    assert job_lock_dir(tmp_path, {"SLURM_JOB_ID": "7"}) == tmp_path  # no GPUs from SLURM
    assert job_lock_dir(tmp_path, {"CUDA_VISIBLE_DEVICES": "0"}) == tmp_path
    other_node = acquire_gpus(1, tmp_path, ["0"])  # another node's job holds its "GPU 0"
    try:
        mine = acquire_gpus(1, job_lock_dir(tmp_path, step), ["0"], timeout_s=0)
        assert mine.devices == ["0"]
        mine.release()
    finally:
        other_node.release()
