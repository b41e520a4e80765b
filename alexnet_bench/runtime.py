"""Device resolution, distributed context, seeding and determinism."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import DeviceError


@dataclass(frozen=True)
class DistContext:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistContext:
        """Read torchrun's environment contract (RANK, WORLD_SIZE, LOCAL_RANK)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
        )


#: autocast dtypes of runtime.amp
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_device_count() -> int:
    """Visible CUDA devices (0 without a usable GPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device_type(requested: str, gpus: int) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible else ``cpu``; check ``gpus`` fits the machine.

    Raises :class:`DeviceError` when CUDA is requested but absent, or when the job needs more
    GPUs than are visible (never silently runs on fewer).
    """
    visible = cuda_device_count()
    kind = ("cuda" if visible else "cpu") if requested == "auto" else requested
    if kind == "cuda":
        if visible == 0:
            raise DeviceError(
                "runtime.device=cuda but no CUDA GPU is visible; use runtime.device: auto (CPU fallback) "
                "or run on a GPU machine"
            )
        if gpus > visible:
            raise DeviceError(
                f"job needs runtime.gpus={gpus} GPUs but only {visible} visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                "lower runtime.gpus or run on a larger machine"
            )
    return kind


def device_for(kind: str, dist: DistContext) -> torch.device:
    """This process's device: ``cuda:<local_rank>`` for a DDP rank, else ``cuda:0`` or ``cpu``."""
    if kind == "cuda":
        return torch.device("cuda", dist.local_rank if dist.distributed else 0)
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool, compiled: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally request deterministic kernels.

    ``torch.use_deterministic_algorithms`` also sets inductor's flag, and importing inductor
    costs about 2 s per process (measured on the CPU preset, every job pays it); without
    ``torch.compile`` only the eager flag matters, so it is set directly.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if compiled:
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch._C._set_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def configure_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None leaves torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def prepare_device(cfg: Any, dist: DistContext) -> torch.device:
    """Threads, seeds and determinism, then this process's device with its backend switches
    (cuDNN autotuning unless deterministic, TF32 matmuls on CUDA)."""
    rt = cfg.runtime
    configure_threads(rt.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic, rt.compile or rt.cuda_graphs)
    device = device_for(resolve_device_type(rt.device, rt.gpus), dist)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark and not cfg.train.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device
