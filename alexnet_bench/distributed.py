"""torch.distributed set-up for DDP jobs launched by torchrun (NCCL on GPUs, gloo on CPU)."""

from __future__ import annotations

import atexit
from datetime import timedelta

import torch
import torch.distributed as tdist

from .runtime import DistContext


def init_distributed(dist: DistContext, device_kind: str) -> DistContext:
    """Join the process group described by torchrun's environment; returns the context with backend."""
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(dist.local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        atexit.register(_shutdown)
    return DistContext(dist.rank, dist.world_size, dist.local_rank, backend)


def _shutdown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()
