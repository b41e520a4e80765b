"""Overhead of run telemetry on training-step time: telemetry ON vs a bare loop.

The same training steps (a small AlexNet from :func:`alexnet_bench.model.build_model`, or a
local CNN if that is unavailable; SGD with momentum; fixed random data resident on the device)
run in blocks of ``--steps`` steps, alternately

* **on**: :class:`~alexnet_bench.telemetry.GpuSampler` at ``--interval-ms`` in its thread,
  :class:`~alexnet_bench.telemetry.StepTimer` with the train loop's phases (data, h2d, forward,
  backward, optimizer) and :class:`~alexnet_bench.telemetry.HostStats`;
* **off**: the bare loop.

Each block's step time is its wall time over ``--steps`` (one device sync at each end, the same
measurement in both modes); ON/OFF blocks are interleaved, the order flipped every repeat
(ON OFF, OFF ON, ...) to cancel drift, and the overhead is the median over repeats of
``on / off - 1`` with its spread: quartiles and a bootstrap 95 % interval of the median (also
given: the ratio of the medians and of the minima, the least-disturbed blocks). The same is
reported for the process CPU time per step (all threads, ``time.process_time``), which other
processes on a shared machine disturb less than wall time and which includes the sampler
thread's work. The once-per-run costs (sampler stop: CSV write and summaries) fall outside
the blocks and are reported separately, as are noise-free microbenchmarks of the timer's cost
per step and the sampler's cost per sample.

Without a GPU there is no NVML to sample; ``--fake-nvml auto`` (default) then installs an
in-process stand-in for ``pynvml`` returning constants, so that the sampler thread still runs
(and competes for the GIL) at the real rate. The JSON says which.

Run::

    uv run python benchmarks/telemetry_overhead.py --out benchmarks/results/telemetry_overhead_cpu.json
    uv run python benchmarks/telemetry_overhead.py --device cuda --image-size 224 --width 1 \\
        --batch-size 256 --out benchmarks/results/telemetry_overhead_cuda.json   # on a GPU box
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_bench.io import write_json, write_text
from alexnet_bench.telemetry import (
    GpuSampler,
    HostStats,
    StepTimer,
    collect_environment,
    train_flops_per_image,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_ci95, pct, sync

TARGET_PCT = 1.0


def fake_pynvml() -> types.ModuleType:
    """A constant-valued ``pynvml`` stand-in (for measuring the sampler thread without a GPU)."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # pynvml's name
        pass

    m.NVMLError, m.NVMLError_NotSupported = NVMLError, NVMLError_NotSupported
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    energy = [0]

    def total_energy(h: object) -> int:
        energy[0] += 10_000
        return energy[0]

    util = types.SimpleNamespace(gpu=50, memory=20)
    mem = types.SimpleNamespace(used=1 << 30, total=80 << 30, free=79 << 30)
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: object()
    m.nvmlDeviceGetUUID = lambda h: "GPU-00000000-0000-0000-0000-000000000000"
    m.nvmlDeviceGetName = lambda h: "simulated GPU (fake pynvml)"
    m.nvmlDeviceGetUtilizationRates = lambda h: util
    m.nvmlDeviceGetMemoryInfo = lambda h: mem
    m.nvmlDeviceGetPowerUsage = lambda h: 300_000
    m.nvmlDeviceGetClockInfo = lambda h, kind: 1980
    m.nvmlDeviceGetTemperature = lambda h, sensor: 60
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0
    m.nvmlDeviceGetTotalEnergyConsumption = total_energy
    return m


class SmallCNN(nn.Module):
    """Fallback AlexNet-like net when ``alexnet_bench.model`` is not importable."""

    def __init__(self, num_classes: int = 10, width: float = 0.25) -> None:
        super().__init__()
        c = [max(8, int(k * width)) for k in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(3, c[0], 5, 2, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(c[4] * 4, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model(width: float, image_size: int) -> tuple[nn.Module, str]:
    try:
        from alexnet_bench.model import build_model

        return build_model({"width": width}, 10, image_size), (
            f"alexnet_bench.model.build_model({{'width': {width}}}, 10, {image_size})"
        )
    except Exception as exc:  # model.py missing or incompatible: a local stand-in
        return SmallCNN(10, width), f"SmallCNN(width={width}) ({type(exc).__name__}: {exc})"


def make_step(model: nn.Module, opt: torch.optim.Optimizer, device: torch.device) -> Callable:
    """One training step; ``timer`` None = the bare loop, else every phase is timed."""

    def step(batch: tuple[torch.Tensor, torch.Tensor], timer: StepTimer | None) -> None:
        if timer is None:
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return
        with timer.phase("data"):
            x, y = batch
        with timer.phase("h2d"):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with timer.phase("forward"):
            loss = F.cross_entropy(model(x), y)
        with timer.phase("backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with timer.phase("optimizer"):
            opt.step()
        timer.end_step(x.shape[0])

    return step


def microbench_timer(device: torch.device, n: int = 2000) -> float:
    """Microseconds per step of StepTimer bookkeeping alone (5 empty phases + end_step)."""
    timer = StepTimer(device, warmup_steps=0)
    names = ("data", "h2d", "forward", "backward", "optimizer")
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        for name in names:
            with timer.phase(name):
                pass
        timer.end_step(1)
    sync(device)
    elapsed = time.perf_counter() - t0
    timer.summary()
    return elapsed / n * 1e6


def microbench_sampler(indices: list[int], n: int = 200) -> float | None:
    """Microseconds per synchronous sample of all devices (None when NVML is unavailable)."""
    sampler = GpuSampler(indices)
    if not sampler.available:
        return None
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.sample()
    elapsed = time.perf_counter() - t0
    sampler.stop()
    return elapsed / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON path (a .csv is written beside)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--repeats", type=int, default=40, help="ON/OFF block pairs")
    p.add_argument("--steps", type=int, default=12, help="training steps per block")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the first block")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25, help="model width multiplier")
    p.add_argument("--interval-ms", type=int, default=100, help="GPU sampling interval")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU default: 1)")
    p.add_argument(
        "--fake-nvml",
        choices=["auto", "on", "off"],
        default="auto",
        help="simulated pynvml (auto: on when the device is the CPU)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    kind = (
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    device = torch.device("cuda", 0) if kind == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    fake = args.fake_nvml == "on" or (args.fake_nvml == "auto" and device.type == "cpu")
    if fake:
        sys.modules["pynvml"] = fake_pynvml()
    indices = [0] if (device.type == "cuda" or fake) else []

    torch.manual_seed(args.seed)
    model, model_desc = make_model(args.width, args.image_size)
    model = model.to(device)
    flops = train_flops_per_image(model, args.image_size, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = make_step(model, opt, device)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [
        (
            torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen).to(
                device
            ),
            torch.randint(0, 10, (args.batch_size,), generator=gen).to(device),
        )
        for _ in range(4)
    ]
    for i in range(args.warmup):
        step(batches[i % len(batches)], None)
    sync(device)

    tmp = Path(tempfile.mkdtemp(prefix="telemetry_overhead_"))
    rows: list[dict[str, Any]] = []
    last_on: dict[str, Any] = {}
    fixed_costs_ms: list[float] = []

    def block(mode: str, repeat: int, position: int) -> tuple[float, float]:
        timer = sampler = host = None
        if mode == "on":
            host = HostStats()
            host.start()
            sampler = GpuSampler(indices, args.interval_ms / 1000.0, tmp / f"gpu_{repeat}.csv")
            sampler.start()
            timer = StepTimer(device, warmup_steps=2)
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.steps):
            step(batches[i % len(batches)], timer)
        sync(device)
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        if mode == "on":
            assert timer is not None and sampler is not None and host is not None
            t1 = time.perf_counter()
            last_on["step_time"] = timer.summary()
            sampler.stop()
            host.stop()
            last_on["gpu"] = sampler.summary(images=args.steps * args.batch_size)
            last_on["host"] = host.summary()
            fixed_costs_ms.append((time.perf_counter() - t1) * 1e3)
        step_ms, cpu_ms = seconds / args.steps * 1e3, cpu_s / args.steps * 1e3
        rows.append(
            {
                "repeat": repeat,
                "position": position,
                "mode": mode,
                "steps": args.steps,
                "block_s": round(seconds, 6),
                "step_ms": round(step_ms, 4),
                "cpu_ms_per_step": round(cpu_ms, 4),
            }
        )
        print(f"repeat {repeat} {mode:>3}: {step_ms:8.3f} ms/step", file=sys.stderr)
        return step_ms, cpu_ms

    ratios, cpu_ratios, on_ms, off_ms, on_cpu, off_cpu = [], [], [], [], [], []
    for r in range(args.repeats):
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        result = {mode: block(mode, r, k) for k, mode in enumerate(order)}
        (on, on_c), (off, off_c) = result["on"], result["off"]
        on_ms.append(on)
        off_ms.append(off)
        on_cpu.append(on_c)
        off_cpu.append(off_c)
        ratios.append(on / off)
        cpu_ratios.append(on_c / off_c)
    overhead = [(q - 1.0) * 100.0 for q in ratios]
    cpu_overhead = [(q - 1.0) * 100.0 for q in cpu_ratios]

    timer_us = microbench_timer(device)
    sample_us = microbench_sampler(indices)
    off_median = statistics.median(off_ms)
    samples_per_step = off_median / args.interval_ms
    results = {
        "off_step_ms_median": off_median,
        "on_step_ms_median": statistics.median(on_ms),
        "overhead_pct_median": statistics.median(overhead),
        "overhead_pct_median_ci95": median_ci95(overhead),
        "overhead_pct_p25": pct(overhead, 25),
        "overhead_pct_p75": pct(overhead, 75),
        "overhead_pct_min": min(overhead),
        "overhead_pct_max": max(overhead),
        "overhead_pct_of_medians": (statistics.median(on_ms) / off_median - 1.0) * 100.0,
        "overhead_pct_of_minima": (min(on_ms) / min(off_ms) - 1.0) * 100.0,
        "off_step_ms_spread_pct": (max(off_ms) - min(off_ms)) / off_median * 100.0,
        "off_cpu_ms_per_step_median": statistics.median(off_cpu),
        "on_cpu_ms_per_step_median": statistics.median(on_cpu),
        "cpu_overhead_pct_median": statistics.median(cpu_overhead),
        "cpu_overhead_pct_median_ci95": median_ci95(cpu_overhead),
        "cpu_overhead_pct_p25": pct(cpu_overhead, 25),
        "cpu_overhead_pct_p75": pct(cpu_overhead, 75),
        "repeats": args.repeats,
        "steps_per_block": args.steps,
        "target_pct": TARGET_PCT,
        "median_below_target": statistics.median(overhead) < TARGET_PCT,
        "fixed_cost_per_run_ms_median": statistics.median(fixed_costs_ms),
    }
    micro = {
        "timer_us_per_step": timer_us,
        "timer_pct_of_step": timer_us / (off_median * 1e3) * 100.0,
        "sampler_us_per_sample": sample_us,
        "sampler_pct_of_step": (
            sample_us * samples_per_step / (off_median * 1e3) * 100.0 if sample_us else None
        ),
        "note": (
            "bookkeeping cost measured in isolation (no training); the *_pct_of_step figures "
            "are that cost relative to the bare step time, a noise-free bound on the overhead "
            "from CPU time (not from GIL or cache contention)"
        ),
    }
    if fake:
        nvml_mode = "simulated: in-process fake pynvml with constant values (no GPU here)"
    else:
        nvml_mode = "real NVML" if indices else "none (CPU run: sampler unavailable)"
    prefix = "uv run python" if os.environ.get("UV_RUN_RECURSION_DEPTH") else "python"
    out = {
        "benchmark": "telemetry_overhead",
        "command": f"{prefix} {shlex.join(sys.argv if argv is None else [sys.argv[0], *argv])}",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "nvml": nvml_mode,
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "model": model_desc,
            "params": sum(p.numel() for p in model.parameters()),
            "train_flops_per_image": flops,
            "phases": ["data", "h2d", "forward", "backward", "optimizer"],
            "data": "fixed random tensors resident on the device (4 batches, cycled)",
        },
        "results": results,
        "microbenchmarks": micro,
        "last_on_block": last_on,
        "environment": collect_environment(device),
    }
    write_json(args.out, out)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(args.out.with_suffix(".csv"), buf.getvalue())
    print(
        f"off {off_median:.3f} ms/step, on {results['on_step_ms_median']:.3f} ms/step, "
        f"overhead {results['overhead_pct_median']:+.2f}% (95% CI "
        f"{'{:+.2f} to {:+.2f}'.format(*results['overhead_pct_median_ci95'])}%, {args.repeats} "
        f"pairs); process CPU time {results['cpu_overhead_pct_median']:+.2f}% (95% CI "
        f"{'{:+.2f} to {:+.2f}'.format(*results['cpu_overhead_pct_median_ci95'])}%); "
        f"timer {timer_us:.1f} us/step"
        + (f", sampler {sample_us:.1f} us/sample" if sample_us else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
