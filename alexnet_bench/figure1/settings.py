"""The ``figure1:`` block of config.yaml: inits, learning-rate grids, seeds, data, run configs.

The initialisation is a factor of the study (:data:`INIT_RULES`): every init in
``figure1.inits`` gets its own learning-rate sweep per activation, its own selection and its own
final seeds, with the same protocol and criteria.

Light on purpose (no torch): the Snakemake workflow imports it to expand the grid and to fail
before any job starts. The protocol keys (network, activation, learning rate, seed, no weight
decay, no augmentation, constant learning rate, the target, the init rule) are set here and
cannot be changed through ``figure1.run``, which only reaches the remaining run settings
(runtime, telemetry, momentum, ...).
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
#: init rule -> the run settings it sets (both activations alike; seeds pair within a rule)
INIT_RULES: dict[str, dict[str, Any]] = {
    # Layers18pct's own default (model.init auto) on unit-variance inputs: no keys, so these
    # runs keep the config hashes they had before inits became a factor
    "variance_preserving": {},
    # the paper era's: layers-18pct.cfg's initW constants in cuda-convnet's input units
    "cuda_convnet": {"model": {"init": "paper"}, "data": {"normalise": "mean"}},
}
INIT_TEXT = {
    "variance_preserving": "variance-preserving: weights N(0, 1) x gain / sqrt(fan_in) (gain "
    "sqrt(2) ReLU, 5/3 tanh, 1 fc10), biases 0, inputs standardised per channel",
    "cuda_convnet": "paper era (cuda-convnet layers-18pct.cfg initW): conv1 N(0, 1e-4^2), conv2, "
    "conv3, fc10 N(0, 0.01^2), biases 0, on cuda-convnet's inputs (pixels minus the mean, "
    "0-255 scale)",
}
PAPER_ERA_INIT = "cuda_convnet"
IMAGE_SIZE = 32  # CIFAR-10's size, used as is (no crops: no augmentation)
# a grid must be able to bracket an optimum (3 rates); final seeds give a t-interval (3)
MIN_GRID, MIN_SWEEP_SEEDS, MIN_FINAL_SEEDS = 3, 1, 3
KEYS = (
    "data",
    "cifar10_root",
    "train_images",
    "val_images",
    "batch_size",
    "target_train_error",
    "inits",
    "sweep_seeds",
    "final_seeds",
    "run",
)
INIT_KEYS = ("epochs", "lr_grid")


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


def _grids(block: Any, where: str) -> dict[str, tuple[float, ...]]:
    """The per-activation rates of one init's ``lr_grid`` (``where`` names it in errors)."""
    if not isinstance(block, dict) or sorted(block) != sorted(ACTIVATIONS):
        raise ConfigError(f"{where} needs exactly the keys relu and tanh (see config.yaml)")
    grids = {}
    for act in ACTIVATIONS:
        g = block[act]
        if g["num"] < MIN_GRID:
            raise ConfigError(f"{where}.{act}.num must be >= {MIN_GRID} (the protocol)")
        if not g["min"] < g["max"]:
            raise ConfigError(f"{where}.{act}: min must be below max")
        grids[act] = log_grid(float(g["min"]), float(g["max"]), int(g["num"]))
    return grids


def _init_blocks(block: Any) -> dict[str, dict[str, Any]]:
    """``figure1.inits``: init rule -> its block (epochs, lr_grid), in the order given."""
    if not isinstance(block, dict) or not block or set(block) - set(INIT_RULES):
        raise ConfigError(
            f"figure1.inits must map one or both of {', '.join(INIT_RULES)} to their epochs and "
            "lr_grid (see config.yaml)"
        )
    for init, sub in block.items():
        missing = [k for k in INIT_KEYS if not isinstance(sub, dict) or k not in sub]
        if missing:
            raise ConfigError(f"figure1.inits.{init}.{missing[0]} is missing; add it")
        if int(sub["epochs"]) < 1:
            raise ConfigError(f"figure1.inits.{init}.epochs must be >= 1")
    return block


@dataclass(frozen=True)
class Figure1Settings:
    """A validated ``figure1:`` block with ``data: auto`` resolved."""

    data: str  # synthetic | cifar10 (resolved)
    data_requested: str  # auto | synthetic | cifar10
    cifar10_root: str
    train_images: int | None
    val_images: int
    batch_size: int
    target_train_error: float
    inits: tuple[str, ...]
    epochs: dict[str, int]  # init -> the longest a run trains
    grids: dict[str, dict[str, tuple[float, ...]]]  # init -> activation -> rates
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
        blocks = _init_blocks(block["inits"])
        inits = tuple(i for i in INIT_RULES if i in blocks)  # a fixed order, whatever the input
        grids = {i: _grids(b["lr_grid"], f"figure1.inits.{i}.lr_grid") for i, b in blocks.items()}
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
            target_train_error=float(block["target_train_error"]),
            inits=inits,
            epochs={i: int(b["epochs"]) for i, b in blocks.items()},
            grids=grids,
            sweep_seeds=sweep,
            final_seeds=final,
            run=dict(block["run"] or {}),
        )
        settings._check_run_overrides()
        for init in inits:
            for act in ACTIVATIONS:
                for lr in (grids[init][act][0], grids[init][act][-1]):
                    try:
                        RunConfig(settings.run_config(init, act, lr, seed=sweep[0]))
                    except ConfigError as exc:
                        raise ConfigError(f"figure1 ({init}, {act}, lr {lr:g}): {exc}") from None
        return settings

    def protocol(self, init: str, activation: str) -> dict[str, Any]:
        """The run settings the Figure 1 protocol fixes (without learning rate and seed); the
        same for sweep and final runs."""
        if init not in self.inits:
            raise ConfigError(
                f"init {init!r} is not in figure1.inits {list(self.inits)}; add it there"
            )
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown figure1 activation {activation!r}; choose relu or tanh")
        if self.data == "synthetic":
            data = {
                "source": "synthetic",
                "num_train": self.train_images,
                "num_val": self.val_images,
            }
        else:
            data = {
                "source": "cifar10",
                "root": self.cifar10_root,
                "max_train": self.train_images,
                "max_val": self.val_images,
            }
        data.update(image_size=IMAGE_SIZE, stored_size=IMAGE_SIZE)
        arm = {
            "model": {"arch": "layers18pct", "activation": activation},
            "data": data,
            "augment": {"crop_flip": False, "pca_lighting": False},
            # the running training error (no dropout or augmentation here), no extra clean pass
            "eval": {"train_images": 0},
            "train": {
                "target_error_on": "running",
                "epochs": self.epochs[init],
                "batch_size": self.batch_size,
                "weight_decay": 0.0,
                "lr_schedule": "constant",
                "target_train_error": self.target_train_error,
                # every run stops after its first epoch below the target: epochs to the target
                # are then known, and nothing after it enters the ratio
                "stop_at_target": True,
            },
        }
        return deep_merge(arm, INIT_RULES[init])

    def _check_run_overrides(self) -> None:
        fixed = {"train.lr", "train.seed"} | set(_leaves(self.protocol(self.inits[0], "relu")))
        for rule in INIT_RULES.values():  # every init rule's keys, run or not
            fixed |= set(_leaves(rule))
        for leaf in _leaves(self.run):
            clash = next((f for f in fixed if leaf == f or f.startswith(leaf + ".")), None)
            if clash is not None:
                raise ConfigError(
                    f"figure1.run.{leaf} is fixed by the Figure 1 protocol ({clash}); remove it "
                    "(the figure1 block's own keys set data size, epochs and batch size)"
                )

    def run_config(
        self,
        init: str,
        activation: str,
        lr: float | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """The run config of one arm: figure1.run <- protocol (with the init rule) <- lr <- seed."""
        cfg = deep_merge(self.run, self.protocol(init, activation))
        train: dict[str, Any] = {}
        if lr is not None:
            train["lr"] = float(lr)
        if seed is not None:
            train["seed"] = int(seed)
        return deep_merge(cfg, {"train": train})

    def lr_for(self, init: str, activation: str, label: str) -> float:
        """The grid learning rate whose label is ``label`` (the workflow's ``{lr}`` wildcard)."""
        rates = self.grids.get(init, {}).get(activation, ())
        for lr in rates:
            if lr_label(lr) == label:
                return lr
        grid = ", ".join(lr_label(x) for x in rates)
        raise ConfigError(
            f"learning rate {label} is not on the figure1 grid of {init}/{activation} ({grid}); "
            "pick one of those or change figure1.lr_grid"
        )

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
            "epochs": dict(self.epochs),
            "target_train_error": self.target_train_error,
            "inits": list(self.inits),
            "init_rules": {i: INIT_TEXT[i] for i in self.inits},
            "lr_grid": {i: {a: list(v) for a, v in g.items()} for i, g in self.grids.items()},
            "sweep_seeds": list(self.sweep_seeds),
            "final_seeds": list(self.final_seeds),
            "run": self.run,
        }
