"""What one training run produced, as plain data: ``Trainer.fit`` returns a :class:`TrainResult`
and ``record.py`` builds the run's metrics.json from it, without reaching into the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .config import RunConfig


@dataclass(frozen=True)
class TrainSetup:
    """How the run was set up on this host: what the record's device, parallel, runtime and
    flops sections describe (``Trainer.describe``)."""

    cfg: RunConfig
    device: torch.device
    device_name: str  # the CUDA device's name, "cpu" on CPU
    device_count: int  # devices the job trains on (DDP ranks or model-parallel towers)
    world_size: int  # processes (DDP ranks)
    backend: str | None  # torch.distributed backend, None without DDP
    distributed: bool
    model_parallel: bool  # the paper's two-tower split in one process
    compile_status: str  # off | on (<mode>) | why torch.compile fell back to eager
    compile_mode: str | None
    fused_optimizer: bool
    data_info: dict[str, Any]
    skipped_files: list[Any]  # files the data loader skipped (on_bad_image: skip)
    flops_per_image: int  # one training forward + backward pass
    peak_flops_file: Path | None  # the study's once-measured CPU peak


@dataclass(frozen=True)
class TrainResult:
    """The outcome of ``Trainer.fit``."""

    setup: TrainSetup
    status: str  # completed | collapsed | diverged
    reason: str | None
    diverged_epoch: int | None
    epochs_completed: int
    resumed_from: int | None
    notes: list[str]
    history: list[dict[str, Any]]  # one row per epoch (history.py's contract)
    train_time_s: float
    images_this_session: int  # trained since this process (re)started
    ten_crop: dict[str, float] | None
    target_column: str  # the history column time to target reads
    step_time: dict[str, Any]  # the step timer's summary
    model: dict[str, Any]  # num_params and the model's own description
    health: dict[str, Any] | None
