"""``alexnet-bench prepare-data`` and ``data-info``: build and inspect the prepared-data cache."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import effective_stored_size
from ..errors import DataError
from ..imagefolder import SPLITS, parse_cache_format, scan_tree, store_dir, tree_dir
from .store import build_store, describe

DEFAULT_CACHE_DIR = "data-cache"


def cmd_prepare_data(args: argparse.Namespace) -> int:
    """Decode an image folder's splits once into the cache; print the tree directory to use
    as ``data.cache``."""
    stored = args.stored_size or effective_stored_size(args.image_size, None)
    encoding, quality = parse_cache_format(args.format)
    scan = scan_tree(args.root, args.val_fraction)
    if args.out:
        out = Path(args.out)
        expected = tree_dir(out.parent.parent, scan)
        if out.parent != expected:
            raise DataError(
                f"the tree '{args.root}' changed since this job was planned (its cache is now "
                f"'{expected}', not '{out.parent}'); rerun snakemake to plan it again"
            )
        targets = [(args.split[0], out)]
    else:
        tree = tree_dir(args.cache_dir, scan)
        targets = [(split, store_dir(tree, split, stored, args.format)) for split in args.split]
    for split, dest in targets:
        build_store(scan, split, stored, dest, encoding=encoding, quality=quality or 0,
                    on_bad_image=args.on_bad_image, workers=args.workers,
                    progress_every_s=args.progress_s)  # fmt: skip
    fmt = "" if args.format == "raw" else f" and data.cache_format to {args.format}"
    print(f"prepared data: {targets[0][1].parent} (set data.cache to it{fmt})")
    return 0


def _cache_format(text: str) -> str:
    try:
        parse_cache_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_data_info(args: argparse.Namespace) -> int:
    """Print what a store (or every store of a tree directory) holds."""
    print(describe(args.path))
    return 0


def add_data_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``prepare-data`` and ``data-info`` subcommands."""
    prepare = sub.add_parser(
        "prepare-data",
        help="decode an image folder once into the prepared-data cache (memory-mappable uint8)",
        description=(
            "Decode every image of an ImageFolder tree (root/train + root/val, or one tree split "
            "by --val-fraction) once, resized as training resizes it (shorter side to the stored "
            "size, centre crop), into <cache-dir>/<tree>-<fingerprint>/<split>-<S>px/. Training "
            "runs with data.cache set to the printed directory read it instead of the JPEGs. An "
            "up-to-date cache is left as it is; a changed tree gets a new one."
        ),
    )
    prepare.add_argument("--root", required=True, help="the ImageFolder tree (data.root)")
    size = prepare.add_mutually_exclusive_group()
    size.add_argument("--stored-size", type=int, help="stored size in px (data.stored_size)")
    size.add_argument("--image-size", type=int, default=224,
                      help="crop size; stored size = round(image_size * 256 / 224) (default 224)")  # fmt: skip
    prepare.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS))
    prepare.add_argument("--format", default="raw", type=_cache_format,
                         help="raw (uint8, the decoded pixels exactly; default) or jpeg<quality>, "
                         "e.g. jpeg90 (re-encoded JPEGs, about 8x smaller, decoded while "
                         "training)")  # fmt: skip
    prepare.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                         help=f"where caches live (default: ./{DEFAULT_CACHE_DIR})")  # fmt: skip
    prepare.add_argument("--out", help="exact store directory to build (one --split; the "
                         "workflow's prepare_data jobs use it)")  # fmt: skip
    prepare.add_argument("--val-fraction", type=float, default=0.1,
                         help="held-out fraction of a tree without val/ (data.val_fraction)")  # fmt: skip
    prepare.add_argument("--on-bad-image", choices=["fail", "skip"], default="fail",
                         help="a file that does not decode: fail the build (default) or skip it, "
                         "listed in the manifest")  # fmt: skip
    prepare.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                         help="decoding processes (default: all CPUs)")  # fmt: skip
    prepare.add_argument("--progress-s", type=float, default=10.0,
                         help="seconds between progress lines (default 10)")  # fmt: skip
    prepare.set_defaults(func=cmd_prepare_data)

    info = sub.add_parser("data-info", help="show what a prepared-data cache holds")
    info.add_argument("path", help="a store (<cache>/<tree>/<split>-<S>px) or a tree directory")
    info.set_defaults(func=cmd_data_info)
