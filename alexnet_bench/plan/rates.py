"""What the plan's predictions are made of: measured rates, per group of cells and per host.

A *group* is every cell whose step, evaluation and set-up take equally long
(:func:`.cells.timing_key`: same model, data shape, batch, augmentation and runtime). Its rates
come from a probe on this machine (:mod:`.probe`) or from an earlier study's records
(:mod:`.recorded`); ``source`` says which. Seconds are *loaded* seconds: as measured with the
study's number of jobs running side by side (the probe) or as the recorded study ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GroupRates:
    """Per-group rates (seconds are loaded seconds, see the module docstring)."""

    key: str
    source: str
    batch_size: int
    step_s: float  # one training step, data and the loop's bookkeeping included
    setup_s: float = 0.0  # Trainer set-up: data, model, initialisation
    first_step_extra_s: float = 0.0  # the first step beyond a steady one
    eval_images_per_s: float | None = None  # Trainer.evaluate (centre crop)
    ten_crop_images_per_s: float | None = None
    other_s_per_epoch: float = 0.0  # recorded: in-job time besides training, per epoch
    checkpoint_s: float = 0.0  # one checkpoint save (every epoch when train.checkpoint)
    resume_load_s: float = 0.0  # loading it back (a resumed job, once)
    health_s: float = 0.0  # the end-of-run health pass
    data_images_per_s: float | None = None  # loader + augmentation alone
    checkpoint_bytes: int | None = None
    final_weights_bytes: int | None = None
    history_header_bytes: float | None = None
    history_row_bytes: float | None = None
    power_w: float | None = None  # NVML, mean over the step windows (all the job's devices)
    energy_per_image_j: float | None = None  # recorded
    energy_source: str = "no power reading"
    step_windows_s: list[float] = field(default_factory=list)
    runs: int = 0  # recorded runs (or probe measurements) behind it

    @property
    def images_per_s(self) -> float:
        """Training images/s (one process; a DDP job: per rank)."""
        return self.batch_size / self.step_s if self.step_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


@dataclass
class HostRates:
    """Per-host rates: process start-up, contention, and the jobs besides training."""

    source: str
    startup_train_s: float  # a training job: interpreter and imports before, exit after
    startup_cli_s: float  # the same for a job that only starts the CLI (skipped cell, peak, ...)
    first_setup_s: float = 0.0  # set-up a fresh process pays once (lazy initialisation)
    environment_s: float = 0.0  # the record's environment probe at the end of a job
    contention: float = 1.0  # a step's time with `workers` jobs side by side over its time alone
    workers: int = 1  # jobs side by side during the measurement
    contention_note: str = ""
    peak_flops_s: float | None = None  # the peak-FLOP/s probe's own work
    report_s: float | None = None  # the report job beyond start-up (None: not measured)
    report_note: str = ""
    prepare: dict[str, dict[str, Any]] = field(default_factory=dict)  # store -> decode rate
    metrics_bytes: float | None = None  # one metrics.json
    probe_wall_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
