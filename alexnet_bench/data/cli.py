"""``alexnet-bench prepare-data``, ``data-info`` and ``data-gc``: build, inspect and tidy the
prepared-data cache."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..config import effective_stored_size
from ..imagefolder import SPLITS, parse_cache_format
from ..io import write_json
from .store import collect_garbage, describe, ensure_store, garbage_report

DEFAULT_CACHE_DIR = "data-cache"
TOKEN_FORMAT = "alexnet-bench-prepared-data"


def data_token(
    split: str, store: Path, manifest: dict[str, Any], cache_format: str, state: str | None
) -> dict:
    """What a workflow's prepared-data token says about a store: its content digest (the cell's
    identity), the tree state it was built for (the workflow's ``state``) and where it lies
    (provenance)."""
    return {
        "format": TOKEN_FORMAT,
        "state": state,
        "split": split,
        "stored_size": manifest["stored_size"],
        "cache_format": cache_format,
        "digest": manifest["digest"],
        "fingerprint": manifest["fingerprint"],
        "num_images": manifest["num_images"],
        "classes": manifest["classes"],
        "store": str(store),
        "source_root": manifest["source_root"],
    }


def cmd_prepare_data(args: argparse.Namespace) -> int:
    """Decode an image folder's splits once into the cache; print the tree directory to use
    as ``data.cache`` (with ``--token``: also write the workflow's token of the one split)."""
    stored = args.stored_size or effective_stored_size(args.image_size, None)
    parse_cache_format(args.format)
    built = []
    for split in args.split:
        store, manifest = ensure_store(
            args.root,
            args.val_fraction,
            split,
            stored,
            args.format,
            args.cache_dir,
            fingerprint=args.fingerprint,
            on_bad_image=args.on_bad_image,
            workers=args.workers,
            progress_every_s=args.progress_s,
        )
        built.append((split, store, manifest))
    if args.token:
        split, store, manifest = built[0]
        token = data_token(split, store, manifest, args.format, args.state)
        write_json(Path(args.token), token)
    fmt = "" if args.format == "raw" else f" and data.cache_format to {args.format}"
    print(f"prepared data: {built[0][1].parent} (set data.cache to it{fmt})")
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


def cmd_data_gc(args: argparse.Namespace) -> int:
    """List (or, with --delete, remove) superseded stores and leftovers of a cache."""
    items, freed = collect_garbage(args.cache_dir, delete=args.delete)
    print(garbage_report(items, freed, deleted=args.delete))
    return 0


def add_data_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``prepare-data``, ``data-info`` and ``data-gc`` subcommands."""
    prepare = sub.add_parser(
        "prepare-data",
        help="decode an image folder once into the prepared-data cache (memory-mappable uint8)",
        description=(
            "Decode every image of an ImageFolder tree (root/train + root/val, or one tree split "
            "by --val-fraction) once, resized as training resizes it (shorter side to the stored "
            "size, centre crop), into <cache-dir>/<tree>-<fingerprint>/<split>-<S>px-v2-<decoders>/. Training "
            "runs with data.cache set to the printed directory read it instead of the JPEGs. An "
            "up-to-date store is left as it is, wherever the tree lies now; a changed tree gets "
            "a new one, and the store it supersedes is removed once no job reads it."
        ),
    )
    prepare.add_argument("--root", required=True, help="the ImageFolder tree (data.root)")
    size = prepare.add_mutually_exclusive_group()
    size.add_argument("--stored-size", type=int, help="stored size in px (data.stored_size)")
    size.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="crop size; stored size = round(image_size * 256 / 224) (default 224)",
    )
    prepare.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS))
    prepare.add_argument(
        "--format",
        default="raw",
        type=_cache_format,
        help="raw (uint8, the decoded pixels exactly; default) or jpeg<quality>, e.g. jpeg90 "
        "(re-encoded JPEGs, about 8x smaller, decoded while training)",
    )
    prepare.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        help=f"where caches live (default: ./{DEFAULT_CACHE_DIR})",
    )
    prepare.add_argument(
        "--fingerprint",
        help="the tree state the store is for (the workflow's plan): a tree that changed since "
        "fails with one line",
    )
    prepare.add_argument(
        "--token",
        help="also write this JSON file with the store's content digest and location (one "
        "--split; the workflow's prepare_data jobs use it)",
    )
    prepare.add_argument(
        "--state", help="with --token: the tree state the workflow planned, recorded in the token"
    )
    prepare.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="held-out fraction of a tree without val/ (data.val_fraction)",
    )
    prepare.add_argument(
        "--on-bad-image",
        choices=["fail", "skip"],
        default="fail",
        help="a file that does not decode: fail the build (default) or skip it, listed in the "
        "manifest",
    )
    prepare.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="decoding processes (default: all CPUs)",
    )
    prepare.add_argument(
        "--progress-s", type=float, default=10.0, help="seconds between progress lines (default 10)"
    )
    prepare.set_defaults(func=cmd_prepare_data)

    info = sub.add_parser("data-info", help="show what a prepared-data cache holds")
    info.add_argument(
        "path", help="a store (<cache>/<tree>/<split>-<S>px-v2-<decoders>) or a tree directory"
    )
    info.set_defaults(func=cmd_data_info)

    gc = sub.add_parser(
        "data-gc",
        help="list superseded stores and leftovers of the prepared-data cache (--delete: remove)",
        description=(
            "A store is superseded when a store of the same tree, split rule, split, size and "
            "format was built later from another state of the tree. Leftovers: directories of "
            "builds that did not finish, stores moved aside by a rebuild, lock files nobody "
            "holds, empty tree directories. Lists them with the space they take; --delete "
            "removes every one that no running job reads."
        ),
    )
    gc.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        help=f"the cache (the study's data_cache_dir; default: ./{DEFAULT_CACHE_DIR})",
    )
    gc.add_argument("--delete", action="store_true", help="remove what is listed (not in use)")
    gc.set_defaults(func=cmd_data_gc)
