"""Input pipeline on an ImageNet-like tree: decoding JPEGs per epoch vs the prepared-data cache.

Measures, on one machine in one run, what feeds a training step with images of the paper's
stored size (256 px; the step crops 224 px on the device):

* ``decode_pil`` / ``decode_torchvision``: decoding one original JPEG to 256 px on one core
  (the direct path's ``decode_image``; ``torchvision.io.decode_jpeg`` + antialiased resize +
  centre crop);
* ``streaming_loader_w1/_w2``: the direct path for trees too large for memory
  (``StreamingLoader``: DataLoader worker processes decoding every image every epoch);
* ``cache_build_raw_w1/_w2``, ``cache_build_jpeg90_w2``: ``alexnet-bench prepare-data``'s
  build (decode once; write the rows of the memory-mappable uint8 array, or re-encode them as
  JPEGs at quality 90: the disk trade-off's alternative);
* ``cached_loader_raw_w1/_w2``, ``cached_loader_jpeg90_w1/_w2``: the loader training reads the
  cache with (``MappedBatchLoader``: shuffled batches of 256 gathered by background threads, up
  to the batch a device copy would take; page cache warm), and ``cached_loader_raw_cold_w1``
  with the file evicted from the page cache first (``posix_fadvise DONTNEED``: the disk's
  speed);
* ``in_memory_loader``: the whole split held as one uint8 tensor (``TensorBatchLoader``);
* ``jpeg90_decode_torchvision``: the JPEG store's blobs decoded by torchvision instead of
  Pillow (a faster decoder, for reference);
* ``scan``: listing and fingerprinting the tree (what the workflow does before any job).

Every row gives wall-clock images/s and images per CPU-second (all processes and threads of
the measurement, workers included): the per-core figure that carries over to other machines.

``--mode device`` (what ``scripts/gpu_acceptance.sh`` runs on a GPU box) measures instead what a
training job on ``--device`` gets, every core of the machine helping: the streaming loader, the
cache builds and the cached loaders (raw, jpeg90) delivering batches to the device and cropping,
flipping and lighting them there (224 px of 256), plus GPU JPEG decoding (nvjpeg, through
torchvision) on CUDA; ``--make-tree DIR`` writes the ImageNet-like tree first.

    uv run python benchmarks/make_imagefolder.py --out /tmp/imagenet-like --val-per-class 10
    uv run python benchmarks/input_pipeline.py --tree /tmp/imagenet-like \\
        --cache-dir /tmp/imagenet-like-cache --out benchmarks/results/input_pipeline_cpu.json
    python benchmarks/input_pipeline.py --mode device --device cuda --make-tree /tmp/t \\
        --cache-dir /tmp/t-cache --out input_pipeline_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet_bench.data.loaders import MappedBatchLoader, StreamingLoader, TensorBatchLoader
from alexnet_bench.data.sources import decode_image
from alexnet_bench.data.store import IMAGES, ImageStore, build_store
from alexnet_bench.imagefolder import FolderSplit, scan_tree, store_dir, tree_dir
from alexnet_bench.telemetry.environment import collect_environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results

CPU = torch.device("cpu")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(name: str, images: int, work: Callable[[], Any], **extra: Any) -> dict[str, Any]:
    """Run ``work`` once (its worker processes must have exited when it returns)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    row = {
        "name": name,
        "images": images,
        "wall_s": round(wall, 3),
        "images_per_s": round(images / wall, 1),
        "cpu_s": round(cpu, 3),
        "images_per_cpu_s": round(images / cpu, 1),
        **extra,
    }
    print(
        f"{name:28s} {row['images_per_s']:>10,.0f} img/s  {row['images_per_cpu_s']:>10,.0f} "
        f"img/CPU-s  ({images} images, {wall:.2f} s)",
        flush=True,
    )
    return row


def decode_torchvision(path: str, size: int) -> torch.Tensor:
    """torchvision's CPU decoder with the same geometry: shorter side to ``size``, centre crop."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    image = decode_jpeg(read_file(str(path)))
    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def drain(loader: Any, batches: int | None = None) -> None:
    for i, _ in enumerate(loader, start=1):
        if batches is not None and i >= batches:
            break


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_rows(args: argparse.Namespace, device: torch.device) -> tuple[list[dict[str, Any]], Any]:
    """What a training job on ``device`` is fed, all cores helping (``--mode device``)."""
    from alexnet_bench.data.augment import BatchAugment, rgb_pca

    if args.make_tree:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_imagefolder import write_tree

        print(
            json.dumps(
                write_tree(args.make_tree, args.tree_images, args.tree_classes, val_per_class=1)
            ),
            flush=True,
        )
    scan = scan_tree(args.tree or args.make_tree, 0.1)
    cpus = os.cpu_count() or 1
    size, batch = args.stored_size, args.batch_size
    rows: list[dict[str, Any]] = []
    shutil.rmtree(args.cache_dir, ignore_errors=True)
    tree = tree_dir(args.cache_dir, scan)
    n = len(scan.train.paths)
    for fmt, encoding in (("raw", "raw"), ("jpeg90", "jpeg")):
        dest = store_dir(tree, "train", size, fmt)
        rows.append(
            measure(
                f"cache_build_{fmt}_w{cpus}",
                n,
                lambda d=dest, e=encoding: build_store(
                    scan, "train", size, d, encoding=e, workers=cpus
                ),
                workers=cpus,
            )
        )
    raw = ImageStore.open(store_dir(tree, "train", size))
    sample = raw.read(np.arange(min(n, 500)))
    augment = BatchAugment(
        args.crop,
        torch.zeros(3),
        torch.ones(3),
        crop_flip=True,
        pca=rgb_pca(sample),
        lighting_std=0.1,
    ).to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def feed(loader: Any, epochs: int) -> None:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for x, _ in loader:
                augment(x, train=True, generator=gen)
        sync(device)

    per_epoch = n // batch * batch
    epochs = max(1, -(-args.min_images // per_epoch))
    workers = max(1, min(cpus - 1, 16))
    stream = StreamingLoader(
        scan.train, size, batch, device=device, shuffle=True, drop_last=True, workers=workers
    )
    feed(stream, 1)  # workers started, files in the page cache
    rows.append(
        measure(
            f"streaming_loader_w{workers}",
            per_epoch,
            lambda ld=stream: feed(ld, 1),
            workers=workers,
            to=str(device),
            augment_crop=args.crop,
        )
    )
    del stream
    for fmt, threads in (("raw", 2), ("raw", 4), ("jpeg90", workers)):
        store = ImageStore.open(store_dir(tree, "train", size, fmt))
        loader = MappedBatchLoader(
            store.reader,
            store.rows,
            store.labels,
            batch,
            device=device,
            shuffle=True,
            drop_last=True,
            workers=threads,
        )
        feed(loader, 1)
        count = epochs if fmt == "raw" else 1
        rows.append(
            measure(
                f"cached_loader_{fmt}_w{threads}",
                per_epoch * count,
                lambda ld=loader, c=count: feed(ld, c),
                workers=threads,
                to=str(device),
                augment_crop=args.crop,
            )
        )
    if device.type == "cuda":
        from torchvision.io import decode_jpeg

        jpeg = ImageStore.open(store_dir(tree, "train", size, "jpeg90"))
        blobs = [
            torch.from_numpy(np.array(jpeg.reader.blobs[s : s + k]))
            for s, k in jpeg.reader.index[:batch]
        ]
        decode_jpeg(blobs, device=device)

        def gpu_decode() -> None:
            for _ in range(16):
                decode_jpeg(blobs, device=device)
            sync(device)

        rows.append(measure("jpeg90_decode_nvjpeg", 16 * len(blobs), gpu_decode, to=str(device)))
    shutil.rmtree(args.cache_dir, ignore_errors=True)
    return rows, {"crop": args.crop, "tree_images": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--mode",
        choices=["cpu", "device"],
        default="cpu",
        help="cpu: per-core figures on this machine (default); device: what a "
        "training job on --device is fed, all cores helping",
    )
    p.add_argument("--device", default="cpu", help="device mode: cuda or cpu")
    p.add_argument("--tree", type=Path, help="ImageFolder tree (train/ + val/)")
    p.add_argument("--make-tree", type=Path, help="device mode: write an ImageNet-like tree here")
    p.add_argument("--tree-images", type=int, default=2048)
    p.add_argument("--tree-classes", type=int, default=100)
    p.add_argument("--crop", type=int, default=224, help="device mode: crop size")
    p.add_argument(
        "--min-images",
        type=int,
        default=8192,
        help="device mode: images per cached-loader measurement",
    )
    p.add_argument("--cache-dir", type=Path, required=True, help="prepared-data cache to build")
    p.add_argument("--stored-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--decode-images", type=int, default=400, help="images per decode row")
    p.add_argument("--stream-images", type=int, default=2048, help="images per streaming row")
    p.add_argument("--out", type=Path, required=True, help="JSON path (CSV written beside)")
    args = p.parse_args(argv)
    if args.mode == "device":
        device = torch.device(args.device)
        rows, extra = device_rows(args, device)
        env = collect_environment(device)
        result = {
            "what": "input pipeline to the device (--mode device)",
            "mode": "device",
            "device": str(device),
            "command": " ".join(["python", *sys.argv]),
            "stored_size": args.stored_size,
            "batch_size": args.batch_size,
            **extra,
            "rows": rows,
            "environment": env,
        }
        write_results(args.out, result, rows)
        return 0
    if args.tree is None:
        p.error("--tree is required in cpu mode")
    torch.set_num_threads(1)
    size, batch = args.stored_size, args.batch_size
    rows: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    scan = scan_tree(args.tree, 0.1)
    files = len(scan.train.paths) + len(scan.val.paths)
    rows.append(
        measure(
            "scan",
            files,
            lambda: scan_tree(args.tree, 0.1),
            us_per_file=round((time.perf_counter() - t0) / files * 1e6, 2),
        )
    )
    paths = scan.train.paths
    # originals, decoded once per image on one core (files in the page cache: read them first)
    for path in paths[: args.decode_images]:
        Path(path).read_bytes()
    n = args.decode_images
    for path in paths[:5]:  # first calls load libraries and kernels: not part of the rate
        decode_image(path, size), decode_torchvision(path, size)
    rows.append(measure("decode_pil", n, lambda: [decode_image(q, size) for q in paths[:n]]))
    rows.append(
        measure("decode_torchvision", n, lambda: [decode_torchvision(q, size) for q in paths[:n]])
    )
    # the direct path: DataLoader workers decode every image of every epoch
    k = args.stream_images
    sub = FolderSplit(paths[:k], scan.train.labels[:k])
    for path in sub.paths:
        Path(path).read_bytes()
    for workers in (1, 2):

        def stream(w: int = workers) -> None:
            loader = StreamingLoader(
                sub, size, batch, device=CPU, shuffle=True, drop_last=True, workers=w
            )
            drain(loader)
            del loader

        rows.append(
            measure(f"streaming_loader_w{workers}", k // batch * batch, stream, workers=workers)
        )
    # the cache: build once (raw: the val split on one worker, the train split on two)
    shutil.rmtree(args.cache_dir, ignore_errors=True)
    tree = tree_dir(args.cache_dir, scan)
    rows.append(
        measure(
            "cache_build_raw_w1",
            len(scan.val.paths),
            lambda: build_store(scan, "val", size, store_dir(tree, "val", size), workers=1),
            workers=1,
            split="val",
        )
    )
    rows.append(
        measure(
            "cache_build_raw_w2",
            len(paths),
            lambda: build_store(scan, "train", size, store_dir(tree, "train", size), workers=2),
            workers=2,
            split="train",
        )
    )
    jpeg_dest = store_dir(tree, "train", size, "jpeg90")
    rows.append(
        measure(
            "cache_build_jpeg90_w2",
            len(paths),
            lambda: build_store(
                scan, "train", size, jpeg_dest, encoding="jpeg", quality=90, workers=2
            ),
            workers=2,
            split="train",
        )
    )

    def mapped(store: ImageStore, workers: int) -> MappedBatchLoader:
        return MappedBatchLoader(
            store.reader,
            store.rows,
            store.labels,
            batch,
            device=CPU,
            shuffle=True,
            drop_last=True,
            seed=0,
            workers=workers,
        )

    raw = ImageStore.open(store_dir(tree, "train", size))
    jpeg = ImageStore.open(jpeg_dest)
    per_epoch = raw.num_images // batch * batch
    for name, store in (("raw", raw), ("jpeg90", jpeg)):
        extra = {"bytes_per_image": round(store.manifest["images"]["bytes"] / store.num_images)}
        for workers in (1, 2):
            loader = mapped(store, workers)
            drain(loader, 4 if name == "jpeg90" else None)  # warm: pages, threads
            loader.set_epoch(1)
            rows.append(
                measure(
                    f"cached_loader_{name}_w{workers}",
                    per_epoch,
                    lambda ld=loader: drain(ld),
                    workers=workers,
                    **extra,
                )
            )
    evict(store_dir(tree, "train", size) / IMAGES)
    loader = mapped(raw, 1)
    loader.set_epoch(2)
    rows.append(
        measure(
            "cached_loader_raw_cold_w1",
            per_epoch,
            lambda: drain(loader),
            workers=1,
            page_cache="evicted (posix_fadvise DONTNEED): reads from disk",
        )
    )
    images, labels = raw.load()
    memory = TensorBatchLoader(images, labels, batch, device=CPU, shuffle=True, drop_last=True)
    drain(memory)
    rows.append(measure("in_memory_loader", per_epoch, lambda ld=memory: drain(ld)))
    del images, memory
    # a faster JPEG decoder than Pillow's, for reference: torchvision's (deprecated in 0.29)
    from torchvision.io import decode_jpeg

    blobs = [
        torch.from_numpy(np.array(jpeg.reader.blobs[s : s + n_]))
        for s, n_ in jpeg.reader.index[: args.decode_images]
    ]
    decode_jpeg(blobs[0])
    rows.append(
        measure("jpeg90_decode_torchvision", len(blobs), lambda: [decode_jpeg(b) for b in blobs])
    )

    env = collect_environment(CPU)
    by_name = {r["name"]: r for r in rows}
    per_core = by_name["cached_loader_raw_w1"]["images_per_cpu_s"]
    result = {
        "what": __doc__.split("\n\n")[0],
        "command": " ".join(["python", *sys.argv]),
        "tree": {
            "root": str(args.tree),
            "files": files,
            "classes": len(scan.classes),
            "train_images": len(paths),
            "mean_file_bytes": round(np.mean([os.path.getsize(q) for q in paths[:2000]])),
        },
        "stored_size": size,
        "batch_size": batch,
        "rows": rows,
        "ratios": {
            "cached_vs_streaming_per_core": round(
                per_core / by_name["streaming_loader_w1"]["images_per_cpu_s"], 1
            ),
            "cached_vs_decode_pil_per_core": round(
                per_core / by_name["decode_pil"]["images_per_cpu_s"], 1
            ),
            "jpeg90_cached_vs_streaming_per_core": round(
                by_name["cached_loader_jpeg90_w1"]["images_per_cpu_s"]
                / by_name["streaming_loader_w1"]["images_per_cpu_s"],
                1,
            ),
        },
        "environment": {
            k: env.get(k)
            for k in (
                "cpu_model",
                "logical_cpus",
                "torch",
                "python",
                "hostname",
                "timestamp_utc",
                "git_commit",
            )
        },
    }
    write_results(args.out, result, rows)
    print(
        f"cached loader per core = {result['ratios']['cached_vs_streaming_per_core']}x the "
        f"streaming loader; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
