"""Per-GPU lock files so concurrently running jobs never share a card.

Snakemake counts a ``gpu`` resource but does not say *which* GPU a job gets. Each training job
therefore acquires ``N`` free devices itself: one lock file per device under a shared lock
directory, held with ``fcntl.flock`` for the life of the process. The kernel drops a flock when
its holder dies, so a lock left by a killed job (even ``kill -9``) is reclaimed automatically;
the file only records the last holder's PID for diagnostics. A job that needs more devices
than the pool has fails at once with :class:`DeviceError` instead of waiting or running on fewer.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import DeviceError


def visible_gpu_pool(environ: dict[str, str] | None = None, count: int | None = None) -> list[str]:
    """Device ids this process may use: ``CUDA_VISIBLE_DEVICES`` entries, else ``0..count-1``."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if count is None:
        count = physical_gpu_count()
    return [str(i) for i in range(count)]


def job_lock_dir(lock_dir: str | Path, environ: dict[str, str] | None = None) -> Path:
    """Where this job's GPU locks go: ``lock_dir``, or inside a SLURM job that SLURM gave GPUs,
    ``lock_dir/slurm-job-<SLURM_JOB_ID>``.

    SLURM sets ``CUDA_VISIBLE_DEVICES`` to the job's own devices, numbered per node (and from 0
    in every job where cgroups constrain devices), so two jobs on two nodes both hold "GPU 0".
    Locked in the shared ``lock_dir``, the second would wait for the first although their cards
    differ. In a directory of its own, a SLURM job never waits for another job's device, while
    the jobs of one allocation (``salloc``, then a local ``snakemake`` run) still share one.
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID", "").strip()
    if job and (env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS")):
        return Path(lock_dir) / f"slurm-job-{job}"
    return Path(lock_dir)


def physical_gpu_count() -> int:
    """Number of NVIDIA GPUs per NVML (does not initialise CUDA in this process); 0 if none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


@dataclass
class GpuLease:
    """Devices held by this process; ``release()`` (or process exit) frees them."""

    devices: list[str]
    handles: list[IO[str]] = field(default_factory=list, repr=False)

    @property
    def cuda_visible_devices(self) -> str:
        return ",".join(self.devices)

    def release(self) -> None:
        for fh in self.handles:
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                fh.close()
        self.handles.clear()

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_name(device: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in device)
    return f"gpu-{safe}.lock"


def _try_lock(path: Path) -> IO[str] | None:
    fh = open(path, "a+")  # noqa: SIM115 - held open for the life of the lease
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def acquire_gpus(
    needed: int,
    lock_dir: str | Path,
    pool: list[str] | None = None,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
) -> GpuLease:
    """Lock ``needed`` free devices from ``pool`` (default: the visible GPUs).

    All-or-nothing: if fewer than ``needed`` are free, everything taken is released and the
    attempt repeats every ``poll_s`` until ``timeout_s`` (None = wait indefinitely; another job
    will finish). Raises :class:`DeviceError` at once when the pool is smaller than ``needed``.
    """
    devices = visible_gpu_pool() if pool is None else pool
    if needed > len(devices):
        raise DeviceError(
            f"job needs {needed} GPU(s) but this machine exposes {len(devices)} "
            f"({', '.join(devices) or 'none'}); lower runtime.gpus or run on a machine with more GPUs"
        )
    lock_path = Path(lock_dir)
    lock_path.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        lease = GpuLease([])
        for device in devices:
            fh = _try_lock(lock_path / _lock_name(device))
            if fh is not None:
                lease.devices.append(device)
                lease.handles.append(fh)
                if len(lease.devices) == needed:
                    return lease
        lease.release()
        if deadline is not None and time.monotonic() >= deadline:
            raise DeviceError(
                f"no {needed} free GPU(s) among {', '.join(devices)} within {timeout_s:.0f}s; "
                f"another job holds them (locks in {lock_path})"
            )
        time.sleep(poll_s)
