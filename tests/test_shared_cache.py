"""One prepared-data cache shared by many studies and nodes: concurrent builds end with every
store each needs, a store in use is never removed under its reader, stale stores are rebuilt
with the reason said, data-gc lists before it deletes, and the loader fails loudly."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.data.loaders import MappedBatchLoader
from alexnet_bench.data.store import (
    MANIFEST,
    SUPERSEDED,
    ImageStore,
    JpegRows,
    RawRows,
    find_garbage,
    locks,
    read_manifest,
)
from alexnet_bench.errors import DataError
from alexnet_bench.imagefolder import scan_tree, store_dir, tree_dir
from alexnet_bench.train import run_training

from .helpers import metric_rows, release, train_cmd, wait_for_hold, with_faults
from .test_prepared_data import STORED, folder_run, prepare, start_held_build

CPU = torch.device("cpu")


def edit_pixels(root: Path) -> None:
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "dog" / "0.png")


def finish(proc: subprocess.Popen) -> int:
    """Let a held build go on (close its stdin) and wait for it."""
    assert proc.stdin is not None
    proc.stdin.close()
    return proc.wait(timeout=120)


# ------------------------------------------------------------------ builds from two studies


def test_concurrent_builds_of_two_split_rules_keep_both_stores(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    held = start_held_build(image_folder, cache, 3, "--val-fraction", "0.1")
    other = prepare(image_folder, cache, val_fraction=0.2)  # the other study builds meanwhile
    assert finish(held) == 0
    first = tree_dir(cache, scan_tree(image_folder, 0.1))
    assert first != other
    for tree in (first, other):
        for split in ("train", "val"):
            with ImageStore.open(store_dir(tree, split, STORED)) as store:
                assert store.num_images > 0


def test_concurrent_builds_of_one_store_build_it_once(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    held = start_held_build(image_folder, cache, 3, "--split", "train")
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alexnet_bench.cli",
            "prepare-data",
            "--root",
            str(image_folder),
            "--stored-size",
            str(STORED),
            "--cache-dir",
            str(cache),
            "--workers",
            "1",
            "--split",
            "train",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert finish(held) == 0
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    tree = tree_dir(cache, scan_tree(image_folder, 0.1))
    assert [p.name for p in tree.iterdir()] == [f"train-{STORED}px"]


# ------------------------------------------------------------------ a store in use stays


def test_a_store_superseded_while_a_job_reads_it_stays_until_the_job_ends(
    image_folder: Path, tmp_path: Path, proc_env: dict[str, str]
) -> None:
    """A build supersedes the store a training job is reading: the job finishes with the
    numbers of an undisturbed run, and the old store goes once the job has ended."""
    cache = tmp_path / "cache"
    old_tree = prepare(image_folder, cache, val_fraction=0.34)
    run = folder_run(image_folder, old_tree, in_memory="no")
    run["train"]["epochs"] = 2
    undisturbed = tmp_path / "undisturbed"
    run_training(RunConfig(run), undisturbed)
    progress = tmp_path / "progress"
    job = subprocess.Popen(
        train_cmd(tmp_path / "job", run),
        env=with_faults(proc_env, progress, hold_at=(1, 2)),
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_hold(progress, job)
    edit_pixels(image_folder)
    new_tree = prepare(image_folder, cache, val_fraction=0.34)
    old = store_dir(old_tree, "train", STORED)
    assert new_tree != old_tree and (old / MANIFEST).is_file() and (old / SUPERSEDED).exists()
    assert [g.in_use for g in find_garbage(cache) if g.path == old] == [True]
    release(progress)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert metric_rows(tmp_path / "job") == metric_rows(undisturbed)
    assert not old.exists()  # removed by its last reader
    assert read_manifest(store_dir(new_tree, "train", STORED)) is not None


def test_removal_needs_the_lease_and_a_reader_removes_what_it_outlived(
    image_folder: Path, tmp_path: Path
) -> None:
    tree = prepare(image_folder, tmp_path / "cache")
    path = store_dir(tree, "val", STORED)
    reader = ImageStore.open(path)
    before = reader.read(np.arange(reader.num_images))
    edit_pixels(image_folder)
    prepare(image_folder, tmp_path / "cache")
    assert (path / SUPERSEDED).exists()
    assert torch.equal(reader.read(np.arange(reader.num_images)), before)  # still readable
    reader.close()
    assert not path.exists() and not tree.exists()  # the last store of its tree: dir gone too


def test_build_lock_file_is_removed_and_a_waiter_takes_the_current_one(tmp_path: Path) -> None:
    lock = tmp_path / ".store.build.lock"
    with locks.exclusive(lock):
        assert locks.is_held(lock)
    assert not lock.exists()
    fd = locks.acquire(lock, exclusive=True)
    assert fd is not None and lock.exists()
    locks.release(fd)


# ------------------------------------------------------------------ stale stores


@pytest.mark.parametrize("stale", ["version", "decoders"])
def test_a_format_or_decoder_mismatch_rebuilds_the_store_and_says_why(
    image_folder: Path, tmp_path: Path, stale: str, caplog: pytest.LogCaptureFixture
) -> None:
    tree = prepare(image_folder, tmp_path / "cache")
    path = store_dir(tree, "train", STORED)
    manifest = json.loads((path / MANIFEST).read_text())
    digest = manifest["digest"]
    if stale == "version":
        manifest["version"] = 1
    else:
        manifest["decoders"]["pillow"] = "0.0"
    (path / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="alexnet_bench.data.store.builder"):
        assert prepare(image_folder, tmp_path / "cache") == tree
    reason = {"version": "it has format version 1", "decoders": "(pillow 0.0 -> "}[stale]
    assert any(f"rebuilding {path}: " in r.message and reason in r.message for r in caplog.records)
    rebuilt = read_manifest(path)
    assert rebuilt is not None and rebuilt["version"] == 2 and rebuilt["digest"] == digest
    assert find_garbage(tmp_path / "cache") == []


# ------------------------------------------------------------------ data-gc


def test_data_gc_lists_what_it_would_free_then_deletes_what_is_not_in_use(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    current = store_dir(tree, "train", STORED)
    older = cache / "folder-000000000000" / f"train-{STORED}px"
    shutil.copytree(current, older)
    manifest = json.loads((older / MANIFEST).read_text())
    manifest.update(fingerprint="0" * 64)
    manifest["build"]["finished_utc"] = "2000-01-01T00:00:00.000000Z"
    (older / MANIFEST).write_text(json.dumps(manifest))
    size = sum(p.stat().st_size for p in older.iterdir())
    assert main(["data-gc", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"would remove {older}: superseded by {current}" in out and "pass --delete" in out
    assert older.exists()
    with ImageStore.open(older):
        assert main(["data-gc", "--cache-dir", str(cache), "--delete"]) == 0
        assert "(in use by a running job: kept)" in capsys.readouterr().out and older.exists()
    assert main(["data-gc", "--cache-dir", str(cache), "--delete"]) == 0
    out = capsys.readouterr().out
    assert f"{older}: superseded" in out and "freed" in out and not older.parent.exists()
    assert size > 0 and ImageStore.open(current).num_images > 0
    assert main(["data-gc", "--cache-dir", str(cache)]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_data_gc_of_a_missing_cache_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data-gc", "--cache-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist; pass --cache-dir" in err[0]


# ------------------------------------------------------------------ the loader fails loudly


def test_an_index_outside_the_store_raises(image_folder: Path, tmp_path: Path) -> None:
    tree = prepare(image_folder, tmp_path / "cache")
    with ImageStore.open(store_dir(tree, "train", STORED)) as store:
        n = len(store.reader.images)
        with pytest.raises(IndexError, match=f"row {n} is outside prepared data"):
            store.reader.gather(np.array([0, n]))
        with pytest.raises(IndexError, match="row -1 is outside"):
            store.reader.gather(np.array([-1]))


def test_a_corrupt_jpeg_row_names_the_store_and_the_row(tmp_path: Path) -> None:
    blobs = np.frombuffer(b"\xff\xd8 not a jpeg at all", dtype=np.uint8)
    reader = JpegRows(blobs, np.array([[0, len(blobs)]]), (3, 4, 4), tmp_path / "store")
    with pytest.raises(DataError, match=rf"cannot read row 0 of prepared data '{tmp_path}/store'"):
        reader.gather(np.array([0]))


class _FailingRows(RawRows):
    """Rows of which some cannot be read (an I/O error of the store's disk)."""

    def __init__(self, images: np.ndarray, bad: set[int]) -> None:
        super().__init__(images, Path("store"))
        self.bad = bad

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        hit = self.bad.intersection(np.asarray(rows).tolist())
        if hit:
            raise DataError(f"cannot read row {min(hit)} of prepared data 'store' (EIO)")
        return super().gather(rows, out)


@pytest.mark.timeout(120)
def test_read_errors_end_in_an_error_not_a_hang() -> None:
    """Every failed read hands its buffer back to the ring: many failing epochs in a row
    each raise, and a clean epoch still runs, where leaked buffers would hang the loader."""
    images = np.arange(64 * 3 * 4 * 4, dtype=np.uint8).reshape(64, 3, 4, 4)
    reader = _FailingRows(images, bad={5, 40})
    loader = MappedBatchLoader(
        reader,
        np.arange(64),
        np.zeros(64, np.int64),
        4,
        device=CPU,
        shuffle=True,
        drop_last=True,
        workers=2,
        prefetch=2,
        ring=True,
    )
    for epoch in range(3 * loader.ring_size):
        loader.set_epoch(epoch)
        with pytest.raises(DataError, match="cannot read row (5|40) of prepared data"):
            for _ in loader:
                pass
    assert loader._free.qsize() == loader.ring_size
    reader.bad.clear()
    assert sum(len(x) for x, _ in loader) == 64
