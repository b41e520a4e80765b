"""What the two sides ran on: software, hardware, threads, precision and compile settings.

Each field is read from the typed record (``environment``, ``runtime`` as it took effect,
``device``) of every trained run of a side; a side's value is the set of distinct values over
its runs, and a field is listed as a difference when the two sets differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..collect import TRAINED_STATUSES, Run

NA = "n/a"


def _text(value: Any) -> str | None:
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _commit(r: Run) -> str | None:
    env = r.record.environment
    if env.git_commit is None:
        return None
    return env.git_commit[:12] + (" (modified)" if env.git_dirty else "")


def _device(r: Run) -> str | None:
    d = r.record.device
    if d.type is None:
        return None
    return f"{d.type}: {d.name or '?'}" + (f" x{d.count}" if d.count and d.count > 1 else "")


def _gpus(r: Run) -> str | None:
    names = [g.get("name") for g in r.record.environment.cuda_gpus if isinstance(g, dict)]
    return ", ".join(str(n) for n in names if n) or None


def _cpus(r: Run) -> str | None:
    env = r.record.environment
    if env.logical_cpus is None:
        return None
    return f"{env.usable_cpus if env.usable_cpus is not None else '?'} of {env.logical_cpus}"


#: (label, accessor) of every field compared, in display order
FIELDS: tuple[tuple[str, Callable[[Run], Any]], ...] = (
    ("git commit", _commit),
    ("torch", lambda r: r.record.environment.torch),
    ("torchvision", lambda r: r.record.environment.torchvision),
    ("numpy", lambda r: r.record.environment.numpy),
    ("python", lambda r: r.record.environment.python),
    ("CUDA (torch build)", lambda r: r.record.environment.torch_cuda),
    ("cuDNN", lambda r: r.record.environment.cudnn),
    ("GPU driver", lambda r: r.record.environment.driver_version),
    ("device", _device),
    ("GPUs", _gpus),
    ("CPU model", lambda r: r.record.environment.cpu_model),
    ("CPU ISA flags", lambda r: " ".join(r.record.environment.cpu_flags)),
    ("torch CPU capability", lambda r: r.record.environment.cpu_capability),
    ("usable of logical CPUs", _cpus),
    ("torch threads", lambda r: r.record.environment.torch_threads),
    ("precision (autocast)", lambda r: r.record.runtime.amp),
    ("TF32", lambda r: r.record.runtime.tf32),
    ("torch.compile", lambda r: r.record.runtime.compile),
    ("CUDA graphs", lambda r: r.record.runtime.cuda_graphs),
    ("channels_last", lambda r: r.record.runtime.channels_last),
    ("cuDNN autotuning", lambda r: r.record.runtime.cudnn_benchmark),
    ("fused optimizer", lambda r: r.record.runtime.fused_optimizer),
    ("deterministic", lambda r: r.record.runtime.deterministic),
    ("data held on the device", lambda r: r.record.runtime.data_on_device),
    ("platform", lambda r: r.record.environment.platform),
    ("hostname", lambda r: r.record.environment.hostname),
)


@dataclass(frozen=True)
class EnvField:
    """One field: each side's distinct values (joined), and whether they differ (a field one
    side did not record, e.g. an older record, is shown but not counted as a difference)."""

    label: str
    base: str
    new: str
    differs: bool


def _values(runs: Iterable[Run], get: Callable[[Run], Any]) -> set[str]:
    return {t for r in runs if r.status in TRAINED_STATUSES and (t := _text(get(r))) is not None}


def compare_environment(base: Iterable[Run], new: Iterable[Run]) -> list[EnvField]:
    """Every field of :data:`FIELDS` for the two sides' trained runs."""
    base, new = list(base), list(new)
    out = []
    for label, get in FIELDS:
        vb, vn = _values(base, get), _values(new, get)
        differs = bool(vb) and bool(vn) and vb != vn  # unrecorded on a side is no difference
        out.append(
            EnvField(label, " | ".join(sorted(vb)) or NA, " | ".join(sorted(vn)) or NA, differs)
        )
    return out
