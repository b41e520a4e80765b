"""The run record (metrics.json) as the reading side sees it: typed, built once per file.

:class:`RunRecord` and its sections are the keys of ``schemas/metrics.schema.yaml`` that any
reader uses; :func:`from_metrics` builds one from a parsed metrics.json, defensively (a missing,
null or mistyped value becomes None, an empty list or an empty dict; nothing raises). Fields
marked :func:`conditional` may be absent from a trained run (GPU telemetry, 10-crop, health of
arms without ReLU/LRN, ...); tests/test_record_contract.py checks that the schema requires every
other field for a trained run and that a trained run's record holds them. The record's
``config`` is read into the same typed sections the writer validated (:mod:`.config`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .config import RecordConfig, record_config
from .numbers import as_float

#: field metadata of a value a trained run's record need not hold
COND = {"conditional": True}


def conditional() -> Any:
    """A scalar field (default None) a trained run's record need not hold."""
    return field(default=None, metadata=COND)


@dataclass(frozen=True)
class Final:
    train_loss: float | None = None
    train_top1_error: float | None = None  # running, over the last epoch's batches
    val_loss: float | None = None
    val_top1_error: float | None = None
    val_top5_error: float | None = None
    val_top1_error_10crop: float | None = conditional()


@dataclass(frozen=True)
class Best:
    epoch: int | None = None
    val_top1_error: float | None = None


@dataclass(frozen=True)
class TimeToTarget:
    """What the writer recorded; readers recompute the crossing from history.csv (``collect``)."""

    target_train_error: float | None = None
    error: str | None = None  # the history column the target was read from


@dataclass(frozen=True)
class Throughput:
    images_per_s_median: float | None = None


@dataclass(frozen=True)
class StepMs:
    median: float | None = None
    p10: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class StepTime:
    images_per_s_median: float | None = None
    steps_timed: int | None = None
    step_ms: StepMs = field(default_factory=StepMs)


@dataclass(frozen=True)
class Flops:
    mfu: float | None = None
    peak_source: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    num_params: int | None = None
    variant: str | None = conditional()  # AlexNet's; the Figure 1 net has none


@dataclass(frozen=True)
class Health:
    dead_relu_fraction: dict[str, float] = field(
        default_factory=dict, metadata=COND
    )  # per hidden ReLU layer
    lrn_alpha_sum_over_k: dict[str, float] = field(
        default_factory=dict, metadata=COND
    )  # per LRN layer


@dataclass(frozen=True)
class Device:
    type: str | None = None
    name: str | None = None
    count: int | None = None


@dataclass(frozen=True)
class DataInfo:
    source: str | None = None
    image_size: int | None = None
    num_train: int | None = None
    num_classes: int | None = None
    num_val: int | None = conditional()
    root: str | None = conditional()  # on-disk data sets
    skipped_files: int | None = None  # bad images skipped (data.on_bad_image: skip)
    skipped_examples: list[str] = field(default_factory=list)
    ignored_files: int | None = None  # files of an image folder that are not images
    prepared_cache: str | None = None  # the prepared-data cache read, or None
    prepared_format: str | None = None  # its encoding (raw, jpeg<q>)


@dataclass(frozen=True)
class Mean:
    mean: float | None = None


@dataclass(frozen=True)
class Gpu:
    available: bool | None = None
    reason: str | None = conditional()  # why telemetry is unavailable
    devices: list[Any] = field(default_factory=list, metadata=COND)
    energy_per_image_j: float | None = conditional()
    mem_used_peak_mib: float | None = conditional()
    power_w: Mean = field(default_factory=Mean, metadata=COND)
    util_gpu_pct: Mean = field(default_factory=Mean, metadata=COND)


@dataclass(frozen=True)
class Host:
    cpu_util_pct: float | None = None
    job_cpu_s: float | None = None
    peak_rss_mib: float | None = None
    process_lifetime_cpu_s: float | None = None


@dataclass(frozen=True)
class Parallel:
    mode: str | None = None
    world_size: int | None = None
    devices: int | None = None


@dataclass(frozen=True)
class Runtime:
    """The fast-path switches as they took effect (``runtime``; the config says what was asked)."""

    compile: str | None = None
    cuda_graphs: str | None = None
    amp: str | None = None
    channels_last: bool | None = None
    cudnn_benchmark: bool | None = None  # None off CUDA
    fused_optimizer: bool | None = None
    tf32: bool | None = None
    deterministic: bool | None = None
    data_on_device: bool | None = None


@dataclass(frozen=True)
class Environment:
    git_commit: str | None = None
    git_dirty: bool | None = None
    torch: str | None = None
    torchvision: str | None = None
    numpy: str | None = None
    torch_cuda: str | None = None
    cuda_gpus: list[Any] = field(default_factory=list, metadata=COND)
    nvml_gpus: list[Any] = field(default_factory=list, metadata=COND)
    driver_version: str | None = conditional()
    cudnn: str | None = None
    cpu_model: str | None = None
    cpu_flags: list[str] = field(default_factory=list)  # vector-ISA flags (AVX2, AVX-512, ...)
    cpu_capability: str | None = None  # the ISA torch's CPU kernels dispatch to
    logical_cpus: int | None = None
    usable_cpus: int | None = None
    torch_threads: int | None = None
    python: str | None = None
    platform: str | None = None
    hostname: str | None = None
    timestamp_utc: str | None = None


@dataclass(frozen=True)
class DataIdentity:
    """The content identity of the data a run read (``identity.data``; alexnet_bench.identity)."""

    kind: str | None = conditional()  # store | tree | files
    train: str | None = conditional()  # store: the train store's content digest
    val: str | None = conditional()
    fingerprint: str | None = conditional()  # tree
    sha256: str | None = conditional()  # files


@dataclass(frozen=True)
class Identity:
    """What the run computed: its result config's hash, its data, and both together."""

    config_hash: str | None = None
    data: DataIdentity = field(default_factory=DataIdentity)
    hash: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Where the run's files lay (never part of its identity)."""

    workdir: str | None = None


@dataclass(frozen=True)
class Labels:
    """The cell's labels (``run``); empty for a run outside a study."""

    preset: str | None = conditional()
    ablation: str | None = conditional()
    seed: int | None = conditional()


@dataclass(frozen=True)
class RunRecord:
    """A parsed metrics.json: every value a reader uses, typed."""

    status: str | None = None
    reason: str | None = conditional()  # why a run failed, collapsed or was skipped
    epochs_completed: int | None = None
    diverged_epoch: int | None = conditional()
    notes: list[str] = field(default_factory=list)
    run: Labels = field(default_factory=Labels)
    config: RecordConfig = field(default_factory=lambda: record_config(None))
    config_hash: str | None = None
    identity: Identity = field(default_factory=Identity)
    provenance: Provenance = field(default_factory=Provenance)
    final: Final = field(default_factory=Final)
    best: Best = field(default_factory=Best)
    time_to_target: TimeToTarget = field(default_factory=TimeToTarget)
    train_time_s: float | None = None
    total_time_s: float | None = None
    throughput: Throughput = field(default_factory=Throughput)
    step_time: StepTime = field(default_factory=StepTime)
    flops: Flops = field(default_factory=Flops)
    model: ModelInfo = field(default_factory=ModelInfo)
    health: Health = field(default_factory=Health)
    device: Device = field(default_factory=Device)
    runtime: Runtime = field(default_factory=Runtime)
    data: DataInfo = field(default_factory=DataInfo)
    gpu: Gpu = field(default_factory=Gpu)
    host: Host = field(default_factory=Host)
    parallel: Parallel = field(default_factory=Parallel)
    environment: Environment = field(default_factory=Environment)


# ----------------------------------------------------------------------------- building


def _convert(kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` (a field's resolved type), or the type's empty value."""
    if kind is RecordConfig:
        return record_config(value if isinstance(value, dict) else None)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value)
    origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            return []
        (item,) = typing.get_args(kind)
        return [str(v) for v in value] if item is str else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            return {}
        return {str(k): f for k, v in value.items() if (f := as_float(v)) is not None}
    if origin in (typing.Union, types.UnionType):  # X | None
        (base,) = [t for t in typing.get_args(kind) if t is not type(None)]
        return _scalar(base, value)
    return _scalar(kind, value)


def _scalar(kind: type, value: Any) -> Any:
    if value is None:
        return None
    if kind is float:
        return as_float(value)
    if kind is int:
        f = as_float(value)
        return int(f) if f is not None and f == int(f) else None
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is str:
        return value if isinstance(value, str) else str(value)
    return value


@cache
def _fields(cls: Any) -> tuple[tuple[str, Any], ...]:
    """(name, resolved type) of each field of a record dataclass."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _build(cls: Any, data: Any) -> Any:
    data = data if isinstance(data, dict) else {}
    return cls(**{name: _convert(kind, data.get(name)) for name, kind in _fields(cls)})


def from_metrics(metrics: dict[str, Any]) -> RunRecord:
    """The typed record of a parsed metrics.json (any shape: unknown keys are ignored)."""
    return _build(RunRecord, metrics)


def field_paths(cls: Any = RunRecord, prefix: str = "") -> dict[str, bool]:
    """Every leaf field as a dotted metrics.json path -> whether it is conditional (for the
    contract test; ``config`` is the run schema's business and is listed as one leaf)."""
    out: dict[str, bool] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, kind = f"{prefix}{f.name}", hints[f.name]
        cond = bool(f.metadata.get("conditional"))
        if dataclasses.is_dataclass(kind) and kind is not RecordConfig:
            sub = field_paths(kind, f"{path}.")
            out.update({k: v or cond for k, v in sub.items()})
        else:
            out[path] = cond
    return out
