"""One probe process: what a training job of the study costs on this machine, measured.

:mod:`.probe` starts several of these side by side (as many as the study runs jobs at once),
each a fresh interpreter with the job's thread count, so that start-up and every timed window
pay the same contention the study's jobs will. Per assigned group of cells (same step time) it
builds the real :class:`~alexnet_bench.train.Trainer` and times, warm-up excluded, medians over
repeats:

* set-up (data, model, initialisation) and the first step's extra time;
* training steps through ``Trainer.train_epoch`` (data, augmentation, forward, backward,
  update, the loop's bookkeeping) on windows of whole steps of at least ``window_s``;
* evaluation (images/s of ``Trainer.evaluate``), the data path alone (loader + augmentation),
  a checkpoint save, a resume load, the end-of-run health pass, the bytes they write;
* on CUDA, mean NVML power during the step windows.

When its own windows are done it keeps training, untimed, until every worker is done, so no
timed window runs with fewer neighbours than the study has. Worker 0 then measures alone: one
more step window of its first group (against the loaded one: the contention factor), the
peak-FLOP/s job when the study needs it; the last worker times the report's imports.

Run: ``python -m alexnet_bench.plan.probe_worker SPEC_JSON INDEX SPAWN_TIME``; writes
``result-INDEX.json`` beside the spec.
"""

from __future__ import annotations

import sys
import time

_STARTED = time.time()  # before any import of this package's heavy modules

import importlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

#: how long a worker waits for the others before giving up (the parent kills it sooner)
WAIT_LIMIT_S = 900.0


def _steps(trainer: Any, n: int, epoch: int) -> tuple[float, int]:
    """Seconds and steps of ``Trainer.train_epoch`` cut after ``n`` steps (the real loop)."""
    original = type(trainer)._batches
    trainer._batches = lambda: itertools.islice(original(trainer), n)
    try:
        stats = trainer.train_epoch(epoch)
    finally:
        del trainer._batches
    return stats.seconds, max(1, round(stats.images / trainer.cfg.train.batch_size))


def _windows(trainer: Any, window_s: float, repeats: int, epochs: Any) -> list[float]:
    """Seconds per step over ``repeats`` windows of at least ``window_s`` (after warm-up)."""
    seconds, steps = _steps(trainer, 2, next(epochs))
    n = max(3, min(len(trainer.data.train), math.ceil(window_s / max(seconds / steps, 1e-6))))
    out = []
    for _ in range(repeats):
        seconds, steps = _steps(trainer, n, next(epochs))
        out.append(seconds / steps)
    return out


def _eval_rate(trainer: Any, window_s: float, repeats: int, ten_crop: bool = False) -> float:
    """Evaluation images/s (``Trainer.evaluate``), median over windows of >= ``window_s``."""
    val = trainer.data.val

    def run(k: int) -> tuple[float, int]:
        stats = trainer.evaluate(ten_crop=ten_crop, loader=itertools.islice(val, k))
        return stats.seconds, stats.images

    seconds, _ = run(1)  # warm-up (allocator, oneDNN primitives for this batch)
    k = max(1, min(len(val), math.ceil(window_s / max(seconds, 1e-6))))
    rates = []
    for _ in range(repeats):
        total_s, total_n = 0.0, 0
        while total_s < window_s or total_n == 0:
            seconds, images = run(k)
            total_s, total_n = total_s + seconds, total_n + images
        rates.append(total_n / total_s)
    return statistics.median(rates)


def _data_rate(trainer: Any, window_s: float) -> float:
    """Images/s the loader + training augmentation deliver alone."""
    import torch

    from ..telemetry.timing import synchronize

    gen = torch.Generator(device=trainer.device).manual_seed(0)
    loader = trainer.data.train
    images_seen, start = 0, time.perf_counter()
    for epoch in itertools.count(10_000):
        loader.set_epoch(epoch)
        for images, target in loader:
            trainer.data.augment(images, train=True, generator=gen)
            images_seen += int(target.shape[0])
            if time.perf_counter() - start >= window_s:
                synchronize(trainer.device)
                return images_seen / (time.perf_counter() - start)
    raise AssertionError("unreachable")


def _files(trainer: Any, out: Path, stats_row: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint save and load, final weights and history: seconds and bytes."""
    from ..checkpoint import CHECKPOINT, FINAL_WEIGHTS, load_latest, save_final_weights
    from ..history import write_history
    from ..train import RunState, save_state

    cfg, identity = trainer.cfg, trainer.identity
    state = RunState(epoch=1, history=[stats_row])
    args = (out, identity, state, trainer.model, trainer.optimizer, trainer.scheduler)
    save_state(*args)  # the first save has no previous generation to rotate
    start = time.perf_counter()
    save_state(*args)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    load_latest(out, identity["hash"], trainer.model.state_dict())
    load_s = time.perf_counter() - start
    save_final_weights(out, trainer.model.state_dict(), cfg.to_dict(), identity, 1)
    write_history(out / "h0.csv", [])
    write_history(out / "h10.csv", [stats_row] * 10)
    row_bytes = ((out / "h10.csv").stat().st_size - (out / "h0.csv").stat().st_size) / 10
    return {
        "checkpoint_s": save_s,
        "resume_load_s": load_s,
        "checkpoint_bytes": (out / CHECKPOINT).stat().st_size,
        "final_weights_bytes": (out / FINAL_WEIGHTS).stat().st_size,
        "history_header_bytes": (out / "h0.csv").stat().st_size,
        "history_row_bytes": row_bytes,
    }


def probe_group(group: dict[str, Any], spec: dict[str, Any], out: Path) -> tuple[dict, Any]:
    """Every timing of one group (see the module docstring); returns it and the trainer."""
    from ..config import RunConfig
    from ..telemetry.nvml import GpuSampler
    from ..train import Trainer, _epoch_row

    began = time.perf_counter()
    window_s, repeats = float(spec["window_s"]), int(spec["repeats"])
    cfg = RunConfig(group["config"])
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    trainer = Trainer(cfg, out)
    setup_s = time.perf_counter() - start
    epochs = itertools.count(1)
    first_s, _ = _steps(trainer, 1, next(epochs))
    cuda = trainer.device.type == "cuda"
    sampler = GpuSampler([trainer.device.index or 0] if cuda else [], interval_s=0.1)
    sampler.start()
    windows = _windows(trainer, window_s, repeats, epochs)
    sampler.stop()
    step_s = statistics.median(windows)
    eval_rate = _eval_rate(trainer, window_s / 4, repeats)
    ten_crop_rate = (
        _eval_rate(trainer, window_s / 4, 1, ten_crop=True) if cfg.eval.ten_crop else None
    )
    start = time.perf_counter()
    trainer.health()
    trainer.describe()  # the record's FLOP count at the end of a run
    health_s = time.perf_counter() - start
    seconds, steps = _steps(trainer, 1, next(epochs))
    from ..train import EpochStats

    stats = EpochStats(2.3, 0.9, None, steps * cfg.train.batch_size, seconds)
    row = {
        **_epoch_row(1, stats, cfg.train.lr, seconds),
        "val_loss": 2.302585093,
        "val_top1_error": 0.8765432,
        "val_top5_error": 0.4567891,
        "train_clean_loss": 2.30123456,
        "train_clean_top1_error": 0.87654321,
    }
    power = sampler.summary().get("power_w_total_mean") if sampler.available else None
    result = {
        "key": group["key"],
        "worker": spec["index"],
        "device": str(trainer.device),
        "setup_s": setup_s,
        "first_step_extra_s": max(0.0, first_s - step_s),
        "step_s": step_s,
        "step_windows_s": windows,
        "batch_size": cfg.train.batch_size,
        "eval_images_per_s": eval_rate,
        "ten_crop_images_per_s": ten_crop_rate,
        "data_images_per_s": _data_rate(trainer, window_s / 4),
        "health_s": health_s,
        "power_w": power,
        "power_reason": None if power is not None else (sampler.reason or "no power reading"),
        **_files(trainer, out, row),
    }
    result["probe_s"] = time.perf_counter() - began
    return result, trainer


def _solo(trainer: Any, spec: dict[str, Any]) -> float:
    """Seconds per step of ``trainer``'s group with no other worker running."""
    epochs = itertools.count(100_000)
    return statistics.median(
        _windows(trainer, float(spec["window_s"]), int(spec["repeats"]), epochs)
    )


def _import_report() -> float:
    """Seconds to import the report's modules (what the report job adds to the CLI's)."""
    start = time.perf_counter()
    importlib.import_module("alexnet_bench.reports.report")  # timed, not a dependency of plan
    return time.perf_counter() - start


def _others_gone(tmp: Path, index: int, workers: int) -> bool:
    import psutil

    for j in range(workers):
        if j == index:
            continue
        flag = tmp / f"done-{j}"
        if not flag.exists():
            return False
        try:
            proc = psutil.Process(int(flag.read_text() or 0))
            if proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except (psutil.NoSuchProcess, ValueError):
            continue
    return True


def main(argv: list[str]) -> int:
    spec_path, index, spawned = Path(argv[1]), int(argv[2]), float(argv[3])
    importlib.import_module("alexnet_bench.cli").build_parser()  # what every command does first
    cli_at = time.time()
    importlib.import_module("alexnet_bench.train")  # what the job imports before training
    train_at = time.time()
    importlib.import_module("torch._dynamo")  # the optimiser's constructor imports it, every job
    dynamo_s = time.time() - train_at
    import logging

    logging.basicConfig(level=logging.WARNING)
    import os

    from ..io import write_json
    from ..telemetry.environment import collect_environment

    tmp = spec_path.parent
    spec = {**json.loads(spec_path.read_text()), "index": index}
    workers = int(spec["workers"])
    result: dict[str, Any] = {
        "index": index,
        "interpreter_s": _STARTED - spawned,
        "startup_cli_s": cli_at - spawned,
        "startup_train_s": train_at - spawned,
        "groups": [],
    }
    first = last = None
    for i, group in enumerate(spec["assign"][index]):
        measured, trainer = probe_group(group, spec, tmp / f"w{index}-{i}")
        result["groups"].append(measured)
        first = first or trainer
        last = trainer
    # a job's set-up pays what only this worker's first set-up paid: the torch._dynamo import
    # (done above, out of every group's set-up) and other first-time initialisation
    if first is not None:
        from ..train import Trainer

        lead = result["groups"][0]
        start = time.perf_counter()
        Trainer(first.cfg, tmp / f"w{index}-again")
        again = time.perf_counter() - start
        result["first_setup_extra_s"] = dynamo_s + max(0.0, lead["setup_s"] - again)
        lead["setup_s"] = again
    if last is not None:
        start = time.perf_counter()
        collect_environment(last.device)
        result["environment_s"] = time.perf_counter() - start
    result["loaded_until"] = time.time()
    write_json(tmp / f"result-{index}.json", result)
    (tmp / f"done-{index}").write_text(str(os.getpid()))
    deadline = time.time() + WAIT_LIMIT_S
    if spec.get("report") and index == workers - 1:  # alone in worker 0 when it is the only one
        result["report_import_s"] = _import_report()
        write_json(tmp / f"result-{index}.json", result)
    # keep the others company: no timed window of theirs runs with fewer neighbours
    filler = itertools.count(200_000)
    while not all((tmp / f"done-{j}").exists() for j in range(workers)):
        if time.time() > deadline:
            return 3
        if last is not None:
            _steps(last, 1, next(filler))
        else:
            time.sleep(0.05)
    if index != 0:
        return _bye(tmp, index)
    while not _others_gone(tmp, index, workers):
        if time.time() > deadline:
            return 3
        time.sleep(0.02)
    if first is not None and workers > 1:
        result["solo"] = {"key": spec["assign"][index][0]["key"], "step_s": _solo(first, spec)}
    if spec.get("peak_threads"):
        from ..telemetry.peak import measure_cpu_peaks

        start = time.perf_counter()
        measure_cpu_peaks(list(spec["peak_threads"]))
        result["peak_flops_s"] = time.perf_counter() - start
    write_json(tmp / f"result-{index}.json", result)
    return _bye(tmp, index)


def _bye(tmp: Path, index: int) -> int:
    """Note when the worker is done, so the parent can time the interpreter's exit (torch's
    teardown), which every job pays after its work."""
    (tmp / f"bye-{index}").write_text(repr(time.time()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
