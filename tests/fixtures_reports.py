"""Hand-written run directories for the report tests (no training code involved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EPOCHS = 6
TARGET = 0.5  # the fixture's target training error


def run_config(
    ablation: str, seed: int, source: str = "synthetic", size: int = 32, gpus: int = 1
) -> dict[str, Any]:
    return {
        "model": {
            "variant": "paper",
            "activation": "tanh" if ablation == "tanh" else "relu",
            "lrn": ablation != "no_lrn",
            "dropout": 0.0 if ablation == "no_dropout" else 0.5,
            "pooling": "plain" if ablation == "plain_pooling" else "overlapping",
            "width": 0.25,
        },
        "data": {"source": source, "image_size": size, "num_train": 4000, "num_val": 1000},
        "augment": {"crop_flip": True, "pca_lighting": True},
        "train": {
            "epochs": EPOCHS,
            "batch_size": 64,
            "lr": 0.02,
            "target_train_error": 0.5,
            "seed": seed,
        },
        "runtime": {"device": "cpu", "gpus": gpus, "parallel": "ddp"},
    }


def write_run(
    root: Path,
    ablation: str,
    seed: int,
    *,
    status: str = "completed",
    reason: str | None = None,
    val_top1: float = 0.30,
    val_top5: float = 0.05,
    train_top1: float = 0.20,
    ttt_epoch: int | None = 3,
    ttt_seconds: float | None = 10.0,
    throughput: float = 800.0,
    world_size: int = 1,
    epochs: int = EPOCHS,
    gpu: bool = False,
    source: str = "synthetic",
    size: int = 32,
    history: bool = True,
) -> Path:
    """Write ``root/ablation/seed{seed}/`` with metrics.json and history.csv; return metrics path.

    The history's running training error falls to the target (50%) exactly at epoch
    ``ttt_epoch`` (reached after ``ttt_seconds`` of training) and below it afterwards, so the
    time to target the report computes from it is ``ttt_epoch`` / ``ttt_seconds``; without
    ``ttt_epoch`` (or when the run ends by then) it never gets below the target.
    """
    run_dir = root / ablation / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    reached = ttt_epoch is not None and ttt_epoch < epochs
    epoch_time = ttt_seconds / ttt_epoch if reached and ttt_seconds else 5.0
    if gpu:
        gpu_block: dict[str, Any] = {
            "available": True,
            "devices": [{"index": 0, "name": "NVIDIA H100"}],
            "util_gpu_pct": {"mean": 91.0, "p50": 93.0, "p95": 99.0},
            "mem_used_peak_mib": 5120,
            "power_w": {"mean": 300.0, "p50": 310.0, "p95": 350.0, "max": 380.0},
            "energy_j": 1500.0,
            "energy_method": "counter",
            "energy_per_image_j": 0.0625 * world_size,
            "samples": 300,
        }
    else:
        gpu_block = {"available": False, "reason": "no NVIDIA GPU / NVML: not found"}
    metrics = {
        "schema_version": 1,
        "status": status,
        "reason": reason,
        "run": {"preset": "default", "ablation": ablation, "seed": seed},
        "config": run_config(ablation, seed, source, size, world_size),
        "config_hash": f"{abs(hash((ablation, seed))) % 16**16:016x}",
        "epochs_completed": epochs,
        "diverged_epoch": epochs if status == "diverged" else None,
        "final": {
            "train_loss": 0.9,
            "train_top1_error": train_top1,
            "val_loss": 1.1,
            "val_top1_error": val_top1,
            "val_top5_error": val_top5,
            "val_top1_error_10crop": None,
            "val_top5_error_10crop": None,
        },
        "best": {
            "epoch": epochs - 1,
            "val_top1_error": val_top1 - 0.01,
            "val_top5_error": val_top5,
        },
        "time_to_target": {"target_train_error": 0.5, "error": "train_top1_error"},
        "total_time_s": epochs * epoch_time + 3,
        "train_time_s": epochs * epoch_time,
        "throughput": {"images_per_s_median": throughput, "images_per_s_mean": throughput - 10},
        "step_time": {
            "steps_timed": 300,
            "step_ms": {"median": 80.0, "mean": 82.0, "p10": 75.0, "p90": 90.0},
            "phases_ms": {"data": 1.0, "forward": 30, "backward": 45, "optimizer": 4},
            "images_per_s_median": throughput + 5,
            "timing_method": "perf_counter",
        },
        "flops": {
            "train_flops_per_image": 9.1e7,
            "achieved_flops_per_s": 7.4e10,
            "peak_flops_per_s": 1.2e11,
            "peak_source": "measured-matmul",
            "mfu": 0.5,
        },
        "gpu": gpu_block,
        "host": {"process_cpu_s": 101.0, "wall_s": 60.0, "cpu_util_pct": 168, "peak_rss_mib": 900},
        "model": {"num_params": 2345678, "variant": "paper"},
        "device": {
            "type": "cuda" if gpu else "cpu",
            "name": "H100" if gpu else "x86_64",
            "count": world_size,
        },
        "parallel": {
            "mode": "ddp" if world_size > 1 else "none",
            "world_size": world_size,
            "backend": "gloo" if world_size > 1 else None,
        },
        "data": {
            "source": source,
            "num_train": 4000,
            "num_val": 1000,
            "num_classes": 10,
            "image_size": size,
            "skipped_files": 0,
        },
        "environment": {
            "python": "3.11.9",
            "torch": "2.5.1",
            "cuda": None,
            "cudnn": None,
            "gpu_names": [],
            "driver": None,
            "git_commit": "abc1234",
            "hostname": "testhost",
            "timestamp": "2026-01-01T00:00:00Z",
        },
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if history:
        lines = [
            "epoch,train_loss,train_top1_error,val_loss,val_top1_error,val_top5_error,"
            "lr,epoch_time_s,elapsed_s,images_per_s"
        ]
        for e in range(1, epochs + 1):
            frac = e / epochs
            if reached and e <= ttt_epoch:  # 0.9 -> exactly the target at ttt_epoch
                tr = TARGET if e == ttt_epoch else 0.9 - (0.9 - TARGET) * e / ttt_epoch
            elif reached:  # below the target from then on, down to train_top1 at the end
                low = min(train_top1, TARGET - 0.01)
                tr = TARGET - (TARGET - low) * (e - ttt_epoch) / (epochs - ttt_epoch)
            else:  # never below the target
                tr = 0.9 - (0.9 - max(train_top1, TARGET + 0.05)) * frac
            va = 0.9 + (val_top1 - 0.9) * frac
            loss = "nan" if (status == "diverged" and e == epochs) else f"{2.3 - frac:.4f}"
            lines.append(
                f"{e},{loss},{tr!r},{2.4 - frac:.4f},{va:.4f},{val_top5:.4f},0.02,"
                f"{epoch_time!r},{e * epoch_time!r},{throughput}"
            )
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    if gpu:
        rows = [
            "t_s,gpu,util_gpu_pct,util_mem_pct,mem_used_mib,mem_total_mib,power_w,"
            "sm_clock_mhz,mem_clock_mhz,temp_c,throttle_reasons,energy_mj"
        ]
        for i in range(20):
            rows.append(
                f"{i * 0.5},0,{80 + i % 5},40,5000,81559,{290 + i},1980,2619,60,0,{i * 150}"
            )
        (run_dir / "gpu.csv").write_text("\n".join(rows) + "\n")
    return run_dir / "metrics.json"


STUDY: dict[str, Any] = {
    "preset": "default",
    "seeds": [0, 1],
    "baseline": "baseline",
    "ablations": ["baseline", "tanh", "no_lrn", "no_dropout", "plain_pooling", "gpus2"],
    "ablation_defs": {
        "baseline": {"family": "baseline", "description": "paper settings", "overrides": {}},
        "tanh": {
            "family": "activation",
            "description": "tanh instead of ReLU",
            "overrides": {"model": {"activation": "tanh"}},
        },
        "no_lrn": {
            "family": "lrn",
            "description": "no LRN",
            "overrides": {"model": {"lrn": False}},
        },
        "no_dropout": {
            "family": "dropout",
            "description": "no dropout",
            "overrides": {"model": {"dropout": 0.0}},
        },
        "plain_pooling": {
            "family": "pooling",
            "description": "plain pooling",
            "overrides": {"model": {"pooling": "plain"}},
        },
        "gpus2": {
            "family": "gpus",
            "description": "DDP over 2 devices",
            "overrides": {"runtime": {"gpus": 2}},
        },
    },
}


def build_study_results(root: Path) -> tuple[Path, list[Path]]:
    """The standard mixed fixture; returns (results_dir, expected metrics paths).

    - baseline: seeds 0, 1 completed (val top-1 30 / 34 %, top-5 5 / 7 %, ttt 3 / 5 ep, 10 / 14 s)
    - tanh: seed 0 completed (40 %, ttt 9 ep / 60 s), seed 1 diverged
    - no_lrn: seed 0 completed (36 %, top-5 8 %), seed 1 failed
    - no_dropout: seed 0 missing (expected, never written), seed 1 completed (train 5 %, val 33 %)
    - plain_pooling: seed 0 garbage metrics.json, seed 1 completed (31 %)
    - gpus2: seeds 0, 1 completed on CPU, world size 2, throughput 1200 / 1240 img/s
    - baseline/seed7: a completed run outside the study (seeds 0, 1): left out
    """
    res = root / "results" / "default"
    write_run(
        res,
        "baseline",
        0,
        val_top1=0.30,
        val_top5=0.05,
        train_top1=0.20,
        ttt_epoch=3,
        ttt_seconds=10.0,
        throughput=800.0,
    )
    write_run(
        res,
        "baseline",
        1,
        val_top1=0.34,
        val_top5=0.07,
        train_top1=0.22,
        ttt_epoch=5,
        ttt_seconds=14.0,
        throughput=820.0,
    )
    write_run(
        res,
        "tanh",
        0,
        val_top1=0.40,
        val_top5=0.09,
        train_top1=0.35,
        ttt_epoch=9,
        ttt_seconds=60.0,
        throughput=790.0,
        epochs=10,
    )
    write_run(
        res,
        "tanh",
        1,
        status="diverged",
        reason="loss is nan at epoch 3",
        ttt_epoch=None,
        ttt_seconds=None,
        epochs=3,
        val_top1=0.9,
        train_top1=0.9,
    )
    write_run(res, "no_lrn", 0, val_top1=0.36, val_top5=0.08, train_top1=0.25)
    write_run(
        res,
        "no_lrn",
        1,
        status="failed",
        reason="DataError: corrupt file x.png",
        val_top1=0.99,
        ttt_epoch=None,
        ttt_seconds=None,
        epochs=0,
        history=False,
    )
    write_run(
        res,
        "no_dropout",
        1,
        val_top1=0.33,
        val_top5=0.06,
        train_top1=0.05,
        ttt_epoch=2,
        ttt_seconds=7.0,
    )
    bad = res / "plain_pooling" / "seed0"
    bad.mkdir(parents=True)
    (bad / "metrics.json").write_text('{"schema_version": 1, "status": "compl')
    write_run(res, "plain_pooling", 1, val_top1=0.31, val_top5=0.06)
    write_run(res, "gpus2", 0, val_top1=0.31, val_top5=0.05, throughput=1200.0, world_size=2)
    write_run(res, "gpus2", 1, val_top1=0.33, val_top5=0.06, throughput=1240.0, world_size=2)
    # a stale run outside the study (old seed): must be left out, not averaged in
    write_run(res, "baseline", 7, val_top1=0.99, val_top5=0.99)
    expected = [res / a / f"seed{s}" / "metrics.json" for a in STUDY["ablations"] for s in (0, 1)]
    return res, expected
