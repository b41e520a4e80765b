"""Train several seeds of one figure1 arm in one process (one Snakemake job).

Each seed is an ordinary run of :func:`alexnet_bench.train.run_training` in ``<out>/seed<N>/``
(history.csv, metrics.json, checkpoint.pt): one process per arm saves the interpreter and torch
start-up per seed. A seed whose metrics.json already holds this config's hash is not trained
again, so a rerun of a killed job only trains what is missing (and resumes from checkpoints).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import RunConfig, deep_merge
from ..errors import BenchError, ConfigError
from ..launch import LaunchOptions, lease_gpus
from ..record import write_not_trained

log = logging.getLogger(__name__)


def chosen_lr(selection: Path, activation: str) -> float:
    """The learning rate ``selection.json`` chose for ``activation``."""
    try:
        lr = json.loads(Path(selection).read_text())["chosen"][activation]["lr"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the chosen {activation} learning rate from '{selection}' ({exc}); "
            "rerun the sweep (snakemake figure1)"
        ) from None
    return float(lr)


def _done(out: Path, cfg: RunConfig) -> bool:
    """Whether ``out`` already holds the metrics.json of this exact config."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and metrics.get("config_hash") == cfg.hash


def train_seeds(
    base: dict[str, Any],
    seeds: Sequence[int],
    out_dir: Path,
    labels: dict[str, Any] | None = None,
    record_failures: bool = False,
    gpu_lock_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Train ``base`` once per seed into ``out_dir/seed<N>``; returns each run's status line.

    With ``record_failures`` a user error (bad data, bad config) of one seed is written as a
    ``failed`` metrics.json and the next seed still runs; otherwise it is raised.
    """
    from ..train import run_training

    if not seeds:
        raise ConfigError("figure1 train needs at least one --seeds value")
    configs = [RunConfig(deep_merge(base, {"train": {"seed": int(s)}})) for s in seeds]
    lease = lease_gpus(configs[0], LaunchOptions(gpu_lock_dir=gpu_lock_dir))  # as `train` does
    done: list[dict[str, Any]] = []
    try:
        for cfg in configs:
            out = Path(out_dir) / f"seed{cfg.train.seed}"
            run_labels = {**(labels or {}), "seed": cfg.train.seed, "lr": cfg.train.lr}
            if _done(out, cfg):
                log.info("seed %d: %s already holds this config's results", cfg.train.seed, out)
                done.append({"seed": cfg.train.seed, "status": "kept"})
                continue
            try:
                metrics = run_training(cfg, out, run_labels)
            except BenchError as exc:
                if not record_failures:
                    raise
                write_not_trained(out, "failed", str(exc), cfg, run_labels)
                log.error("seed %d failed: %s", cfg.train.seed, exc)
                done.append({"seed": cfg.train.seed, "status": "failed"})
                continue
            tt = metrics["time_to_target"]["epoch"]
            log.info(
                "seed %d: %s, %d epochs, first epoch below the target: %s",
                cfg.train.seed, metrics["status"], metrics["epochs_completed"], tt,
            )  # fmt: skip
            done.append({"seed": cfg.train.seed, "status": metrics["status"]})
    finally:
        if lease is not None:
            lease.release()
    return done
