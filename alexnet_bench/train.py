"""Training and evaluation of one configured run: seeded, checkpointed, resumable, measured.

One call of :func:`run_training` trains one ablation cell and writes, into its output
directory, ``history.csv`` and ``metrics.json`` (atomically), ``gpu.csv`` when NVML telemetry is
available, and ``checkpoint.pt`` at every epoch end so that a killed run resumes where it stopped;
once it has completed, ``train.keep_checkpoint`` says what stays (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_latest, retire_checkpoints, save_checkpoint, save_final_weights
from .config import RunConfig
from .data import DataBundle, DataOptions, build_data
from .data.loaders import epoch_generator
from .diagnostics import activation_health
from .history import write_history
from .identity import identity_record, provenance_record
from .lsuv import unit_variance_init
from .metrics import collapse_reason
from .model import build_model, count_parameters
from .parallel import TwoTowerAlexNet
from .progress import Progress
from .record import finish_record, parallel_record, training_record, write_metrics
from .runtime import (
    AMP_DTYPES,
    DistContext,
    prepare_device,
)
from .telemetry.environment import collect_environment
from .telemetry.flops import train_flops_per_image
from .telemetry.host import HostStats
from .telemetry.nvml import GpuSampler
from .telemetry.timing import StepTimer
from .train_result import TrainResult, TrainSetup

log = logging.getLogger(__name__)
DIVERGENCE_CHECK_EVERY = 25


@dataclass
class EpochStats:
    """Reduced statistics of one pass over a split."""

    loss: float
    top1_error: float
    top5_error: float | None = None
    images: int = 0
    seconds: float = 0.0
    finite: bool = True


@dataclass
class RunState:
    """What a checkpoint restores."""

    epoch: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)
    images_this_session: int = 0


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def _topk_errors(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Number of top-1 and top-5 misses in a batch (as tensors, no host sync)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(target[:, None])
    return (~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()


def _all_reduce(values: torch.Tensor, dist: DistContext) -> torch.Tensor:
    if dist.distributed:
        tdist.all_reduce(values, op=tdist.ReduceOp.SUM)
    return values


def build_optimizer(
    model: nn.Module, cfg: RunConfig, device: torch.device
) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (fused kernel when requested and supported)."""
    t = cfg.train
    kwargs: dict[str, Any] = {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}
    if cfg.runtime.fused_optimizer and device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(model.parameters(), **kwargs)


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: RunConfig
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Step-down schedule (divide by 1/gamma every ``lr_step_epochs``), the paper's plateau
    rule (divide by 1/gamma once the validation top-1 error has not improved for
    ``lr_patience`` epochs) or constant. Stepped once per epoch (:func:`step_scheduler`)."""
    t = cfg.train
    sched = torch.optim.lr_scheduler
    if t.lr_schedule == "step":
        return sched.StepLR(opt, step_size=t.lr_step_epochs, gamma=t.lr_gamma)
    if t.lr_schedule == "plateau":
        return sched.ReduceLROnPlateau(
            opt, mode="min", factor=t.lr_gamma, patience=t.lr_patience, threshold=0.0
        )
    return sched.ConstantLR(opt, factor=1.0, total_iters=0)


def step_scheduler(scheduler: Any, val_top1_error: float) -> None:
    """End-of-epoch scheduler step (the plateau rule watches the validation error)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_top1_error)
    else:
        scheduler.step()


def build_run_model(
    cfg: RunConfig, data: DataBundle, device: torch.device, model_parallel: bool
) -> nn.Module:
    """The run's model on its device(s): built, initialised (LSUV on fixed training images, the
    same rule in every arm and rank), split over two towers for ``runtime.parallel: model``."""
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    m = build_model(cfg.model, data.num_classes, cfg.data.image_size)
    if cfg.model.init == "lsuv":
        assert data.calibration is not None
        images = data.augment(data.calibration.to(device), train=False)
        factors = unit_variance_init(m.to(device), images)
        m.config["init_factors"] = [round(f, 6) for f in factors]
    if model_parallel:
        if device.type == "cuda":
            devices = [torch.device("cuda", i) for i in range(cfg.runtime.gpus)]
        else:  # CPU: both towers on the CPU, same arithmetic and data flow as on 2 GPUs
            devices = [device] * cfg.runtime.gpus
        return TwoTowerAlexNet(m, devices).to(memory_format=fmt)
    return m.to(device, memory_format=fmt)


def restore_state(
    out_dir: Path,
    cfg: RunConfig,
    identity: dict[str, Any],
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
) -> RunState:
    """The state of the last complete epoch of this run (``identity``: its config and data) in
    ``out_dir`` (weights, optimiser and scheduler loaded), or a fresh one."""
    state = RunState()
    if not cfg.train.checkpoint:
        return state
    ckpt, notes = load_latest(out_dir, identity["hash"], model.state_dict())
    state.notes.extend(notes)
    for note in notes:
        log.warning(note)
    if ckpt is None:
        return state
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    state.epoch = int(ckpt["epoch"])
    state.elapsed_s = float(ckpt["elapsed_s"])
    state.history = list(ckpt["history"])
    state.resumed_from = state.epoch
    log.info("resumed from checkpoint at epoch %d", state.epoch)
    return state


def save_state(
    out_dir: Path,
    identity: dict[str, Any],
    state: RunState,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
) -> None:
    """Checkpoint the epoch just completed (atomically, keeping one previous generation)."""
    save_checkpoint(
        out_dir,
        {
            "config_hash": identity["config_hash"],
            "identity_hash": identity["hash"],
            "epoch": state.epoch,
            "elapsed_s": state.elapsed_s,
            "history": state.history,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Any,
    augment: Any,
    device: torch.device,
    amp: str,
    memory_format: torch.memory_format,
    ten_crop: bool = False,
) -> EpochStats:
    """Loss and top-1/top-5 error of ``model`` (eval mode) over ``batches``: centre crops, or
    the paper's 10 crops (corners + centre, flipped) averaged as probabilities."""
    model.eval()
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    start = time.perf_counter()
    for images, target in batches:
        with _autocast(device, amp):
            if ten_crop:
                crops = augment.ten_crop(images)
                probs = torch.stack(
                    [
                        model(c.contiguous(memory_format=memory_format)).float().softmax(1)
                        for c in crops
                    ]
                ).mean(0)
                logits = probs.log()
            else:
                x = augment(images, train=False).contiguous(memory_format=memory_format)
                logits = model(x).float()
        loss = (
            F.nll_loss(logits, target, reduction="sum")
            if ten_crop
            else F.cross_entropy(logits, target, reduction="sum")
        )
        top1, top5 = _topk_errors(logits, target)
        sums += torch.stack(
            [loss.double(), top1.double(), top5.double(), sums.new_tensor(target.shape[0])]
        )
    loss_sum, top1, top5, count = sums.tolist()
    count = max(count, 1.0)
    return EpochStats(
        loss_sum / count, top1 / count, top5 / count, int(count), time.perf_counter() - start
    )


def _epoch_row(epoch: int, stats: EpochStats, lr: float, elapsed_s: float) -> dict[str, Any]:
    """The history row of a trained epoch (validation columns NaN until evaluated)."""
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": stats.loss if stats.finite else float("nan"),
        "train_top1_error": stats.top1_error,
        "lr": lr,
        "epoch_time_s": round(stats.seconds, 4),
        "elapsed_s": round(elapsed_s, 4),
        "images_per_s": round(stats.images / max(stats.seconds, 1e-9), 2),
    }
    if not stats.finite:
        row.update(val_loss=float("nan"), val_top1_error=float("nan"), val_top5_error=float("nan"))
    return row


class Trainer:
    """Owns model, optimiser, data and telemetry for one run."""

    def __init__(
        self,
        cfg: RunConfig,
        out_dir: Path,
        dist: DistContext | None = None,
        peak_flops_file: Path | None = None,
        data_options: DataOptions | None = None,
    ) -> None:
        self.cfg = cfg
        self.peak_flops_file = peak_flops_file
        self.out_dir = Path(out_dir)
        self.dist = dist or DistContext()
        self.device = prepare_device(cfg, self.dist)
        options = data_options or DataOptions()
        self.data: DataBundle = build_data(
            cfg,
            self.device,
            self.dist.rank,
            self.dist.world_size,
            expect=options.expect,
            rebuild_missing=options.rebuild_missing,
        )
        try:
            self._set_up(cfg)
        except BaseException:
            self.data.close()  # the prepared stores' leases go with a failed set-up
            raise

    def _set_up(self, cfg: RunConfig) -> None:
        """Everything after the data: model, optimiser, schedule, timers."""
        rt = cfg.runtime
        #: what this run computes: its config hash and data identity (identity.py)
        self.identity = identity_record(cfg, self.data.info.get("identity"))
        self.compile_status = "off"
        self._first_step_done = False
        self.model = build_run_model(cfg, self.data, self.device, self.model_parallel)
        self.train_model = self._wrap_model(self.model)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler(enabled=rt.amp == "fp16" and self.device.type == "cuda")
        self.memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format
        self.timer = StepTimer(
            self.device, cfg.telemetry.warmup_steps, sync=cfg.telemetry.sync_timing
        )
        self.state = RunState()
        self.progress = Progress(
            cfg.train.epochs,
            len(self.data.train),
            cfg.telemetry.progress_interval_s,
            enabled=self.dist.is_main,
        )

    # -- set-up -----------------------------------------------------------------------------
    @property
    def model_parallel(self) -> bool:
        """The paper's two-tower split over ``runtime.gpus`` devices (single process)."""
        rt = self.cfg.runtime
        return rt.gpus > 1 and rt.parallel == "model" and not self.dist.distributed

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        wrapped: nn.Module = model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self._eager_model = wrapped
        mode = self.compile_mode
        if mode is not None:
            try:
                wrapped = torch.compile(wrapped, mode=None if mode == "default" else mode)
                self.compile_status = f"on ({mode})"
            except Exception as exc:  # torch.compile unavailable on this platform/python
                self._compile_failed(exc, "unavailable")
        return wrapped

    @property
    def compile_mode(self) -> str | None:
        """torch.compile mode: None (eager), ``default`` or ``reduce-overhead`` (CUDA graphs)."""
        rt = self.cfg.runtime
        if rt.cuda_graphs and self.device.type == "cuda":
            return "reduce-overhead"
        return "default" if rt.compile else None

    def _compile_failed(self, exc: BaseException, when: str) -> None:
        """Fall back to the eager model and record why (compile errors can surface lazily)."""
        self.compile_status = f"{when}: {type(exc).__name__}: {exc}"[:200]
        self.train_model = self._eager_model
        log.warning("torch.compile failed (%s), running eager: %s", when, exc)

    # -- one epoch --------------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        it = iter(self.data.train)
        while True:
            with self.timer.phase("data"):
                batch = next(it, None)
            if batch is None:
                return
            yield batch

    def train_step(
        self, images: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch (augment, forward, backward, update), timed by phase.

        Returns the detached loss and logits; no host synchronisation happens here, so the
        caller decides when to read them. ``p.grad`` keeps this step's gradients afterwards.
        """
        with self.timer.phase("augment"):
            x = self.data.augment(images, train=True, generator=generator)
            x = x.contiguous(memory_format=self.memory_format)
        if not self._first_step_done and self.train_model is not self._eager_model:
            return self._first_compiled_step(x, target)
        return self._step(x, target)

    def _first_compiled_step(
        self, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first step compiles; if that fails, record it and redo the step eagerly."""
        try:
            out = self._step(x, target)
        except Exception as exc:  # dynamo/inductor errors surface at the first call
            if self.compile_mode is None:
                raise
            self.optimizer.zero_grad(set_to_none=True)
            self._compile_failed(exc, "failed at first step")
            out = self._step(x, target)
        self._first_step_done = True
        return out

    def _step(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rt = self.cfg.runtime
        with self.timer.phase("forward"), _autocast(self.device, rt.amp):
            logits = self.train_model(x)
            loss = F.cross_entropy(logits, target)
        with self.timer.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        with self.timer.phase("optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach(), logits.detach()

    def train_epoch(self, epoch: int) -> EpochStats:
        """One pass over the training split; stops early once the loss is non-finite."""
        cfg, device = self.cfg, self.device
        self.train_model.train()
        self.data.train.set_epoch(epoch)
        torch.manual_seed(cfg.train.seed * 7919 + epoch)  # dropout stream, resumable per epoch
        gen = torch.Generator(device=device).manual_seed(
            int(epoch_generator(cfg.train.seed, epoch, stream=1 + self.dist.rank).initial_seed())
        )
        sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss*n, top1 misses, n
        start = time.perf_counter()
        finite = True
        self.progress.start_epoch(epoch)
        for step, (images, target) in enumerate(self._batches(), start=1):
            n = target.shape[0]
            loss, logits = self.train_step(images, target, gen)
            top1_miss = (logits.argmax(1) != target).sum()
            sums += torch.stack([loss.double() * n, top1_miss.double(), sums.new_tensor(n)])
            self.timer.end_step(n)
            self.progress.step(n * self.dist.world_size, lambda s=sums: (s[0] / s[2]).item())
            if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(sums[0]).item():
                finite = False
                break
        self.progress.end_epoch()
        log.debug("rank %d epoch %d local sums %s", self.dist.rank, epoch, sums.tolist())
        sums = _all_reduce(sums, self.dist)
        loss_sum, misses, count = sums.tolist()
        seconds = time.perf_counter() - start
        finite = finite and math.isfinite(loss_sum)
        count = max(count, 1.0)
        return EpochStats(loss_sum / count, misses / count, None, int(count), seconds, finite)

    def evaluate(self, ten_crop: bool = False, loader: Any = None) -> EpochStats:
        """Loss and top-1/top-5 error on the full validation split (centre crop or 10-crop),
        or on ``loader`` (e.g. the fixed training images of the clean training error)."""
        batches = self.data.val if loader is None else loader
        return evaluate(
            self.model,
            batches,
            self.data.augment,
            self.device,
            self.cfg.runtime.amp,
            self.memory_format,
            ten_crop,
        )

    # -- whole run --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train to ``train.epochs`` (or divergence, or the target under ``stop_at_target``),
        evaluating after every epoch; checkpoint each epoch; return the result."""
        cfg = self.cfg
        state = self.state = restore_state(
            self.out_dir, cfg, self.identity, self.model, self.optimizer, self.scheduler
        )
        diverged_epoch = None
        for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
            lr = self.optimizer.param_groups[0]["lr"]
            stats = self.train_epoch(epoch)
            state.elapsed_s += stats.seconds
            state.images_this_session += stats.images
            row = _epoch_row(epoch, stats, lr, state.elapsed_s)
            if not stats.finite:
                state.history.append(row)
                diverged_epoch = epoch
                log.warning(
                    "loss became non-finite in epoch %d; stopping (status: diverged)", epoch
                )
                break
            val = self.evaluate()
            row.update(
                val_loss=val.loss, val_top1_error=val.top1_error, val_top5_error=val.top5_error
            )
            if self.data.train_eval is not None:
                clean = self.evaluate(loader=self.data.train_eval)
                row.update(train_clean_loss=clean.loss, train_clean_top1_error=clean.top1_error)
            state.history.append(row)
            step_scheduler(self.scheduler, val.top1_error)
            state.epoch = epoch
            if self.dist.is_main:  # one line per epoch, not one per DDP rank
                log.info(
                    "epoch %d/%d train loss %.4f err %.4f | val err %.4f top5 %.4f | %.1fs %.0f img/s",
                    epoch,
                    cfg.train.epochs,
                    stats.loss,
                    stats.top1_error,
                    val.top1_error,
                    val.top5_error,
                    stats.seconds,
                    row["images_per_s"],
                )
            if cfg.train.checkpoint and self.dist.is_main:
                save_state(
                    self.out_dir, self.identity, state, self.model, self.optimizer, self.scheduler
                )
            if cfg.train.stop_at_target and stats.top1_error < cfg.train.target_train_error:
                log.info("training error below the target: stopping (train.stop_at_target)")
                break
        return self._finish(state, diverged_epoch)

    def _finish(self, state: RunState, diverged_epoch: int | None) -> TrainResult:
        """Status (completed, collapsed or diverged), the 10-crop test and the result."""
        cfg = self.cfg
        status = "diverged" if diverged_epoch else "completed"
        collapse = (
            collapse_reason(state.history, self.data.num_classes)
            if cfg.train.collapse_check
            else None
        )
        if status == "completed" and collapse:
            status = "collapsed"
            log.warning("run collapsed (status: collapsed): %s", collapse)
        reason = (
            f"loss became non-finite in epoch {diverged_epoch}"
            if diverged_epoch
            else (collapse if status == "collapsed" else None)
        )
        ten_crop = None
        if cfg.eval.ten_crop and status == "completed":
            tc = self.evaluate(ten_crop=True)
            ten_crop = {
                "val_top1_error_10crop": tc.top1_error,
                "val_top5_error_10crop": tc.top5_error,
            }
        step_time = self.timer.summary()
        setup = self.describe()
        return TrainResult(
            setup=setup,
            status=status,
            reason=reason,
            diverged_epoch=diverged_epoch,
            epochs_completed=state.epoch,
            resumed_from=state.resumed_from,
            notes=state.notes,
            history=state.history,
            train_time_s=state.elapsed_s,
            images_this_session=state.images_this_session,
            ten_crop=ten_crop,
            target_column=self.target_column,
            step_time=step_time,
            model={"num_params": count_parameters(self.model), **getattr(self.model, "config", {})},
            health=self.health(),
        )

    def describe(self) -> TrainSetup:
        """How this run is set up on this host (the record's device, runtime and flops)."""
        cuda = self.device.type == "cuda"
        return TrainSetup(
            cfg=self.cfg,
            device=self.device,
            device_name=torch.cuda.get_device_name(self.device) if cuda else "cpu",
            device_count=self.device_count,
            world_size=self.dist.world_size,
            backend=self.dist.backend,
            distributed=self.dist.distributed,
            model_parallel=self.model_parallel,
            compile_status=self.compile_status,
            compile_mode=self.compile_mode,
            fused_optimizer=bool(self.optimizer.defaults.get("fused")),
            data_info=dict(self.data.info),
            skipped_files=list(self.data.skipped_files),
            flops_per_image=train_flops_per_image(
                self.model, self.cfg.data.image_size, self.device
            ),
            peak_flops_file=self.peak_flops_file,
        )

    def health(self) -> dict[str, Any] | None:
        """Dead ReLUs and LRN load of the final model on the fixed calibration images."""
        if self.data.calibration is None:
            return None
        images = self.data.augment(self.data.calibration.to(self.device), train=False)
        return activation_health(self.model, images.contiguous(memory_format=self.memory_format))

    @property
    def target_column(self) -> str:
        """The history column time to target reads: the clean or the running training error."""
        clean = self.cfg.train.target_error_on == "clean" and self.data.train_eval is not None
        return "train_clean_top1_error" if clean else "train_top1_error"

    @property
    def device_count(self) -> int:
        """Devices this job trains on (DDP ranks or model-parallel towers)."""
        return self.cfg.runtime.gpus if self.model_parallel else self.dist.world_size

    def nvml_indices(self) -> list[int]:
        """Job-local CUDA indices this process's telemetry samples (all of the job's devices)."""
        if self.device.type != "cuda":
            return []
        count = self.device_count
        return list(range(count)) if count > 1 else [self.device.index or 0]


def _host_summary(host: HostStats, dist: DistContext, device: torch.device) -> dict[str, Any]:
    """Host statistics plus ``job_cpu_s``: the CPU time of all of the job's training processes
    since they started (start-up included; summed over DDP ranks), what the job costs."""
    summary = host.summary()
    cpu = torch.tensor([summary["process_lifetime_cpu_s"]], dtype=torch.float64, device=device)
    summary["job_cpu_s"] = round(float(_all_reduce(cpu, dist).item()), 4)
    return summary


def run_training(
    cfg: RunConfig,
    out_dir: Path,
    labels: dict[str, Any] | None = None,
    dist: DistContext | None = None,
    peak_flops_file: Path | None = None,
    data_options: DataOptions | None = None,
) -> dict[str, Any]:
    """Train one run and write ``history.csv`` and ``metrics.json`` into ``out_dir``.

    ``peak_flops_file`` holds the host's CPU peak FLOP/s measured once
    per study (``alexnet-bench peak-flops``); without it the peak is probed in this job.
    ``data_options``: the data identity the job was planned for, and whether a missing
    prepared store is rebuilt (the workflow's cells).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = dist or DistContext()
    host = HostStats()
    host.start()
    wall_start = time.perf_counter()
    trainer = Trainer(cfg, out_dir, dist, peak_flops_file, data_options)
    try:
        return _train_and_record(trainer, cfg, out_dir, labels, dist, host, wall_start)
    finally:
        trainer.data.close()  # the prepared stores' leases: a superseded store may go now


def _train_and_record(
    trainer: Trainer,
    cfg: RunConfig,
    out_dir: Path,
    labels: dict[str, Any] | None,
    dist: DistContext,
    host: HostStats,
    wall_start: float,
) -> dict[str, Any]:
    telemetry_on = cfg.telemetry.enabled and dist.is_main
    sampler = GpuSampler(
        trainer.nvml_indices() if telemetry_on else [],
        interval_s=cfg.telemetry.interval_ms / 1000.0,
        csv_path=out_dir / "gpu.csv",
    )
    sampler.start()
    try:
        result = trainer.fit()
        metrics = training_record(result)
    finally:
        sampler.stop()
    host.stop()
    gpu = sampler.summary(images=result.images_this_session or None)
    if not cfg.telemetry.enabled:
        gpu = {
            "available": False,
            "reason": "telemetry disabled in config (telemetry.enabled: false)",
        }
    stores = dict(trainer.data.info.get("prepared_stores") or {})
    metrics = finish_record(
        metrics,
        cfg,
        labels or {},
        total_time_s=time.perf_counter() - wall_start,
        gpu=gpu,
        host=_host_summary(host, dist, trainer.device),
        parallel=parallel_record(result.setup),
        environment=collect_environment(trainer.device),
        identity=trainer.identity,
        provenance=provenance_record(cfg, stores),
    )
    if dist.is_main:
        finished = metrics["status"] in ("completed", "collapsed")  # trained to the end
        keep = cfg.train.keep_checkpoint if finished else "all"
        if keep == "final":
            save_final_weights(
                out_dir,
                trainer.model.state_dict(),
                cfg.to_dict(),
                trainer.identity,
                result.epochs_completed,
            )
        write_history(out_dir / "history.csv", result.history)
        write_metrics(out_dir / "metrics.json", metrics)
        if keep != "all":  # after metrics.json: a completed run is never resumed
            retire_checkpoints(out_dir, keep_final=keep == "final")
    return metrics
