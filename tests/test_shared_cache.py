"""One prepared-data cache shared by many studies and nodes: concurrent builds end with every
store each needs, a store in use is never removed under its reader, stale stores are rebuilt
with the reason said, data-gc lists before it deletes, and the loader fails loudly."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_bench import imagefolder
from alexnet_bench.cli import main
from alexnet_bench.config import RunConfig
from alexnet_bench.data.loaders import MappedBatchLoader
from alexnet_bench.data.store import (
    MANIFEST,
    SUPERSEDED,
    ImageStore,
    JpegRows,
    RawRows,
    build_store,
    find_garbage,
    locks,
    read_manifest,
)
from alexnet_bench.errors import DataError
from alexnet_bench.imagefolder import (
    find_store,
    scan_tree,
    store_candidates,
    store_dir,
    tree_dir,
)
from alexnet_bench.train import run_training

from .helpers import (
    STORED,
    folder_run,
    metric_rows,
    prepare,
    prepare_args,
    release,
    start_held_build,
    train_cmd,
    wait_for_hold,
    with_faults,
)

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


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a flock (a ``->`` line of /proc/locks)."""
    return any(
        "->" in line and line.split()[5] == str(pid)
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 5
    )


def test_concurrent_builds_of_one_store_build_it_once(image_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    held = start_held_build(image_folder, cache, 3, "--split", "train")
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alexnet_bench.cli",
            *prepare_args(image_folder, cache, "--split", "train"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # until the second build waits on the first one's lock
    while not _blocked_on_a_lock(waiting.pid):
        assert waiting.poll() is None and time.monotonic() < deadline, "it never waited"
        time.sleep(0.02)
    assert finish(held) == 0
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "is up to date" in err  # it found the store the first build made
    tree = tree_dir(cache, scan_tree(image_folder, 0.1))
    assert [p.name for p in tree.iterdir()] == [store_dir(tree, "train", STORED).name]


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


def test_a_store_the_last_reader_may_not_remove_is_left_with_a_warning(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Removing a superseded store is tidying after a run that succeeded: a store in another
    user's directory (rename refused) stays for data-gc, and closing the reader never raises
    (an error there would fail the job whose results are written, and Snakemake would delete
    them)."""
    import alexnet_bench.data.store.maintenance as maintenance

    tree = prepare(image_folder, tmp_path / "cache")
    path = store_dir(tree, "val", STORED)
    reader = ImageStore.open(path)
    edit_pixels(image_folder)
    prepare(image_folder, tmp_path / "cache")
    assert (path / SUPERSEDED).exists()

    def refused(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(maintenance.os, "rename", refused)
    with caplog.at_level(logging.WARNING, logger=maintenance.__name__):
        reader.close()
    assert (path / MANIFEST).is_file()
    assert f"left {path} in place: cannot remove it" in caplog.text


def test_a_tree_back_in_a_state_keeps_that_state_s_store(
    image_folder: Path, tmp_path: Path
) -> None:
    """A file added (a new store supersedes the one a job reads) and removed again: the first
    store is current again, and neither its reader's close nor data-gc removes it."""
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    first = store_dir(tree, "train", STORED)
    reader = ImageStore.open(first)
    extra = image_folder / "cat" / "extra.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(extra)
    other = prepare(image_folder, cache)
    assert (first / SUPERSEDED).exists()
    extra.unlink()
    assert prepare(image_folder, cache) == tree  # found again: current, unmarked
    assert not (first / SUPERSEDED).exists() and not other.exists()
    reader.close()
    assert (first / MANIFEST).is_file()
    assert find_garbage(cache) == []


def test_the_store_of_a_moved_and_changed_tree_is_listed(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    before = store_dir(prepare(image_folder, cache), "train", STORED)
    moved = tmp_path / "moved"
    image_folder.rename(moved)
    assert prepare(moved, cache) == before.parent  # moved alone: the same store
    (moved / "cat" / "0.png").touch()
    after = store_dir(prepare(moved, cache), "train", STORED)
    listed = {g.path: g.why for g in find_garbage(cache)}
    assert after != before and before in listed and after not in listed
    assert listed[before].startswith(f"its tree {image_folder} is gone, and {after}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_another_user_reads_a_shared_store(image_folder: Path) -> None:
    """A store built by one user is opened (leased) and read by another, and another user's
    prepare finds it up to date (without the build lock it may not create in that user's
    directory): a forked child that drops to the unprivileged uid 65534."""
    shared = Path(tempfile.mkdtemp(prefix="shared-cache-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        store = store_dir(prepare(image_folder, shared), "train", STORED)
        scan, digest = scan_tree(image_folder, 0.1), read_manifest(store)["digest"]
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: another user, nothing but this test's code already loaded
            try:
                os.setgid(65534)
                os.setuid(65534)
                with ImageStore.open(store) as opened:
                    answer = f"{opened.num_images} {opened.read([0]).shape[0]}"
                kept = build_store(scan, "train", STORED, store)["digest"] == digest
                answer += f" {kept}"
            except BaseException as exc:  # reported to the parent, which asserts
                answer = f"error {type(exc).__name__}: {exc}"
            os.write(write_end, answer.encode())
            os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 4096).decode()
        os.waitpid(pid, 0)
        assert not answer.startswith("error"), answer
        assert answer.split()[1:] == ["1", "True"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


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


def other_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as another environment would be: another Pillow decoding the same tree."""
    found = imagefolder.decoder_versions()
    monkeypatch.setattr(imagefolder, "decoder_versions", lambda: {**found, "pillow": "0.0"})


def test_environments_with_other_decoders_keep_a_store_each(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two environments sharing a cache: neither rebuilds the other's store (which its jobs
    may be reading) in place, and each finds its own up to date afterwards."""
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    ours = store_dir(tree, "train", STORED)
    stamp = (ours / MANIFEST).stat().st_mtime_ns
    reader = ImageStore.open(ours)
    with monkeypatch.context() as patched:
        other_decoders(patched)
        assert prepare(image_folder, cache) == tree
        theirs = store_dir(tree, "train", STORED)
        manifest = read_manifest(theirs)
        assert theirs != ours and manifest is not None
        assert manifest["decoders"]["pillow"] == "0.0"
        listed = {g.path: g for g in find_garbage(cache)}  # listed, said whose, not removed
        assert ours in listed and listed[ours].in_use
        assert f"a copy of {theirs}, made by another environment (was decoded by other" in (
            listed[ours].why
        )
        assert not any(path.name.endswith(theirs.name[-12:]) for path in listed)
    assert reader.read(np.arange(reader.num_images)).shape[0] == reader.num_images
    reader.close()
    assert prepare(image_folder, cache) == tree  # ours again: up to date, not rebuilt
    assert (ours / MANIFEST).stat().st_mtime_ns == stamp and (theirs / MANIFEST).is_file()
    listed = {g.path: g.why for g in find_garbage(cache)}
    assert theirs in listed and "(pillow " in listed[theirs] and "-> 0.0" not in listed[theirs]
    assert ours not in listed
    # a reader and a planner see both, this environment's first
    assert store_candidates(tree, "train", STORED) == [ours, theirs]
    shutil.rmtree(ours)  # the other environment's is then read, and is no copy to collect
    assert (
        store_candidates(tree, "train", STORED) == [theirs] == [find_store(tree, "train", STORED)]
    )
    assert theirs not in {g.path for g in find_garbage(cache)}
    assert store_candidates(tree, "val", 40) == []


def test_a_reader_opens_the_store_of_the_digest_its_job_was_planned_for(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """This environment's store gone; another environment's store of the planned digest and an
    older release's store of other pixels remain: the job reads the former, whatever the order
    a reader without a plan prefers. With only other pixels left, it rebuilds its own."""
    from alexnet_bench.data import build_data
    from alexnet_bench.identity import store_identity

    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    planned, theirs = {}, {}
    for split in ("train", "val"):
        ours = store_dir(tree, split, STORED)
        planned[split] = json.loads((ours / MANIFEST).read_text())["digest"]
        theirs[split] = ours.with_name(ours.name[:-8] + "00000000")
        shutil.copytree(ours, theirs[split])
        ours.rename(untagged(ours))
        manifest = json.loads((untagged(ours) / MANIFEST).read_text())
        manifest["decoders"]["pillow"] = "0.0"  # an older release's, with pixels of its own
        (untagged(ours) / MANIFEST).write_text(json.dumps({**manifest, "digest": "0" * 64}))
        assert find_store(tree, split, STORED) == untagged(ours)  # unplanned: the old name first
    run = RunConfig(folder_run(image_folder, tree, in_memory="no"))
    expect = store_identity(planned)
    bundle = build_data(run, CPU, expect=expect, rebuild_missing=True)
    bundle.close()
    assert bundle.info["prepared_stores"] == {k: str(v) for k, v in theirs.items()}
    for split in ("train", "val"):
        shutil.rmtree(theirs[split])
    with pytest.raises(DataError, match="no prepared data at .*; build it with"):
        build_data(run, CPU, expect=expect)  # not rebuilding: other pixels are no store of it
    with caplog.at_level(logging.WARNING, logger="alexnet_bench.data.opening"):
        bundle = build_data(run, CPU, expect=expect, rebuild_missing=True)
    bundle.close()
    assert "building it here" in caplog.text
    assert bundle.info["prepared_stores"]["train"] == str(store_dir(tree, "train", STORED))


def untagged(store: Path) -> Path:
    """Where alexnet-bench put ``store`` before store names carried the decoders."""
    return store.with_name(store.name.split("px")[0] + "px")


def test_a_store_named_as_before_is_renamed_into_place_not_rebuilt(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    store = store_dir(tree, "train", STORED)
    stamp = (store / MANIFEST).stat().st_mtime_ns
    store.rename(untagged(store))  # as an upgrade finds its cache
    store.mkdir()  # (an empty directory where the store belongs is no store)
    assert find_garbage(cache) == []  # the next build takes it over: nothing to delete
    with caplog.at_level(logging.INFO, logger="alexnet_bench.data.store.builder"):
        assert prepare(image_folder, cache) == tree
    built = " images/s over "  # the line a build logs
    assert f"(renamed from {untagged(store).name})" in caplog.text and built not in caplog.text
    assert (store / MANIFEST).stat().st_mtime_ns == stamp and not untagged(store).exists()


def test_a_store_named_as_before_with_other_decoders_is_listed_not_taken_over(
    image_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    store = store_dir(tree, "train", STORED)
    with monkeypatch.context() as patched:
        other_decoders(patched)
        prepare(image_folder, cache)
        theirs = store_dir(tree, "train", STORED)
    old = untagged(store)
    theirs.rename(old)  # an older alexnet-bench's store, built by other decoders
    listed = {g.path: g.why for g in find_garbage(cache)}
    assert f"a copy of {store}, made by another environment (was decoded by other" in listed[old]
    shutil.rmtree(store)
    assert old not in {g.path for g in find_garbage(cache)}  # the only one: readers read it
    with caplog.at_level(logging.INFO, logger="alexnet_bench.data.store.builder"):
        assert prepare(image_folder, cache) == tree
    assert " images/s over " in caplog.text and "renamed from" not in caplog.text  # built
    assert old.exists() and read_manifest(store) is not None
    assert old in {g.path for g in find_garbage(cache)}  # a copy again


def test_a_store_named_as_before_of_an_older_format_is_rebuilt_not_taken_over(
    image_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    store = store_dir(tree, "train", STORED)
    old = untagged(store)
    store.rename(old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["digest"]  # (version 2 brought the digest)
    (old / MANIFEST).write_text(json.dumps({**manifest, "version": 1}))
    assert prepare(image_folder, cache) == tree
    rebuilt = read_manifest(store)
    assert rebuilt is not None and rebuilt["version"] == 2 and old.exists()
    assert "format version 1" in {g.path: g.why for g in find_garbage(cache)}[old]


def test_a_run_with_its_own_cache_reads_a_store_named_as_before(
    image_folder: Path, tmp_path: Path
) -> None:
    """A run that sets data.cache itself (no build step) reads the stores an older alexnet-bench
    left, with the same data identity: its cells are not planned again."""
    from alexnet_bench.study import planned_data_identity

    tree = prepare(image_folder, tmp_path / "cache", val_fraction=0.34)
    run = RunConfig(folder_run(image_folder, tree, in_memory="no"))
    identity = planned_data_identity(run)
    for split in ("train", "val"):
        store_dir(tree, split, STORED).rename(untagged(store_dir(tree, split, STORED)))
    assert identity is not None and planned_data_identity(run) == identity
    metrics = run_training(run, tmp_path / "run")
    assert metrics["status"] == "completed"
    assert metrics["identity"]["data"] == dict(identity)


# ------------------------------------------------------------------ data-gc


def test_data_gc_lists_what_it_would_free_then_deletes_what_is_not_in_use(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    tree = prepare(image_folder, cache)
    current = store_dir(tree, "train", STORED)
    older = cache / "folder-000000000000" / current.name
    shutil.copytree(current, older)
    manifest = json.loads((older / MANIFEST).read_text())
    manifest.update(fingerprint="0" * 64)
    manifest["build"]["finished_utc"] = "2000-01-01T00:00:00.000000Z"
    (older / MANIFEST).write_text(json.dumps(manifest))
    os.utime(older / ".current", (946684800, 946684800))  # confirmed current in 2000
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
