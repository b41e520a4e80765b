"""FLOPs per image (counted, never hard-coded), device peak FLOP/s and model FLOP utilisation.

Counts come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts matrix
multiplications and convolutions (2 FLOPs per multiply-accumulate) and ignores element-wise
ops, pooling, LRN, softmax and the optimiser; that is the usual convention for MFU. Training
FLOPs are those of one forward + backward pass: about 3x the forward pass for conv/linear
layers (the backward computes the input and the weight gradient), except that the first
convolution computes no input gradient (its input needs none), so it costs 2x.

Peak FLOP/s: for known NVIDIA data-centre GPUs the dense (no sparsity) spec-sheet peak of the
dtype in use; with float32 and TF32 enabled (``torch.backends.cuda.matmul.allow_tf32`` or a
float32 matmul precision other than ``"highest"``) the TF32 tensor-core peak, since that is what
float32 matmuls run at. Otherwise (CPU, unknown GPU) a measured peak: the median throughput of
several timed square matmuls after warm-up, cached per process. A measured "peak" is what this
machine reaches on a large matmul, not a theoretical bound, so CPU MFU is relative to that.
"""

from __future__ import annotations

import contextlib
import time
from functools import cache
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .timing import synchronize

__all__ = [
    "GPU_PEAK_FLOPS",
    "device_peak_flops",
    "forward_flops_per_image",
    "measure_matmul_flops",
    "mfu",
    "train_flops_per_image",
]

_BATCH = 2

#: Dense spec-sheet peaks (FLOP/s, no sparsity) by a substring of the CUDA device name; the
#: first matching entry wins, so more specific names come first.
GPU_PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200 NVL", {}),  # lower clocks than H200 SXM: no entry -> measured
    ("H100 NVL", {}),
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    ("H200", {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),  # SXM/HBM3
    ("A100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
)
_DTYPE_KEY = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def _input_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


@contextlib.contextmanager
def _preserved(model: nn.Module, device: torch.device) -> Any:
    """Restore train/eval modes, gradients, buffers (e.g. BN running stats) and RNG state."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for p, _ in grads:
                p.grad = None
            yield
    finally:
        for p, g in grads:
            p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, training in modes:
            m.train(training)


def _count(model: nn.Module, image_size: int, device: torch.device | str, train: bool) -> int:
    device = torch.device(device)
    with _preserved(model, device):
        x = torch.randn(_BATCH, _input_channels(model), image_size, image_size, device=device)
        model.train()
        counter = FlopCounterMode(display=False)
        if train:
            with counter:
                model(x).float().sum().backward()
        else:
            with counter, torch.no_grad():
                model(x)
    total = counter.get_total_flops()
    return round(total / _BATCH)


def train_flops_per_image(
    model: nn.Module, image_size: int, device: torch.device | str = "cpu"
) -> int:
    """FLOPs of one training forward + backward pass per image (``FlopCounterMode``, batch 2).

    The model is run in train mode; its modes, gradients, buffers and the RNG state are restored
    and its weights are not modified. ``device`` must hold the model's parameters.
    """
    return _count(model, image_size, device, train=True)


def forward_flops_per_image(
    model: nn.Module, image_size: int, device: torch.device | str = "cpu"
) -> int:
    """FLOPs of one forward pass per image (train-mode graph, no gradients)."""
    return _count(model, image_size, device, train=False)


def _tf32_enabled() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32) or (
        torch.get_float32_matmul_precision() != "highest"
    )


@cache
def _measured(device_str: str, dtype: torch.dtype, n: int, repeats: int, threads: int) -> float:
    device = torch.device(device_str)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        rates.append(2.0 * n**3 / (time.perf_counter() - t0))
    # The best repeat: disturbances (other processes, frequency dips) only ever slow a matmul
    # down, and a median over a ~0.1 s probe let one disturbed burst halve the "peak".
    return float(max(rates))


def measure_matmul_flops(
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    n: int | None = None,
    repeats: int = 10,
) -> float:
    """Best FLOP/s of ``repeats`` timed ``n x n`` matmuls after 2 warm-up ones (cached)."""
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    return _measured(str(device), dtype, n, repeats, torch.get_num_threads())


def device_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Peak FLOP/s for ``dtype`` on ``device``: spec table for known GPUs, else measured.

    Returns ``{"peak_flops", "source": "spec-table:<name>" | "measured-matmul", "dtype", "note"}``.
    """
    device = torch.device(device)
    key = _DTYPE_KEY.get(dtype, str(dtype).removeprefix("torch."))
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if key == "fp32" and _tf32_enabled():
            key = "tf32"
        for pattern, peaks in GPU_PEAK_FLOPS:
            if pattern.lower() in name.lower():
                if key in peaks:
                    return {
                        "peak_flops": peaks[key],
                        "source": f"spec-table:{name}",
                        "dtype": key,
                        "note": "spec sheet, dense, no sparsity",
                    }
                break
    # CPU, an unknown GPU or dtype: what a large matmul reaches here.
    measure_dtype = dtype if dtype in _DTYPE_KEY else torch.float32
    peak = measure_matmul_flops(device, measure_dtype)
    note = "best of 10 timed square matmuls after warm-up"
    if device.type == "cpu":
        note += f" on {torch.get_num_threads()} thread(s)"
    return {"peak_flops": peak, "source": "measured-matmul", "dtype": key, "note": note}


def mfu(achieved_flops_per_s: float, peak: float) -> float:
    """Model FLOP utilisation: achieved / peak FLOP/s."""
    if not peak > 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak!r}")
    return float(achieved_flops_per_s) / float(peak)
