"""The software and hardware a run executed on, for the ``"environment"`` section of metrics.

Every probe is guarded: a missing package, no GPU, no NVML or no git gives ``None`` for that
field, never an exception.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from .host import cpu_isa_flags, cpu_model, logical_cpus, usable_cpus

__all__ = ["collect_environment", "git_state"]

_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "SLURM_JOB_ID",
    "SLURM_JOB_PARTITION",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _default_repo_dir() -> Path:
    return Path(__file__).resolve().parents[2]  # .../alexnet_bench/telemetry -> repo root


def git_state(repo_dir: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` (untracked files do not count as dirty)."""

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "-C", str(repo_dir or _default_repo_dir()), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": bool(status.strip()) if status is not None else None}


def _cpu_capability() -> str | None:
    """The instruction set torch's CPU kernels dispatch to (``AVX2``, ``AVX512``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:
        return None


def _nvml_info() -> dict[str, Any]:
    """Driver version and GPU names as NVML sees them (all GPUs, NVML order)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        return {"driver_version": None, "nvml_gpus": None, "nvml_error": f"{type(exc).__name__}"}
    try:

        def text(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v)

        driver = text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append({"nvml_index": i, "name": text(pynvml.nvmlDeviceGetName(h))})
        return {"driver_version": driver, "nvml_gpus": gpus, "nvml_error": None}
    except Exception as exc:
        return {"driver_version": None, "nvml_gpus": None, "nvml_error": f"{type(exc).__name__}"}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _cuda_info(device: torch.device | None) -> dict[str, Any]:
    out: dict[str, Any] = {"cuda_available": False, "cuda_device_count": 0, "cuda_gpus": []}
    try:
        if not torch.cuda.is_available():
            return out
        out["cuda_available"] = True
        out["cuda_device_count"] = torch.cuda.device_count()
        for i in range(out["cuda_device_count"]):
            props = torch.cuda.get_device_properties(i)
            out["cuda_gpus"].append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 2),
                }
            )
        if device is not None and device.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(device)
    except Exception as exc:  # a broken driver must not crash the run
        out["cuda_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def collect_environment(
    device: torch.device | None = None, repo_dir: Path | None = None
) -> dict[str, Any]:
    """Versions, hardware, relevant environment variables, git state and a UTC timestamp.

    ``repo_dir`` defaults to the repository containing this package (git absent or not a
    repository -> ``git_commit``/``git_dirty`` are ``None``).
    """
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:
        cudnn = None
    git = git_state(repo_dir)
    env: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_isa_flags(),
        "cpu_capability": _cpu_capability(),
        "logical_cpus": logical_cpus(),
        "usable_cpus": usable_cpus(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "alexnet_bench": _version("alexnet-bench"),
        "torch_cuda": torch.version.cuda,
        "cudnn": cudnn,
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        **_cuda_info(device),
        **_nvml_info(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "env": {k: os.environ[k] for k in _ENV_VARS if k in os.environ},
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
    }
    return env
