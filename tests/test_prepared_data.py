"""The prepared-data cache: an image folder decoded once, read by every cell as the direct path
would have decoded it (same pixels, same batches, same run), rebuilt only when the tree changes,
never trusted half-built."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.data import build_data
from alexnet_bench.data.loaders import MappedBatchLoader, TensorBatchLoader
from alexnet_bench.data.sources import decode_split
from alexnet_bench.data.store import (
    IMAGES,
    MANIFEST,
    ImageStore,
    build_store,
    describe,
    find_garbage,
)
from alexnet_bench.errors import DataError, DiskFullError
from alexnet_bench.imagefolder import scan_tree, store_dir, tree_dir
from alexnet_bench.train import Trainer, run_training

from .conftest import fit_killed_in_epoch
from .helpers import STORED, folder_run, prepare, prepare_args, start_held_build

CPU = torch.device("cpu")
TIMING = ("epoch_time_s", "elapsed_s", "images_per_s")


def batches(loader: TensorBatchLoader | MappedBatchLoader, epoch: int) -> list[tuple]:
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def assert_same_batches(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b) and a
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ------------------------------------------------------------------ the tree: what is an image


def test_non_image_files_are_ignored_counted_and_leave_the_fingerprint(image_folder: Path) -> None:
    before = scan_tree(image_folder, 0.34)
    (image_folder / "cat" / "README.txt").write_text("notes")
    (image_folder / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (image_folder / "fox" / "._0.png").write_bytes(b"\0\5\26\7")  # macOS resource fork
    (image_folder / "LICENSE").write_text("CC-BY")
    scan = scan_tree(image_folder, 0.34)
    assert sorted(Path(p).name for p in scan.ignored) == [
        ".DS_Store",
        "._0.png",
        "LICENSE",
        "README.txt",
    ]
    assert scan.fingerprint == before.fingerprint and scan.train.paths == before.train.paths
    bundle = build_data(RunConfig(folder_run(image_folder)), CPU)  # no longer a "corrupt image"
    assert bundle.info["ignored_files"] == 4 and bundle.skipped_files == []


def test_fingerprint_follows_the_images_and_the_split_rule(image_folder: Path) -> None:
    base = scan_tree(image_folder, 0.34).fingerprint
    assert scan_tree(image_folder, 0.34).fingerprint == base
    assert scan_tree(image_folder, 0.5).fingerprint != base  # another split
    image = image_folder / "cat" / "0.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    touched = scan_tree(image_folder, 0.34).fingerprint
    assert touched != base
    image.rename(image_folder / "cat" / "renamed.png")
    assert scan_tree(image_folder, 0.34).fingerprint not in (base, touched)


# ------------------------------------------------------------------ the same pixels


@pytest.fixture
def awkward_folder(tmp_path: Path) -> Path:
    """Two classes of the images that trip decoders: grayscale, 16-bit, CMYK, palette with
    transparency, RGBA, an EXIF-rotated photo, images smaller than the stored size, upper-case
    extensions, a nested folder."""
    rng = np.random.default_rng(7)
    root = tmp_path / "awkward"
    (root / "a" / "nested").mkdir(parents=True)
    (root / "b").mkdir()

    def rgb(h: int, w: int) -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    Image.fromarray(rgb(40, 30)[..., 0], "L").save(root / "a" / "gray.png")
    Image.fromarray(rng.integers(0, 65535, (30, 50), dtype=np.uint16)).save(root / "a" / "g16.png")
    Image.fromarray(rgb(44, 60)).convert("CMYK").save(root / "a" / "cmyk.jpg", quality=90)
    palette = Image.fromarray(rgb(50, 40)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(root / "a" / "palette.png", transparency=3)
    Image.fromarray(np.dstack([rgb(48, 48), rgb(48, 48)[..., :1]]), "RGBA").save(
        root / "b" / "rgba.png"
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    Image.fromarray(rgb(40, 64)).save(root / "b" / "rotated.JPEG", exif=exif, quality=92)
    Image.fromarray(rgb(10, 8)).save(root / "b" / "tiny.Png")
    Image.fromarray(rgb(37, 90)).save(root / "a" / "nested" / "wide.bmp")
    Image.fromarray(rgb(90, 37)).save(root / "b" / "tall.webp", quality=90)
    Image.fromarray(rgb(36, 36)).save(root / "b" / "exact.tiff")
    return root


def test_store_holds_exactly_the_direct_paths_pixels(awkward_folder: Path, tmp_path: Path) -> None:
    scan = scan_tree(awkward_folder, 0.25)
    tree = prepare(awkward_folder, tmp_path / "cache", val_fraction=0.25)
    for split in ("train", "val"):
        store = ImageStore.open(
            store_dir(tree, split, STORED), root=awkward_folder, stored_size=STORED
        )
        images, labels = store.load()
        direct, direct_labels, skipped = decode_split(scan.splits[split], STORED)
        assert skipped == [] and images.shape == direct.shape
        assert torch.equal(images, direct) and torch.equal(labels, direct_labels)
    assert len(scan.train.paths) + len(scan.val.paths) == 10


# ------------------------------------------------------------------ the same batches, the same run


@pytest.mark.parametrize("in_memory", ["yes", "no"], ids=["loaded", "mapped"])
def test_cached_batches_equal_the_in_memory_path(
    image_folder: Path, tmp_path: Path, in_memory: str
) -> None:
    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    for world in (1, 2):
        for rank in range(world):
            direct = build_data(RunConfig(folder_run(image_folder)), CPU, rank, world)
            cached = build_data(
                RunConfig(folder_run(image_folder, tree, in_memory=in_memory)), CPU, rank, world
            )
            kind = TensorBatchLoader if in_memory == "yes" else MappedBatchLoader
            assert isinstance(cached.train, kind) and cached.info["prepared_cache"] == str(tree)
            for epoch in (1, 2):
                assert_same_batches(batches(direct.train, epoch), batches(cached.train, epoch))
            assert_same_batches(batches(direct.val, 1), batches(cached.val, 1))
            assert direct.train_eval is not None and cached.train_eval is not None
            assert_same_batches(batches(direct.train_eval, 1), batches(cached.train_eval, 1))
            assert torch.equal(direct.calibration, cached.calibration)
            for name in ("mean", "std", "eigval", "eigvec"):
                assert torch.equal(getattr(direct.augment, name), getattr(cached.augment, name))


def test_cached_run_equals_the_in_memory_run(image_folder: Path, tmp_path: Path) -> None:
    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    runs = {}
    for name, run in [
        ("direct", folder_run(image_folder)),
        ("mapped", folder_run(image_folder, tree, in_memory="no")),
    ]:
        metrics = run_training(RunConfig(run), tmp_path / name)
        history = [
            {k: v for k, v in row.items() if k not in TIMING} for row in _history(tmp_path / name)
        ]
        runs[name] = (metrics["final"], history, metrics["data"]["in_memory"])
    assert runs["direct"][0] == runs["mapped"][0] and runs["direct"][1] == runs["mapped"][1]
    assert (runs["direct"][2], runs["mapped"][2]) == (True, False)


def _history(out: Path) -> list[dict[str, str]]:
    import csv

    with open(out / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_killed_cached_run_resumes_bit_for_bit(image_folder: Path, tmp_path: Path) -> None:
    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    run = folder_run(image_folder, tree, in_memory="no")
    run["train"].update(epochs=3, keep_checkpoint="none")
    cfg = RunConfig(run)
    whole = run_training(cfg, tmp_path / "whole")
    fit_killed_in_epoch(Trainer(cfg, tmp_path / "killed"), 3, KeyboardInterrupt)
    resumed = run_training(cfg, tmp_path / "killed")
    assert resumed["resumed_from_epoch"] == 2 and resumed["final"] == whole["final"]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(_history(tmp_path / "killed")) == strip(_history(tmp_path / "whole"))


def test_jpeg_store_is_smaller_close_and_read_the_same_in_memory_or_mapped(
    image_folder: Path, tmp_path: Path
) -> None:
    """``--format jpeg90``: lossy but close to the decoded pixels, the same batches whether
    held in memory or read batch by batch, and recorded as such."""
    cache = tmp_path / "cache"
    raw_tree = prepare(image_folder, cache, val_fraction=0.34)
    jpeg_tree = prepare(image_folder, cache, "--format", "jpeg90", val_fraction=0.34)
    assert jpeg_tree == raw_tree  # one tree directory, a store per format
    raw = ImageStore.open(store_dir(raw_tree, "train", STORED))
    jpeg = ImageStore.open(store_dir(raw_tree, "train", STORED, "jpeg90"))
    assert jpeg.cache_format == "jpeg90" and raw.cache_format == "raw"
    assert jpeg.manifest["images"]["bytes"] < raw.manifest["images"]["bytes"] / 2
    exact, _ = raw.load()
    lossy, labels = jpeg.load()
    assert torch.equal(labels, raw.load()[1]) and lossy.shape == exact.shape
    error = (lossy.float() - exact.float()).pow(2).mean().item()
    assert error > 0 and 10 * np.log10(255**2 / error) > 30  # PSNR in dB: close, not equal
    runs = [
        folder_run(image_folder, raw_tree, cache_format="jpeg90", in_memory=m)
        for m in ("yes", "no")
    ]
    loaded, mapped = (build_data(RunConfig(r), CPU) for r in runs)
    assert isinstance(mapped.train, MappedBatchLoader)
    assert_same_batches(batches(loaded.train, 1), batches(mapped.train, 1))
    assert loaded.info["prepared_format"] == "jpeg90"


# ------------------------------------------------------------------ rebuilt when, and only when


def test_unchanged_tree_is_reused_and_a_changed_one_rebuilt(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    manifest = store_dir(tree, "train", STORED) / MANIFEST
    stamp = manifest.stat().st_mtime_ns
    assert prepare(image_folder, cache) == tree and manifest.stat().st_mtime_ns == stamp
    other_size = main(prepare_args(image_folder, cache, stored_size=40))
    bigger = store_dir(tree, "train", 40)
    assert other_size == 0 and (bigger / MANIFEST).is_file()  # a new size: built
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(image_folder / "dog" / "0.png")
    new_tree = prepare(image_folder, cache)
    assert new_tree != tree and (store_dir(new_tree, "train", STORED) / MANIFEST).is_file()
    assert not manifest.parent.exists()  # the older state's store is gone
    assert bigger.exists()  # (not rebuilt here: only what was asked for)


def test_interrupted_build_is_not_trusted_and_is_rebuilt(
    image_folder: Path, tmp_path: Path
) -> None:
    """A build killed with SIGKILL mid-way leaves no store a reader or a rerun trusts; data-gc
    lists its leftovers, and the rebuild removes them."""
    cache = tmp_path / "cache"
    proc = start_held_build(image_folder, cache, hold_at=3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    tree = tree_dir(cache, scan_tree(image_folder, 0.1))
    dest = store_dir(tree, "train", STORED)
    leftovers = list(tree.glob(f"{dest.name}.tmp-*"))
    assert leftovers and not (dest / MANIFEST).exists()
    with pytest.raises(DataError, match="never built, removed, or its build did not finish"):
        ImageStore.open(dest)
    found = {g.path: g.why for g in find_garbage(cache)}
    assert found[leftovers[0]] == "left by a build that did not finish"
    assert found[tree / f".{dest.name}.build.lock"] == "a lock file nobody holds"
    dest.mkdir()  # an empty directory where the store belongs is no store
    assert prepare(image_folder, cache) == tree
    assert ImageStore.open(dest).num_images > 0
    assert not list(tree.glob("*.tmp-*")) and not list(tree.glob(".*.lock"))
    assert find_garbage(cache) == []


# ------------------------------------------------------------------ bad input


def test_corrupt_file_fails_the_build_or_is_skipped_listed_and_counted(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = image_folder / "dog" / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    cache = tmp_path / "cache"
    code = main(prepare_args(image_folder, cache, workers=2))
    err = capsys.readouterr().err
    assert code == 2 and f"error: cannot decode image '{broken}'" in err and "Traceback" not in err
    assert not list(cache.rglob(MANIFEST)) and not list(cache.rglob("*.tmp-*"))
    tree = prepare(image_folder, cache, "--on-bad-image", "skip", val_fraction=0.34)
    store = ImageStore.open(store_dir(tree, "train", STORED))
    skipped = store.skipped + ImageStore.open(store_dir(tree, "val", STORED)).skipped
    assert [s["path"] for s in skipped] == [str(broken)]
    assert skipped[0]["reason"].startswith("UnidentifiedImageError")
    # a run that skips bad files counts it; one that fails on them fails on it, by name
    run = folder_run(image_folder, tree, on_bad_image="skip", in_memory="no")
    run["train"]["epochs"] = 1
    results = tmp_path / "results" / "mine"
    data = run_training(RunConfig(run), results / "baseline" / "seed0")["data"]
    assert data["skipped_files"] == 1 and data["skipped_examples"] == [str(broken)]
    assert data["num_train"] + data["num_val"] == 18
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "reports")]) == 0
    page = (tmp_path / "reports" / "index.html").read_text()
    assert (
        "1 image file(s) could not be decoded and were skipped (data.on_bad_image: skip) "
        f"in 1 run(s), e.g. {broken}"
    ) in page
    assert "read from the prepared-data cache (raw; uint8, the decoded pixels exactly)" in page
    run["data"]["on_bad_image"] = "fail"
    with pytest.raises(DataError, match=r"broken\.jpg.*on_bad_image: skip"):
        build_data(RunConfig(run), CPU)


def test_full_disk_is_one_line_and_leaves_no_half_cache(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import alexnet_bench.data.store.builder as builder

    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builder.os, "posix_fallocate", no_room)
    cache = tmp_path / "cache"
    code = main(prepare_args(image_folder, cache))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: disk full: cannot write ")
    assert f"train-{STORED}px-v2-" in err[0] and f"/{IMAGES} (needs about " in err[0]
    assert not [p for p in cache.rglob("*") if p.is_dir() and "px" in p.name]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare to mount a tmpfs")
def test_full_tmpfs_build_is_one_line_and_leaves_no_store(
    image_folder: Path, tmp_path: Path
) -> None:
    """A real full file system: the cache directory is a 64 kB tmpfs, the train split's store
    needs 15 x 3 x 64 x 64 bytes (184 kB)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    listing = tmp_path / "listing.txt"
    cmd = [
        sys.executable,
        "-m",
        "alexnet_bench.cli",
        *prepare_args(image_folder, mnt, "--split", "train", stored_size=64),
    ]
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {mnt} || exit 99; {shlex.join(cmd)}; rc=$?; "
        f"find {mnt} > {listing}; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and err[-1].startswith("error: disk full: cannot write ")
    assert f"on {mnt}); free at least " in err[-1], err[-1]
    left = [Path(line).name for line in listing.read_text().split()]
    assert all(name.endswith(".lock") or "px" not in name for name in left), left  # no store


# ------------------------------------------------------------------ the commands


def test_data_info_shows_what_a_cache_holds(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (image_folder / "cat" / "notes.txt").write_text("x")
    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    capsys.readouterr()
    assert main(["data-info", str(tree)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"source      {image_folder.resolve()} (single, val_fraction 0.34)") == 2
    assert "12 of 12 files, 3 classes, 36 px" in out and "4 of 4 files" not in out
    assert "6 of 6 files" in out and "1 non-image file(s)" in out and "pillow " in out
    assert describe(store_dir(tree, "val", STORED)).count("\n\n") == 0
    with pytest.raises(DataError, match="holds no prepared data"):
        describe(tmp_path)


def test_a_store_of_another_size_or_data_is_refused(image_folder: Path, tmp_path: Path) -> None:
    tree = prepare(image_folder, tmp_path / "cache")
    dest = store_dir(tree, "train", STORED)
    with pytest.raises(DataError, match="holds 36 px images, the run needs data.stored_size 40"):
        ImageStore.open(dest, stored_size=40)
    run = folder_run(image_folder, tree)
    with pytest.raises(
        DataError, match=r"not the data it was planned for \(train \w{12} \(planned 000000000000\)"
    ):
        build_data(RunConfig(run), CPU, expect={"kind": "store", "train": "0" * 64, "val": "1"})
    with pytest.raises(DataError, match="no prepared data at"):
        build_data(RunConfig(folder_run(image_folder, tmp_path / "elsewhere")), CPU)
    manifest = json.loads((dest / MANIFEST).read_text())
    manifest["images"]["shape"][0] += 1
    (dest / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not match its manifest"):
        ImageStore.open(dest)


def test_store_build_failure_keeps_an_existing_store(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing rebuild of a changed tree never touches the store of the previous state."""
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    (image_folder / "cat" / "new.png").write_bytes(b"truncated")
    scan = scan_tree(image_folder, 0.1)
    with pytest.raises(DataError):
        build_store(scan, "train", STORED, store_dir(tree_dir(cache, scan), "train", STORED))
    assert ImageStore.open(store_dir(tree, "train", STORED)).num_images > 0
    with pytest.raises(DiskFullError):
        import alexnet_bench.data.store.builder as builder

        def no_room(*args: object) -> None:
            raise OSError(errno.ENOSPC, "full")

        monkeypatch.setattr(builder.os, "posix_fallocate", no_room)
        build_store(
            scan,
            "val",
            STORED,
            store_dir(tree_dir(cache, scan), "val", STORED),
            on_bad_image="skip",
        )
    assert ImageStore.open(store_dir(tree, "val", STORED)).num_images > 0
