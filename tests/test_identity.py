"""A run's identity is what it computes: every run-config key is classified once, in the schema,
as ``result`` (part of the identity) or ``provenance`` (recorded, never a reason to retrain)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet_bench.config import (
    IDENTITY_CLASSES,
    KEY_CLASSES,
    RunConfig,
    config_hash,
    key_classes,
    provenance_keys,
    run_schema,
    split_identity,
)
from alexnet_bench.errors import ConfigError, DataError
from alexnet_bench.imagefolder import read_store_digest, scan_tree, store_dir, tree_dir

from .conftest import REPO, tiny_run
from .helpers import job_counts, snakemake


def test_every_schema_key_has_an_identity_class() -> None:
    schema = run_schema()
    for name, section in schema["properties"].items():
        for key, prop in section["properties"].items():
            assert prop.get("identity") in IDENTITY_CLASSES, f"{name}.{key}"
            assert KEY_CLASSES[(name, key)] == prop["identity"]


def test_a_new_key_without_a_class_is_refused() -> None:
    schema = copy.deepcopy(run_schema())
    schema["properties"]["train"]["properties"]["new_knob"] = {"type": "number", "default": 1}
    with pytest.raises(ConfigError, match=r"'train\.new_knob' has identity None; give it one of"):
        key_classes(schema)
    schema["properties"]["train"]["properties"]["new_knob"]["identity"] = "maybe"
    with pytest.raises(ConfigError, match="identity 'maybe'"):
        key_classes(schema)


def test_locations_and_progress_lines_are_provenance() -> None:
    assert set(provenance_keys()) == {
        "data.root",
        "data.cache",
        "telemetry.progress_interval_s",
        "train.keep_checkpoint",
    }


def test_provenance_never_changes_the_hash_and_every_result_key_does() -> None:
    base = RunConfig(tiny_run(data={"source": "imagefolder", "root": "/data/a"}))
    moved = RunConfig(
        tiny_run(
            data={"source": "imagefolder", "root": "/scratch/b", "cache": "/big/cache/t"},
            telemetry={"progress_interval_s": 3},
            train={"keep_checkpoint": "all"},
        )
    )
    assert base.hash == moved.hash
    result, provenance = split_identity(moved.to_dict())
    assert provenance == {
        "data": {"root": "/scratch/b", "cache": "/big/cache/t"},
        "train": {"keep_checkpoint": "all"},
        "telemetry": {"progress_interval_s": 3},
    }
    assert "root" not in result["data"] and result["train"]["seed"] == 0
    assert config_hash(result) == base.hash  # the result part alone hashes the same
    changed = RunConfig(
        tiny_run(data={"source": "imagefolder", "root": "/data/a"}, train={"seed": 1})
    )
    assert changed.hash != base.hash


# ------------------------------------------------------------------ a job's two channels


def test_every_default_cell_trains_with_exactly_its_config() -> None:
    """The workflow passes a cell's result keys (tracked) and its provenance keys (untracked)
    apart; the job merges them back into exactly the config the cell always had, so the
    default study's numbers cannot change."""
    from alexnet_bench.config import deep_merge, load_yaml
    from alexnet_bench.study import cells, resolve_run

    study = load_yaml(REPO / "config.yaml")
    for ablation, seed in cells(study):
        cfg = resolve_run(study, study["preset"], ablation, seed)
        result, provenance = split_identity(cfg.to_dict())
        assert RunConfig(deep_merge(result, provenance)).to_dict() == cfg.to_dict()


def test_the_untracked_channel_takes_provenance_keys_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from alexnet_bench.cli import main

    code = main(
        [
            "train",
            "--out",
            str(tmp_path),
            "--config-json",
            json.dumps(tiny_run()),
            "--provenance-json",
            '{"train": {"lr": 1.0}}',
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "'train.lr', which is not a provenance key; pass it in --config-json" in err[0]


def test_a_run_records_its_identity_and_provenance(tmp_path: Path, cifar_dir: Path) -> None:
    from alexnet_bench.identity import cifar10_identity, run_identity
    from alexnet_bench.train import run_training

    run = tiny_run(
        data={"source": "cifar10", "root": str(cifar_dir), "num_train": 100},
        train={"epochs": 1, "batch_size": 20},
        telemetry={"progress_interval_s": 5},
    )
    metrics = run_training(RunConfig(run), tmp_path / "a")
    identity = metrics["identity"]
    assert identity["data"] == cifar10_identity(cifar_dir)
    assert identity["hash"] == run_identity(identity["config_hash"], identity["data"])
    assert metrics["provenance"]["settings"]["data"] == {"root": str(cifar_dir)}
    assert metrics["provenance"]["settings"]["telemetry"] == {"progress_interval_s": 5}
    moved = cifar_dir.parent / "moved"
    shutil.copytree(cifar_dir, moved)
    run["data"]["root"] = str(moved)
    again = run_training(RunConfig(run), tmp_path / "b")
    assert again["identity"] == identity  # another place, the same bytes: the same run
    with open(moved / "test_batch", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DataError, match="not the data it was planned for"):
        from alexnet_bench.data import build_data

        build_data(RunConfig(run), torch.device("cpu"), expect=identity["data"])


# ------------------------------------------------------------------ the workflow's rerun rule


def _study(root: Path, cache: str = "data-cache", seeds: str = "[0]", **run: object) -> list[str]:
    data = {"source": "imagefolder", "root": str(root), "stored_size": 36, "val_fraction": 0.34}
    cfg = {
        "data": data,
        "train": {"batch_size": 4, "epochs": 1, "collapse_check": False},
        "eval": {"batch_size": 5, "train_images": 6},
        **run,
    }
    return [
        "--cores",
        "2",
        "--config",
        "preset=tiny",
        "ablations=[baseline,tanh]",
        f"seeds={seeds}",
        f"data_cache_dir={cache}",
        f"run={json.dumps(cfg)}",
    ]


def _ran(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """{rule: jobs} that a real (not dry) run executed, from its log."""
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.findall(r"^local(?:rule|checkpoint) (\w+):", result.stderr, flags=re.M)
    return {rule: found.count(rule) for rule in sorted(set(found))}


def _metrics(workdir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(workdir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted((workdir / "results" / "tiny").rglob("metrics.json"))
    }


@pytest.mark.slow
def test_moving_or_touching_data_retrains_nothing_and_changed_pixels_retrain(
    image_folder: Path, workdir: Path, tmp_path: Path
) -> None:
    """The issue's three changes (cache moved, tree moved, an image touched) on a tiny
    image-folder study: no training job is planned or run and every metrics.json is left
    untouched; a provenance-only setting plans nothing; a result-relevant one retrains its
    cell; edited pixels rebuild the cache and retrain every cell reading that split."""
    prepared = snakemake(workdir, "prepare", *_study(image_folder))  # the stores alone
    assert _ran(prepared) == {"prepare_data": 2}
    first = snakemake(workdir, *_study(image_folder))
    assert _ran(first) == {"all": 1, "peak_flops": 1, "report": 1, "train": 2}
    before = _metrics(workdir)
    digests = {json.loads(m)["identity"]["data"]["train"] for m, _ in before.values()}
    assert len(before) == 2 and len(digests) == 1

    (workdir / "data-cache").rename(workdir / "moved-cache")  # 1. the cache moved
    moved_tree = tmp_path / "elsewhere" / "images"  # 2. the tree moved (and renamed)
    moved_tree.parent.mkdir()
    image_folder.rename(moved_tree)
    planned = snakemake(workdir, "-n", *_study(moved_tree, "moved-cache"))
    assert planned.returncode == 0, planned.stderr
    assert "Nothing to be done" in planned.stdout + planned.stderr
    assert _ran(snakemake(workdir, *_study(moved_tree, "moved-cache"))) == {}

    (moved_tree / "cat" / "0.png").touch()  # 3. same bytes, new mtime
    planned = snakemake(workdir, "-n", *_study(moved_tree, "moved-cache"))
    assert job_counts(planned.stdout) == {"prepare_data": 2}
    assert _ran(snakemake(workdir, *_study(moved_tree, "moved-cache"))) == {"prepare_data": 2}
    assert _metrics(workdir) == before

    quiet = _study(moved_tree, "moved-cache", telemetry={"progress_interval_s": 7})
    planned = snakemake(workdir, "-n", *quiet)  # provenance only
    assert "Nothing to be done" in planned.stdout + planned.stderr, planned.stdout
    study = yaml.safe_load((workdir / "config.yaml").read_text())
    study["ablation_defs"]["tanh"]["overrides"]["train"] = {"lr": 0.02}
    (workdir / "config.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    planned = snakemake(workdir, "-n", *_study(moved_tree, "moved-cache"))
    assert job_counts(planned.stdout) == {"train": 1, "report": 1, "all": 1}
    assert "results/tiny/tanh/seed0/metrics.json" in planned.stdout

    touched = tree_dir(workdir / "moved-cache", scan_tree(moved_tree, 0.34))
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(moved_tree / "dog" / "1.png")
    edited = snakemake(workdir, *_study(moved_tree, "moved-cache"))
    assert _ran(edited) == {"all": 1, "prepare_data": 2, "report": 1, "train": 2}
    after = {k: json.loads(v[0]) for k, v in _metrics(workdir).items()}
    assert all(m["identity"]["data"]["train"] not in digests for m in after.values())
    assert all(m["status"] == "completed" for m in after.values())
    current = tree_dir(workdir / "moved-cache", scan_tree(moved_tree, 0.34))
    assert current.is_dir() and not touched.exists()  # the older state of the same tree: gone

    # a token whose Snakemake metadata is gone is not renewed for a new state of the tree (an
    # edit that keeps every size would not retrain): said, never silently stale
    key = scan_tree(moved_tree, 0.34).key[:16]
    tokens = [f"results/.prepared/{key}/{split}-36px.json" for split in ("train", "val")]
    forgot = snakemake(workdir, "--cleanup-metadata", *tokens)
    assert forgot.returncode == 0, forgot.stderr
    (moved_tree / "dog" / "1.png").touch()  # a new state, the same names and sizes
    stale = snakemake(workdir, "-n", *_study(moved_tree, "moved-cache"))
    assert stale.returncode != 0
    assert "rerun with --forcerun prepare_data" in stale.stdout + stale.stderr


@pytest.mark.slow
def test_a_store_missing_from_the_cache_is_rebuilt_by_its_prepare_job_when_a_cell_trains(
    image_folder: Path, workdir: Path
) -> None:
    """data_cache_dir re-pointed to an empty directory: a completed study rebuilds nothing; a
    new cell gets the stores from prepare_data jobs (with their cores, before any training
    job) instead of building them inside its training job, and no completed cell retrains."""
    assert _ran(snakemake(workdir, *_study(image_folder))) == {
        "all": 1,
        "peak_flops": 1,
        "prepare_data": 2,
        "report": 1,
        "train": 2,
    }
    before = _metrics(workdir)
    empty = _study(image_folder, "empty-cache")
    planned = snakemake(workdir, "-n", *empty)
    assert "Nothing to be done" in planned.stdout + planned.stderr, planned.stdout
    assert _ran(snakemake(workdir, *empty)) == {} and not (workdir / "empty-cache").exists()

    more = _study(image_folder, "empty-cache", seeds="[0,1]")
    planned = snakemake(workdir, "-n", *more)
    said = planned.stdout + planned.stderr
    assert "is not in data_cache_dir: the run rebuilds it in a prepare_data job" in said, said
    tokens = sorted((workdir / "results" / ".prepared").rglob("*.json"))
    assert len(tokens) == 2  # a dry run, and a run that executes nothing, keep them
    assert snakemake(workdir, "--summary", *more).returncode == 0
    assert snakemake(workdir, "--touch", *more).returncode == 0
    assert sorted((workdir / "results" / ".prepared").rglob("*.json")) == tokens
    ran = snakemake(workdir, *more)
    assert _ran(ran) == {"all": 1, "prepare_data": 2, "report": 1, "train": 2}
    assert ran.stderr.index("checkpoint prepare_data:") < ran.stderr.index("rule train:")
    after = _metrics(workdir)
    assert {k: after[k] for k in before} == before  # seed 0: not retrained
    logs = [p.read_text() for p in (workdir / "logs" / "train").rglob("seed1.log")]
    assert len(logs) == 2 and not any("building it here" in log for log in logs)
    scan = scan_tree(image_folder, 0.34)
    for split in ("train", "val"):
        assert read_store_digest(store_dir(tree_dir(workdir / "empty-cache", scan), split, 36))
    # another environment's stores of the same digest (other decoders, its own names) serve a
    # new cell: no prepare job, no build in the training job
    others = []
    for split in ("train", "val"):
        store = store_dir(tree_dir(workdir / "empty-cache", scan), split, 36)
        others.append(store.rename(store.with_name(store.name[:-8] + "00000000")))
    ran = snakemake(workdir, *_study(image_folder, "empty-cache", seeds="[0,1,2]"))
    assert _ran(ran) == {"all": 1, "report": 1, "train": 2}
    logs = [p.read_text() for p in (workdir / "logs" / "train").rglob("seed2.log")]
    assert len(logs) == 2 and not any("building it here" in log for log in logs)
    # ... but stores of other data (another digest) do not: its prepare job builds this one's
    for other in others:
        manifest = json.loads((other / "manifest.json").read_text())
        (other / "manifest.json").write_text(json.dumps({**manifest, "digest": "0" * 64}))
    ran = snakemake(workdir, *_study(image_folder, "empty-cache", seeds="[0,1,2,3]"))
    assert _ran(ran) == {"all": 1, "prepare_data": 2, "report": 1, "train": 2}
    assert {k: v for k, v in _metrics(workdir).items() if k in before} == before
    # asked for by name, the stores are rebuilt even though every cell is complete
    again = snakemake(workdir, "prepare", *_study(image_folder, "other-cache", seeds="[0,1]"))
    assert _ran(again) == {"prepare_data": 2}


@pytest.mark.slow
def test_two_copies_of_one_tree_in_two_states_are_refused_at_planning(
    image_folder: Path, workdir: Path, tmp_path: Path
) -> None:
    """An ablation reading a copy of the tree (same names and sizes, other times) cannot share
    the first tree's token: planning says so in one line; a copy with other content (other
    sizes) gets stores of its own."""
    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)  # copy2 keeps mtimes: set new ones
    for path in copy.rglob("*.png"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    study = yaml.safe_load((workdir / "config.yaml").read_text())
    study["ablation_defs"]["copy"] = {"family": "data", "overrides": {"data": {"root": str(copy)}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    args = _study(image_folder)
    args[args.index("ablations=[baseline,tanh]")] = "ablations=[baseline,copy]"
    refused = snakemake(workdir, "-n", *args)
    assert refused.returncode != 0, refused.stdout[-3000:]
    said = refused.stdout + refused.stderr
    assert "hold the same files (names and sizes) in another state" in said, said[-2000:]
    Image.fromarray(np.zeros((30, 24, 3), np.uint8)).save(copy / "dog" / "0.png")  # new size
    planned = snakemake(workdir, "-n", *args)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert job_counts(planned.stdout)["prepare_data"] == 4
