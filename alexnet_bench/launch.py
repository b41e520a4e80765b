"""Launching one training job: GPU leasing, the torchrun relaunch of a DDP job, supervision of
that child, and SIGINT/SIGTERM handling.

``cli.py`` parses the command line and resolves the run config; :func:`launch` then decides
where the run trains (here, as one rank, or under torchrun) and releases the GPUs afterwards.
SIGINT/SIGTERM become :class:`Interrupted`, so ``finally`` blocks stop telemetry and release
locks; a supervised torchrun child is stopped before this process reports the end.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import BenchError, DeviceError, DiskFullError
from .gpu_lock import GpuLease, acquire_gpus, job_lock_dir, visible_gpu_pool
from .record import write_not_trained

log = logging.getLogger("alexnet_bench")
DDP_STOP_GRACE_S = 60.0  # torchrun itself gives its workers 30 s after forwarding SIGTERM
EXIT_USER_ERROR = 2


class CellSkipped(Exception):
    """This host does not train the cell; the job records it as 'skipped' with this reason."""


@dataclass(frozen=True)
class LaunchOptions:
    """How a job is launched (the ``train`` command's options that are not run settings)."""

    gpu_lock_dir: str | None = None
    gpu_wait_s: float | None = None
    cpu_standins: str = "run"  # a multi-device cell on a host without GPUs: run | skip
    peak_flops: Path | None = None
    data: Any = None  # data.DataOptions: the planned data identity, rebuilding a missing store


def launch(cfg: RunConfig, out: Path, labels: dict[str, Any], options: LaunchOptions) -> int:
    """Train ``cfg`` into ``out``: lease GPUs, then train here, as a DDP rank, or under torchrun.

    Raises :class:`CellSkipped` for a multi-device cell on a host without GPUs when
    ``options.cpu_standins`` is ``skip``, and :class:`~.errors.DeviceError` when the devices it
    needs are not there.
    """
    from .runtime import DistContext, resolve_device_type

    rt = cfg.runtime
    dist = DistContext.from_env()
    lease = lease_gpus(cfg, options) if not dist.distributed else None
    try:
        device_kind = resolve_device_type(rt.device, rt.gpus)
        if device_kind == "cpu" and rt.gpus > 1 and options.cpu_standins == "skip":
            raise CellSkipped(CPU_STANDIN_SKIPPED.format(gpus=rt.gpus))
        if rt.gpus > 1 and rt.parallel == "ddp" and not dist.distributed:
            return launch_ddp(cfg, device_kind, out, lease)
        return train_here(cfg, out, labels, dist, device_kind, options.peak_flops, options.data)
    finally:
        if lease is not None:
            lease.release()


def train_cell(
    resolve: Callable[[], tuple[RunConfig, dict[str, Any]]],
    out: Path,
    labels: dict[str, Any],
    options: LaunchOptions,
    *,
    record_failures: bool = False,
    on_insufficient_gpus: str = "fail",
) -> int:
    """One cell of a study, as its job runs it: resolve its run config (and the cell's labels),
    :func:`launch` it, and turn a skip or a user error into the cell's record.

    A skipped cell (:class:`CellSkipped`; a :class:`~.errors.DeviceError` with
    ``on_insufficient_gpus="skip"``) writes a ``skipped`` metrics.json and returns 0. Another
    user error prints one line and returns 2, or, with ``record_failures``, writes a ``failed``
    metrics.json and returns 0.
    """
    cfg: RunConfig | None = None
    try:
        cfg, cell_labels = resolve()
        labels = {**cell_labels, **labels}
        return launch(cfg, out, labels, options)
    except CellSkipped as exc:
        return _skip(out, str(exc), cfg, labels)
    except DeviceError as exc:
        if on_insufficient_gpus == "skip" and cfg is not None:
            return _skip(out, str(exc), cfg, labels)
        return _fail(out, exc, cfg, labels, record_failures)
    except BenchError as exc:
        return _fail(out, exc, cfg, labels, record_failures)


def _skip(out: Path, reason: str, cfg: RunConfig | None, labels: dict[str, Any]) -> int:
    write_not_trained(out, "skipped", reason, cfg, labels)
    print(f"skipped: {reason}", file=sys.stderr)
    return 0


def _fail(
    out: Path, exc: Exception, cfg: RunConfig | None, labels: dict[str, Any], record: bool
) -> int:
    print(f"error: {exc}", file=sys.stderr)
    if record:
        try:
            write_not_trained(out, "failed", str(exc), cfg, labels)
        except DiskFullError:  # no room for the record either: a plain failure, rerun later
            return EXIT_USER_ERROR
        print(f"recorded failure in {out / 'metrics.json'}", file=sys.stderr)
        return 0
    return EXIT_USER_ERROR


class Interrupted(BaseException):
    """A SIGINT/SIGTERM arrived. A BaseException, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def torchrun_command(nprocs: int) -> list[str]:
    """This very command (``sys.argv``) under torchrun with ``nprocs`` processes."""
    argv = list(sys.argv[1:])
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nprocs}",
        "-m",
        "alexnet_bench.cli",
        *argv,
    ]


def install_signal_handlers() -> dict[int, Any]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` so ``finally`` blocks (telemetry, locks) run.

    Returns the previous handlers (for :func:`main` to restore); none outside the main thread.
    """

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _die_with_parent() -> None:
    """``preexec_fn``: the kernel sends this child SIGTERM when its parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the except-branch of supervise still applies
        pass


def supervise(
    cmd: list[str],
    env: dict[str, str],
    pass_fds: Sequence[int] = (),
    grace_s: float = DDP_STOP_GRACE_S,
) -> int:
    """Run ``cmd`` and return its status; if this process is interrupted, stop it first.

    On SIGINT/SIGTERM the child (torchrun) gets SIGTERM, which it forwards to its workers, and
    this process waits for it (SIGKILL after ``grace_s``): no worker outlives the job and writes
    results after it was reported as ended. ``PR_SET_PDEATHSIG`` covers a SIGKILL of this process;
    ``pass_fds`` (the GPU lock files) keep the devices locked until the child has exited too.
    """
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(cmd, env=env, preexec_fn=preexec, pass_fds=tuple(pass_fds))
    try:
        return proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


CPU_STANDIN_SKIPPED = (
    "needs {gpus} GPUs and none is visible; its CPU stand-in repeats the one-device baseline's "
    "arithmetic (a correctness check the test suite covers) and is not trained by default: set "
    "cpu_standins: run in config.yaml (or pass --cpu-standins run) to train it anyway"
)

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def rank_thread_env(env: dict[str, str], nprocs: int) -> dict[str, str]:
    """Thread variables giving each of ``nprocs`` CPU ranks its share of the job's threads.

    The job's budget is ``OMP_NUM_THREADS`` (Snakemake sets it and MKL_NUM_THREADS & co. to the
    rule's ``threads``) or else all CPUs. Every variable is set: torch also honours
    MKL_NUM_THREADS, so leaving Snakemake's value there oversubscribed the cores (2 ranks x 2
    threads on 2 cores ran the default preset's DDP cell at 136-159 instead of 540 img/s).
    """
    budget = env.get("OMP_NUM_THREADS", "")
    total = int(budget) if budget.isdigit() and int(budget) > 0 else (os.cpu_count() or 2)
    per_rank = str(max(1, total // nprocs))
    return dict.fromkeys(THREAD_ENV_VARS, per_rank)


def launch_ddp(
    cfg: RunConfig,
    device_kind: str,
    out: Path,
    lease: GpuLease | None = None,
) -> int:
    """Re-run this command under torchrun with one process per device."""
    nprocs = cfg.runtime.gpus
    log.info("launching %d DDP processes (%s) via torch.distributed.run", nprocs, device_kind)
    env = dict(os.environ)
    if device_kind == "cpu" and not cfg.runtime.threads:
        env.update(rank_thread_env(env, nprocs))
    fds = [fh.fileno() for fh in lease.handles] if lease is not None else []
    code = supervise(torchrun_command(nprocs), env, pass_fds=fds)
    if code != 0 and not (out / "metrics.json").exists():
        # Not recorded as 'failed' even with --record-failures: user errors are recorded by the
        # workers themselves (exit 0), so this is a crash or a kill, and a rerun must resume.
        print(
            f"error: DDP worker group exited with status {code} (a worker crashed or was "
            "killed; see the log above); rerun the job to resume from its last checkpoint",
            file=sys.stderr,
        )
    return code


def train_here(
    cfg: RunConfig,
    out: Path,
    labels: dict[str, Any],
    dist: Any,
    device_kind: str,
    peak_flops: Path | None = None,
    data_options: Any = None,
) -> int:
    """Train in this process (a single-process job or one DDP rank)."""
    if dist.distributed:
        from .distributed import init_distributed

        dist = init_distributed(dist, device_kind)
    from .train import run_training

    metrics = run_training(cfg, out, labels, dist, peak_flops, data_options)
    if dist.is_main:
        final = metrics.get("final", {})
        print(
            f"{metrics['status']}: {metrics['epochs_completed']} epochs, "
            f"val top-1 error {final.get('val_top1_error')}, wrote {out / 'metrics.json'}"
        )
    return 0


def lease_gpus(cfg: RunConfig, options: LaunchOptions) -> GpuLease | None:
    """Lock this job's GPUs and expose only them (before CUDA is initialised in this process)."""
    if not options.gpu_lock_dir or cfg.runtime.device == "cpu":
        return None
    pool = visible_gpu_pool()
    if not pool:
        return None  # no GPU here: device auto falls back to CPU, device cuda fails later
    lock_dir = job_lock_dir(options.gpu_lock_dir)  # a SLURM job's own GPUs: its own locks
    lease = acquire_gpus(cfg.runtime.gpus, lock_dir, pool, timeout_s=options.gpu_wait_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = lease.cuda_visible_devices
    log.info("locked GPU(s) %s (CUDA_VISIBLE_DEVICES) in %s", lease.cuda_visible_devices, lock_dir)
    return lease
