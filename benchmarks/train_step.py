"""Training-step throughput: a plain reference loop vs the suite's step vs the FLOP limit.

One process, one model architecture (torchvision's AlexNet layers: no LRN; at 224x224 and width
1 exactly ``torchvision.models.alexnet``), per batch size:

* ``reference``: fp32, eager, a per-sample ``DataLoader`` pipeline (random crop + flip +
  normalise per image in worker processes, pinned-memory copies), as the torchvision
  classification reference trains.
* ``suite``: :meth:`alexnet_bench.train.Trainer.train_step`, the step every workflow job runs,
  with the config's fast path (GPU: uint8 data resident on the device, batched on-device
  crops/flips/PCA lighting, bf16 autocast, channels_last, ``torch.compile``, fused SGD, cuDNN
  autotuning; ``--cuda-graphs`` adds CUDA-graph capture).
* ``limit``: the device's peak FLOP/s over the model's training FLOPs per image (counted with
  ``torch.utils.flop_counter``): the images/s at 100 % MFU. The peak is the spec-sheet dense
  figure for known GPUs (bf16 on GPU) or a measured matmul rate (CPU); see
  ``alexnet_bench/telemetry/flops.py``.
* ``input_pipeline``: the suite's loader + batched augmentation alone (images/s it can feed).

Timing: warm-up steps excluded; CUDA events around each step on GPU, ``perf_counter`` on CPU;
medians over timed steps.

On CPU it also measures the harness overhead: whole epochs of the real
``Trainer.train_epoch`` (phase timer, metric sums, divergence checks) against the same math
in a bare loop, interleaved (suite, bare, bare, suite, ...) to cancel drift, reported as the
median of the per-pair ratios with a bootstrap 95 % interval.

Run (docs/performance.md shows the table)::

    uv run python benchmarks/train_step.py --device cpu --out benchmarks/results/train_step_cpu.json
    python benchmarks/train_step.py --device cuda --out benchmarks/results/train_step_cuda.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from alexnet_bench.config import RunConfig
from alexnet_bench.model import build_model
from alexnet_bench.record import runtime_record
from alexnet_bench.telemetry.environment import collect_environment
from alexnet_bench.telemetry.flops import device_peak_flops, train_flops_per_image
from alexnet_bench.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_ci95, sync, time_steps, write_results

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PerSampleImages(Dataset):
    """The reference pipeline: one uint8 CHW image at a time -> crop, flip, float, normalise."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: int) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.RandomCrop(crop),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def reference_model(size: int, width: float, num_classes: int) -> nn.Module:
    """torchvision's AlexNet (exactly, at 224 px and width 1), else the same layers scaled."""
    if size >= 64 and width == 1.0:
        return torchvision.models.alexnet(num_classes=num_classes)
    options = {"variant": "torchvision", "width": width, "init": "torchvision", "lrn": False}
    return build_model(options, num_classes, size)


def reference_loop(
    device: torch.device, size: int, width: float, batch: int, workers: int, warmup: int, steps: int
) -> list[float]:
    """Seconds per step of the plain loop: fp32 eager, per-sample DataLoader transforms."""
    stored, n = round(size * 256 / 224), batch * 8
    images = torch.randint(0, 256, (n, 3, stored, stored), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    loader = DataLoader(
        PerSampleImages(images, labels, size),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )
    model = reference_model(size, width, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches = _forever(loader)

    def step() -> None:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    return time_steps(step, device, warmup, steps)


def _forever(loader: Any) -> Iterator[Any]:
    epoch = 0
    while True:
        epoch += 1
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader


def suite_run(args: argparse.Namespace, size: int, width: float, batch: int) -> dict[str, Any]:
    """The run config the suite benchmarks: the GPU presets' fast path on GPU, the CPU presets'
    (channels_last, for oneDNN's convolutions) on CPU."""
    gpu = args.device == "cuda"
    run: dict[str, Any] = {
        "model": {"variant": "torchvision", "width": width, "lrn": False, "init": "kaiming"},
        "data": {
            "source": "synthetic",
            "image_size": size,
            "num_val": 10,
            "num_train": batch * (args.suite_batches if gpu else args.epoch_batches),
        },
        "train": {"batch_size": batch, "deterministic": not gpu, "checkpoint": False},
        "runtime": {"device": args.device, "threads": args.threads},
        "telemetry": {"warmup_steps": args.warmup},
    }
    if gpu:
        run["runtime"].update(
            amp="bf16",
            channels_last=True,
            compile=not args.no_compile,
            fused_optimizer=True,
            cudnn_benchmark=True,
            cuda_graphs=args.cuda_graphs,
        )
    else:
        run["runtime"]["channels_last"] = True
    return run


def suite_loop(trainer: Trainer, warmup: int, steps: int) -> list[float]:
    """Seconds per step of the suite's real step (``Trainer.train_step``)."""
    batches = _forever(trainer.data.train)
    gen = torch.Generator(device=trainer.device).manual_seed(0)

    def step() -> None:
        images, target = next(batches)
        trainer.train_step(images, target, gen)
        trainer.timer.end_step(target.shape[0])

    trainer.train_model.train()
    return time_steps(step, trainer.device, warmup, steps)


def input_pipeline(trainer: Trainer, warmup: int, steps: int) -> list[float]:
    """Seconds per batch of the suite's loader + batched augmentation alone."""
    batches = _forever(trainer.data.train)
    gen = torch.Generator(device=trainer.device).manual_seed(0)

    def step() -> None:
        images, _ = next(batches)
        trainer.data.augment(images, train=True, generator=gen)

    return time_steps(step, trainer.device, warmup, steps)


def bare_epoch(trainer: Trainer, epoch: int) -> float:
    """Images/s of one epoch's math with nothing else: the floor for harness overhead."""
    model, opt, augment = trainer.train_model, trainer.optimizer, trainer.data.augment
    model.train()
    trainer.data.train.set_epoch(epoch)
    gen = torch.Generator(device=trainer.device).manual_seed(epoch)
    seen, loss = 0, None
    start = time.perf_counter()
    for images, target in trainer.data.train:
        loss = F.cross_entropy(model(augment(images, train=True, generator=gen)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += target.shape[0]
    if loss is not None:
        float(loss.detach())  # wait for the last step
    return seen / (time.perf_counter() - start)


def harness_overhead(trainer: Trainer, repeats: int) -> dict[str, Any]:
    """Suite epoch vs bare epoch, interleaved; ratio = suite images/s over bare images/s."""
    bare_epoch(trainer, 0)  # warm-up epoch (allocator, oneDNN primitive caches)
    suite, bare, ratios = [], [], []
    for r in range(repeats):
        epochs = (2 * r + 1, 2 * r + 2)
        if r % 2 == 0:
            s = trainer.train_epoch(epochs[0])
            b = bare_epoch(trainer, epochs[1])
        else:
            b = bare_epoch(trainer, epochs[1])
            s = trainer.train_epoch(epochs[0])
        suite.append(s.images / s.seconds)
        bare.append(b)
        ratios.append(suite[-1] / b)
    return {
        "suite_images_per_s": [round(v, 1) for v in suite],
        "bare_images_per_s": [round(v, 1) for v in bare],
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_median_ci95": [round(v, 4) for v in median_ci95(ratios)],
        "ratios": [round(v, 4) for v in ratios],
    }


def row(name: str, batch: int, step_s: list[float], flops: float, peak: float) -> dict[str, Any]:
    """One table row from per-step times."""
    median = statistics.median(step_s)
    ips = batch / median
    out: dict[str, Any] = {
        "loop": name,
        "batch_size": batch,
        "images_per_s": round(ips, 1),
        "step_ms_median": round(median * 1000, 3),
        "step_ms_p10": round(sorted(step_s)[len(step_s) // 10] * 1000, 3),
        "step_ms_p90": round(sorted(step_s)[(9 * len(step_s)) // 10] * 1000, 3),
        "steps_timed": len(step_s),
    }
    if name != "input_pipeline":
        out["achieved_tflops"] = round(ips * flops / 1e12, 4)
        out["mfu"] = round(ips * flops / peak, 4) if peak else None
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--size", type=int, help="input size (default: 224 on GPU, 32 on CPU)")
    p.add_argument("--width", type=float, help="width multiplier (default: 1 GPU, 0.25 CPU)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default: 128 256 512 GPU, 64 CPU")
    p.add_argument("--warmup", type=int, help="untimed steps (default: 30 GPU, 5 CPU)")
    p.add_argument("--steps", type=int, help="timed steps (default: 100 GPU, 30 CPU)")
    p.add_argument("--repeats", type=int, default=9, help="CPU: suite/bare epoch pairs")
    p.add_argument("--epoch-batches", type=int, default=24, help="CPU: batches per epoch")
    p.add_argument(
        "--suite-batches",
        type=int,
        default=8,
        help="GPU: distinct batches of generated data the suite cycles through (generating "
        "shapes10 at 256 px took 23 ms an image on one core of the 2-vCPU development VM)",
    )
    p.add_argument(
        "--workers", type=int, help="reference DataLoader workers (default 8 GPU, 1 CPU)"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-compile", action="store_true", help="GPU: suite without torch.compile")
    p.add_argument("--cuda-graphs", action="store_true", help="GPU: suite with CUDA graphs")
    p.add_argument("--out", type=Path, required=True, help="JSON path (CSV written beside)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gpu = args.device == "cuda"
    size = args.size or (224 if gpu else 32)
    width = args.width or (1.0 if gpu else 0.25)
    batch_sizes = args.batch_sizes or ([128, 256, 512] if gpu else [64])
    args.warmup = args.warmup if args.warmup is not None else (30 if gpu else 5)
    steps = args.steps or (100 if gpu else 30)
    workers = args.workers if args.workers is not None else (8 if gpu else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    scratch = args.out.parent / f".{args.out.stem}_scratch"
    for batch in batch_sizes:
        trainer = Trainer(RunConfig(suite_run(args, size, width, batch)), scratch)
        flops = train_flops_per_image(trainer.model, size, trainer.device)
        peak_info = device_peak_flops(trainer.device, torch.bfloat16 if gpu else torch.float32)
        peak = peak_info["peak_flops"]
        ref = reference_loop(trainer.device, size, width, batch, workers, args.warmup, steps)
        rows.append(row("reference", batch, ref, flops, peak))
        rows.append(row("suite", batch, suite_loop(trainer, args.warmup, steps), flops, peak))
        rows.append(row("input_pipeline", batch, input_pipeline(trainer, 5, steps), flops, peak))
        rows.append(
            {
                "loop": "limit",
                "batch_size": batch,
                "images_per_s": round(peak / flops, 1),
                "achieved_tflops": round(peak / 1e12, 3),
                "mfu": 1.0,
            }
        )
        if not gpu:
            extra[f"harness_overhead_bs{batch}"] = harness_overhead(trainer, args.repeats)
        extra[f"suite_runtime_bs{batch}"] = runtime_record(trainer.describe())
        extra[f"suite_phases_bs{batch}"] = trainer.timer.summary()
        for r in rows[-4:]:
            print(json.dumps(r), file=sys.stderr, flush=True)
        del trainer
        sync(torch.device(args.device))
    result = {
        "command": "python " + " ".join(["benchmarks/train_step.py", *sys.argv[1:]]),
        "device": args.device,
        "image_size": size,
        "width": width,
        "model": "torchvision AlexNet layers (no LRN)",
        "train_flops_per_image": flops,
        "peak_flops": peak,
        "peak_source": peak_info["source"],
        "rows": rows,
        **extra,
        "environment": collect_environment(torch.device(args.device)),
    }
    write_results(args.out, result, rows)
    print(f"{'loop':<15} {'batch':>5} {'images/s':>10} {'step ms':>8} {'MFU':>7}")
    for r in rows:
        print(
            f"{r['loop']:<15} {r['batch_size']:>5} {r['images_per_s']:>10} "
            f"{r.get('step_ms_median', ''):>8} {r.get('mfu') or '':>7}"
        )
    for key, value in extra.items():
        if key.startswith("harness_overhead"):
            print(
                f"{key}: suite/bare = {value['ratio_median']} (95% CI {value['ratio_median_ci95']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
