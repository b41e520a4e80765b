"""Helpers shared by several test modules: the fault injector's holds, run records and
histories, tiny image folders, and running the workflow in a subprocess."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet_bench.cli import main
from alexnet_bench.imagefolder import scan_tree, tree_dir

from .conftest import REPO, tiny_run

FAULTINJECT = REPO / "tests" / "faultinject"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
STORED = 36  # the stored size of the prepared-data tests' stores
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_top1_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "lr",
)


def with_faults(
    env: dict[str, str], progress: Path, hold_at: tuple[int, int] | None = None
) -> dict[str, str]:
    """``env`` with the fault injector active: step log in ``progress``; with ``hold_at``
    (epoch, step), every process stops before that step until :func:`release` is called."""
    faults = {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTINJECT), env.get("PYTHONPATH")])),
        "FAULT_PROGRESS": str(progress),
    }
    if hold_at is not None:
        faults["FAULT_HOLD_AT"] = f"{hold_at[0]}:{hold_at[1]}"
        faults["FAULT_RELEASE"] = str(release_file(progress))
    return faults


def progress_lines(progress: Path) -> list[tuple[int, int, int, int]]:
    """(pid, rank, epoch, step) of every step logged so far."""
    if not progress.exists():
        return []
    rows = [line.split() for line in progress.read_text().splitlines()]
    return [
        (int(p), int(r), int(e), int(s)) for p, r, e, s in (row for row in rows if len(row) == 4)
    ]


def held_lines(progress: Path) -> list[tuple[int, int, int, int]]:
    """(pid, rank, epoch, step) of every process now held before ``step`` of ``epoch``."""
    if not progress.exists():
        return []
    rows = [line.split() for line in progress.read_text().splitlines()]
    return [
        (int(p), int(r), int(e), int(s))
        for p, r, e, s, _ in (row for row in rows if len(row) == 5 and row[4] == "held")
    ]


def wait_for_hold(
    progress: Path, proc: subprocess.Popen, ranks: int = 1, timeout: float = 300
) -> set[int]:
    """Block until ``ranks`` processes are held (so they stay mid-epoch until released or
    killed); return the pids of every process that logged a step or a hold."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({r for _, r, _, _ in held_lines(progress)}) >= ranks:
            return {p for p, _, _, _ in progress_lines(progress) + held_lines(progress)}
        if proc.poll() is not None:
            pytest.fail(f"job ended (status {proc.returncode}) before it reached its hold")
        time.sleep(0.02)
    pytest.fail(f"no process reached its hold within {timeout}s")


def release_file(progress: Path) -> Path:
    return progress.with_name(progress.name + ".release")


def release(progress: Path) -> None:
    """Let every process held by ``with_faults(..., hold_at=...)`` go on."""
    release_file(progress).touch()


def train_cmd(out: Path, cfg: dict, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "alexnet_bench.cli",
        "train",
        "--out",
        str(out),
        "--config-json",
        json.dumps(cfg),
        *extra,
    ]


def checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def read_history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv") as fh:
        return list(csv.DictReader(fh))


def metric_rows(out: Path) -> list[tuple[str, ...]]:
    """The history's metric columns as written (string equality = bitwise float equality)."""
    return [tuple(row[c] for c in METRIC_COLUMNS) for row in read_history(out)]


def metrics_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``root`` (to prove results are untouched)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stop(proc: subprocess.Popen) -> None:
    """Kill a test's process group (started with start_new_session) and all it left running."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]


def study_dir(tmp_path: Path, **changes: Any) -> Path:
    """A workdir whose config.yaml is the repository's with ``changes`` applied."""
    study = yaml.safe_load((REPO / "config.yaml").read_text())
    defs = changes.pop("ablation_defs", {})
    run = changes.pop("run", {})
    study.update({"preset": "tiny", "seeds": [0], "ablations": ["baseline"], **changes})
    study["ablation_defs"].update(defs)
    # These tests are about the workflow's mechanics: tiny runs this short may stay at chance,
    # which the 'collapsed' status would flag (tests/test_study_science.py tests that status).
    run.setdefault("train", {}).setdefault("collapse_check", False)
    study["run"] = run
    workdir = tmp_path / "study"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return workdir


def image_dir(root: Path, classes: int, per_class: int = 4, corrupt: bool = False) -> Path:
    """An ImageFolder tree of random 20x24 PNGs (with ``corrupt``: one broken .jpg)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")
    if corrupt:
        (root / "class0" / "broken.jpg").write_bytes(b"not an image at all")
    root.mkdir(parents=True, exist_ok=True)
    return root


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    counts: dict[str, int] = {}
    table = output.split("Job stats:", 1)[-1].split("\n\n", 1)[0] if "Job stats:" in output else ""
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


# ------------------------------------------------------------ the prepared-data cache


def prepare_args(
    root: Path, cache: Path, *extra: str, stored_size: int = STORED, workers: int = 1
) -> list[str]:
    """``prepare-data``'s arguments (after the program) for ``root`` into ``cache``."""
    return [
        "prepare-data",
        "--root",
        str(root),
        "--stored-size",
        str(stored_size),
        "--cache-dir",
        str(cache),
        "--workers",
        str(workers),
        *extra,
    ]


def prepare(root: Path, cache: Path, *extra: str, val_fraction: float = 0.1) -> Path:
    """``alexnet-bench prepare-data`` in process; the tree directory it prepared."""
    code = main(prepare_args(root, cache, "--val-fraction", str(val_fraction), *extra))
    assert code == 0
    return tree_dir(cache, scan_tree(root, val_fraction))


def folder_run(root: Path, cache: Path | None = None, **data: object) -> dict:
    run = tiny_run(
        data={
            "source": "imagefolder",
            "root": str(root),
            "image_size": 32,
            "stored_size": STORED,
            "val_fraction": 0.34,
            **data,
        },
        train={"batch_size": 4},
        eval={"batch_size": 5, "train_images": 6},
    )
    if cache is not None:
        run["data"]["cache"] = str(cache)
    return run


def start_held_build(root: Path, cache: Path, hold_at: int, *extra: str) -> subprocess.Popen:
    """``prepare-data`` in a subprocess that stops in its ``hold_at``-th decode, says so on
    stdout and waits for its stdin to close: the test controls the event it races against."""
    script = (
        "import sys\n"
        "import alexnet_bench.data.store.builder as builder\n"
        "decode, calls = builder.decode_image, [0]\n"
        "def held(path, size):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {hold_at}:\n"
        "        print('decoding', flush=True)\n"
        "        sys.stdin.read()\n"
        "    return decode(path, size)\n"
        "builder.decode_image = held\n"
        "from alexnet_bench.cli import main\n"
        f"sys.exit(main({prepare_args(root, cache, *extra)!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready and proc.stdout.readline().strip() == "decoding", "the build never started"
    return proc
