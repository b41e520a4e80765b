"""Write an ImageNet-like ImageFolder tree of JPEGs for the input-pipeline benchmarks.

ImageNet's training images are mostly about 500x375 px, stored as JPEG at quality ~90 (about
110 kB on average). This writes ``--classes`` class folders with ``--images`` JPEGs in all, of
``--width`` x ``--height`` px at ``--quality``, whose content does not compress trivially: a
smooth colour field (large-scale structure), a mid-frequency texture, random ellipses and
rectangles (edges) and pixel noise, all drawn from a per-image seed, so the tree is the same on
every machine (bit-identical files for the same Pillow/libjpeg) and decoding costs what a photo
of that size costs.

    uv run python benchmarks/make_imagefolder.py --out /tmp/imagenet-like            # 10,000
    uv run python benchmarks/make_imagefolder.py --out /tmp/small --images 500 --classes 10
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _upsampled_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field: a ``cells``-wide grid of random colours, bicubically upsampled."""
    ch = max(2, round(cells * h / w))
    grid = rng.integers(0, 256, (ch, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)


def render(seed: int, width: int, height: int) -> Image.Image:
    """One photo-like RGB image determined by ``seed``."""
    rng = np.random.default_rng(seed)
    base = _upsampled_noise(rng, height, width, 6) * 0.6
    texture = _upsampled_noise(rng, height, width, 160) - 128.0
    img = base + 0.4 * texture + 40
    img += rng.standard_normal(img.shape, dtype=np.float32) * 12.0
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(20, width // 2))
        y1 = y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 4)))
    return canvas


def _write(job: tuple[Path, int, int, int, int]) -> int:
    path, seed, width, height, quality = job
    render(seed, width, height).save(path, format="JPEG", quality=quality)
    return path.stat().st_size


def write_tree(
    out: Path,
    images: int = 10_000,
    classes: int = 100,
    *,
    width: int = 500,
    height: int = 375,
    quality: int = 90,
    val_per_class: int = 0,
    seed: int = 2012,
    workers: int | None = None,
) -> dict[str, object]:
    """Write the tree (``out/<class>/``, or ``out/train`` + ``out/val`` with ``val_per_class``);
    a summary of what was written."""
    jobs: list[tuple[Path, int, int, int, int]] = []
    splits = [("train", images)]
    if val_per_class:
        splits.append(("val", val_per_class * classes))
    for split_index, (split, count) in enumerate(splits):
        top = out / split if val_per_class else out
        for i in range(count):
            folder = top / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            image_seed = seed * 10_000_019 + split_index * 1_000_003 + i
            jobs.append((folder / f"img_{i:07d}.JPEG", image_seed, width, height, quality))
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        sizes = list(pool.map(_write, jobs, chunksize=64))
    return {
        "root": str(out),
        "images": len(jobs),
        "classes": classes,
        "size_px": [width, height],
        "quality": quality,
        "mean_file_kB": round(sum(sizes) / len(sizes) / 1000, 1),
        "total_MB": round(sum(sizes) / 1e6, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="tree root (created)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=0,
        help="also write root/val/<class>/ with this many images per class "
        "(the tree then has root/train and root/val)",
    )
    parser.add_argument("--seed", type=int, default=2012)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    summary = write_tree(
        args.out,
        args.images,
        args.classes,
        width=args.width,
        height=args.height,
        quality=args.quality,
        val_per_class=args.val_per_class,
        seed=args.seed,
        workers=args.workers,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
