"""The ``figure1:`` block of config.yaml: learning-rate grids, seeds, data and the run configs.

Light on purpose (no torch): the Snakemake workflow imports it to expand the grid and to fail
before any job starts. The protocol keys (network, activation, learning rate, seed, no weight
decay, no augmentation, constant learning rate, the target) are set here and cannot be changed
through ``figure1.run``, which only reaches the remaining run settings (runtime, telemetry,
momentum, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig, deep_merge
from ..datadirs import check_data_root
from ..errors import ConfigError

ACTIVATIONS = ("relu", "tanh")
STAGES = ("sweep", "final")
IMAGE_SIZE = 32  # CIFAR-10's size, used as is (no crops: no augmentation)
MIN_GRID, MIN_SWEEP_SEEDS, MIN_FINAL_SEEDS = 5, 2, 3
KEYS = (
    "data", "cifar10_root", "train_images", "val_images", "batch_size", "epochs",
    "target_train_error", "lr_grid", "sweep_seeds", "final_seeds", "run",
)  # fmt: skip


def lr_label(lr: float) -> str:
    """Directory/wildcard form of a learning rate: ``0.00316`` -> ``"0.00316"``."""
    return f"{lr:g}"


def log_grid(lo: float, hi: float, num: int) -> tuple[float, ...]:
    """``num`` log-spaced values from ``lo`` to ``hi``, rounded to 3 significant digits."""
    if not (0 < lo < hi) or num < 2:
        raise ConfigError(f"a learning-rate grid needs 0 < min < max and num >= 2 (got {lo}, {hi})")
    step = math.log(hi / lo) / (num - 1)
    values = tuple(float(f"{lo * math.exp(k * step):.3g}") for k in range(num))
    if len(set(values)) != num:
        raise ConfigError(
            f"learning-rate grid {lo}..{hi} with {num} values repeats after rounding to 3 "
            "significant digits; widen it or use fewer values"
        )
    return values


def _leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out += _leaves(value, path) if isinstance(value, dict) and value else [path]
    return out


@dataclass(frozen=True)
class Figure1Settings:
    """A validated ``figure1:`` block with ``data: auto`` resolved."""

    data: str  # synthetic | cifar10 (resolved)
    data_requested: str  # auto | synthetic | cifar10
    cifar10_root: str
    train_images: int | None
    val_images: int
    batch_size: int
    epochs: int
    target_train_error: float
    grids: dict[str, tuple[float, ...]]
    sweep_seeds: tuple[int, ...]
    final_seeds: tuple[int, ...]
    run: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: Any, base_dir: Path | None = None) -> Figure1Settings:
        """Check ``block`` (config.yaml's ``figure1``) and resolve ``data: auto``.

        ``auto`` means CIFAR-10 when ``cifar10_root`` exists (relative to ``base_dir``, default
        the working directory), else the embedded shapes10. Raises :class:`ConfigError` with
        one line naming the key and the fix.
        """
        if not isinstance(block, dict):
            raise ConfigError("figure1 must be a mapping; see the figure1 block of config.yaml")
        missing = [k for k in KEYS if k not in block]
        if missing:
            raise ConfigError(f"figure1.{missing[0]} is missing; add it (see config.yaml)")
        root = Path(block["cifar10_root"]).expanduser()
        where = root if root.is_absolute() else (base_dir or Path.cwd()) / root
        data = block["data"]
        if data == "auto":
            data = "cifar10" if where.exists() else "synthetic"
        if data not in ("synthetic", "cifar10"):
            raise ConfigError(f"figure1.data is {data!r}; set it to auto, synthetic or cifar10")
        if data == "cifar10":
            check_data_root("cifar10", where)
        grid = block["lr_grid"]
        if not isinstance(grid, dict) or sorted(grid) != sorted(ACTIVATIONS):
            raise ConfigError("figure1.lr_grid needs exactly the keys relu and tanh")
        grids = {}
        for act in ACTIVATIONS:
            g = grid[act]
            if g["num"] < MIN_GRID:
                raise ConfigError(f"figure1.lr_grid.{act}.num must be >= {MIN_GRID} (the protocol)")
            if not g["min"] < g["max"]:
                raise ConfigError(f"figure1.lr_grid.{act}: min must be below max")
            grids[act] = log_grid(float(g["min"]), float(g["max"]), int(g["num"]))
        sweep, final = tuple(block["sweep_seeds"]), tuple(block["final_seeds"])
        if len(set(sweep)) < MIN_SWEEP_SEEDS or len(set(final)) < MIN_FINAL_SEEDS:
            raise ConfigError(
                f"figure1 needs >= {MIN_SWEEP_SEEDS} distinct sweep_seeds and >= "
                f"{MIN_FINAL_SEEDS} distinct final_seeds; add seeds"
            )
        if set(sweep) & set(final):
            shared = sorted(set(sweep) & set(final))
            raise ConfigError(
                f"figure1.final_seeds {shared} also appear in sweep_seeds; final seeds must be "
                "fresh: pick others"
            )
        if data == "synthetic" and block["train_images"] is None:
            raise ConfigError("figure1.train_images must be a number for shapes10; set it")
        settings = cls(
            data=data,
            data_requested=block["data"],
            cifar10_root=str(block["cifar10_root"]),
            train_images=block["train_images"],
            val_images=int(block["val_images"]),
            batch_size=int(block["batch_size"]),
            epochs=int(block["epochs"]),
            target_train_error=float(block["target_train_error"]),
            grids=grids,
            sweep_seeds=sweep,
            final_seeds=final,
            run=dict(block["run"] or {}),
        )
        settings._check_run_overrides()
        for act in ACTIVATIONS:
            for stage, lr in (("sweep", grids[act][0]), ("final", grids[act][-1])):
                try:
                    RunConfig(settings.run_config(act, stage, lr, seed=sweep[0]))
                except ConfigError as exc:
                    raise ConfigError(f"figure1 ({act}, {stage}): {exc}") from None
        return settings

    def protocol(self, activation: str, stage: str) -> dict[str, Any]:
        """The run settings the Figure 1 protocol fixes (without learning rate and seed)."""
        if activation not in ACTIVATIONS or stage not in STAGES:
            raise ConfigError(f"unknown figure1 arm {activation!r}/{stage!r}")
        if self.data == "synthetic":
            data = {"source": "synthetic", "num_train": self.train_images,
                    "num_val": self.val_images}  # fmt: skip
        else:
            data = {"source": "cifar10", "root": self.cifar10_root,
                    "max_train": self.train_images, "max_val": self.val_images}  # fmt: skip
        data.update(image_size=IMAGE_SIZE, stored_size=IMAGE_SIZE)
        return {
            "model": {"arch": "layers18pct", "activation": activation},
            "data": data,
            "augment": {"crop_flip": False, "pca_lighting": False},
            # the running training error (no dropout or augmentation here), no extra clean pass
            "eval": {"train_images": 0},
            "train": {
                "target_error_on": "running",
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "weight_decay": 0.0,
                "lr_schedule": "constant",
                "target_train_error": self.target_train_error,
                "stop_at_target": stage == "sweep",
            },
        }

    def _check_run_overrides(self) -> None:
        fixed = set(_leaves(self.protocol("relu", "sweep"))) | {"train.lr", "train.seed"}
        for leaf in _leaves(self.run):
            clash = next((f for f in fixed if leaf == f or f.startswith(leaf + ".")), None)
            if clash is not None:
                raise ConfigError(
                    f"figure1.run.{leaf} is fixed by the Figure 1 protocol ({clash}); remove it "
                    "(the figure1 block's own keys set data size, epochs and batch size)"
                )

    def run_config(
        self, activation: str, stage: str, lr: float | None = None, seed: int | None = None
    ) -> dict[str, Any]:
        """The run config of one arm: figure1.run <- protocol <- learning rate <- seed."""
        cfg = deep_merge(self.run, self.protocol(activation, stage))
        train: dict[str, Any] = {}
        if lr is not None:
            train["lr"] = float(lr)
        if seed is not None:
            train["seed"] = int(seed)
        return deep_merge(cfg, {"train": train})

    def lr_for(self, activation: str, label: str) -> float:
        """The grid learning rate whose label is ``label`` (the workflow's ``{lr}`` wildcard)."""
        for lr in self.grids.get(activation, ()):
            if lr_label(lr) == label:
                return lr
        grid = ", ".join(lr_label(x) for x in self.grids.get(activation, ()))
        raise ConfigError(
            f"learning rate {label} is not on the figure1 grid of {activation} ({grid}); "
            "pick one of those or change figure1.lr_grid"
        )

    def seeds(self, stage: str) -> tuple[int, ...]:
        return self.sweep_seeds if stage == "sweep" else self.final_seeds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (what summary.json records as the protocol)."""
        return {
            "data": self.data,
            "data_requested": self.data_requested,
            "cifar10_root": self.cifar10_root,
            "train_images": self.train_images,
            "val_images": self.val_images,
            "image_size": IMAGE_SIZE,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "target_train_error": self.target_train_error,
            "lr_grid": {a: list(v) for a, v in self.grids.items()},
            "sweep_seeds": list(self.sweep_seeds),
            "final_seeds": list(self.final_seeds),
            "run": self.run,
        }
