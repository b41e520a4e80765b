"""Property-based tests of the run-config schema (hypothesis).

Valid configs are drawn from ``alexnet_bench/schemas/run.schema.yaml`` itself (its enums, types
and bounds), kept tiny where size matters (width, image size, data set, one epoch, CPU): every
one the schema accepts must build a model and run a training step and an evaluation. Invalid
configs are a valid one with one key broken (unknown key, wrong type, out of range, not in the
enum, NaN/inf, an inconsistent combination): each must raise a one-line :class:`ConfigError`
naming that key, with a fix, before anything is built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_bench.config import RunConfig, run_schema
from alexnet_bench.errors import ConfigError
from alexnet_bench.train import Trainer

SCHEMA = run_schema()
SECTIONS: dict[str, dict[str, Any]] = {
    name: section["properties"] for name, section in SCHEMA["properties"].items()
}
NUMBER_CAP = 1e3  # upper end for unbounded numbers (weight decay, lighting std, ...)
INTEGER_CAP = 2**64  # unbounded integers (seed) may be huge: the code must cope or the schema cap

# Keys whose size or device matters on a CPU test runner: tiny values, CPU only.
TINY: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("model", "width"): st.floats(0.01, 0.25),
    ("data", "source"): st.just("synthetic"),
    ("data", "root"): st.none(),
    ("data", "cache"): st.none(),  # a prepared image folder: tests/test_prepared_data.py
    ("data", "cache_format"): st.sampled_from(["raw", "jpeg90"]),
    ("data", "image_size"): st.integers(32, 40),
    ("data", "num_train"): st.integers(10, 48),
    ("data", "num_val"): st.integers(10, 20),
    ("data", "max_val"): st.none() | st.integers(1, 20),
    ("data", "workers"): st.integers(0, 1),
    ("eval", "batch_size"): st.integers(1, 32),
    ("train", "epochs"): st.just(1),
    ("runtime", "device"): st.just("cpu"),
    ("runtime", "threads"): st.just(1),
    ("runtime", "compile"): st.just(False),  # minutes on CPU; its fallback is tested elsewhere
    ("telemetry", "interval_ms"): st.integers(10, 1000),
}
ALWAYS = {
    ("data", "source"),
    ("data", "num_train"),
    ("data", "num_val"),
    ("train", "epochs"),
    ("runtime", "device"),
    ("runtime", "threads"),
    ("runtime", "compile"),
    ("model", "width"),
    ("data", "image_size"),
}


def _types(prop: dict[str, Any]) -> list[str]:
    kind = prop.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def _integer_bounds(prop: dict[str, Any]) -> tuple[int, int]:
    low = prop.get("minimum", prop.get("exclusiveMinimum", -INTEGER_CAP - 1) + 1)
    high = prop.get("maximum", INTEGER_CAP)
    return int(low), int(high)


def from_schema(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value the schema allows for one key (unbounded ranges capped)."""
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    options: list[st.SearchStrategy[Any]] = []
    for kind in _types(prop):
        if kind == "null":
            options.append(st.none())
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "integer":
            options.append(st.integers(*_integer_bounds(prop)))
        elif kind == "number":
            options.append(
                st.floats(
                    min_value=prop.get("minimum", prop.get("exclusiveMinimum", -NUMBER_CAP)),
                    max_value=prop.get("maximum", prop.get("exclusiveMaximum", NUMBER_CAP)),
                    exclude_min="exclusiveMinimum" in prop,
                    exclude_max="exclusiveMaximum" in prop,
                    allow_nan=False,
                    allow_infinity=False,
                )
            )
        elif kind == "string":
            options.append(st.text(max_size=8))
    return st.one_of(options)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """A config the schema accepts, tiny, consistent across keys; optional keys may be absent."""
    cfg: dict[str, dict[str, Any]] = {}
    for section, props in SECTIONS.items():
        values = {}
        for key, prop in props.items():
            if (section, key) in ALWAYS or draw(st.booleans()):
                values[key] = draw(TINY.get((section, key), from_schema(prop)))
        cfg[section] = values
    data, train, runtime = cfg["data"], cfg["train"], cfg["runtime"]
    size = data["image_size"]
    data["stored_size"] = draw(st.none() | st.integers(size, size + 8))
    data["max_train"] = draw(st.none() | st.integers(1, data["num_train"]))
    n_train = min(data["num_train"], data["max_train"] or data["num_train"])
    runtime["gpus"] = gpus = draw(st.integers(1, min(4, n_train)))
    if gpus > 1 and runtime.get("parallel", "ddp") == "model":
        runtime["gpus"] = 2  # the two-tower split of the paper variant's AlexNet
        cfg["model"].update(variant="paper", grouped=True)
        cfg["model"].pop("arch", None)
    multiple = runtime["gpus"] if runtime.get("parallel", "ddp") == "ddp" else 1
    train["batch_size"] = multiple * draw(st.integers(1, max(1, min(16, n_train) // multiple)))
    model = cfg["model"]
    if model.get("arch") == "layers18pct" and model.get("init", "auto") not in ("auto", "paper"):
        model["init"] = draw(st.sampled_from(["auto", "paper"]))  # the Figure 1 net's two inits
    if train.get("lr_schedule") == "plateau" and train.get("lr_gamma", 0.1) >= 1:
        train["lr_gamma"] = 0.5  # plateau must lower the lr (a consistency rule)
    return cfg


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=valid_configs())
def test_every_accepted_config_builds_a_model_and_trains_one_step(cfg: dict) -> None:
    run = RunConfig(cfg)
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(run, Path("never-written"))
        images, target = next(iter(trainer.data.train))
        loss, logits = trainer.train_step(images, target)
        assert logits.shape == (images.shape[0], trainer.data.num_classes)
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in trainer.model.parameters())  # backward ran
        assert trainer.optimizer.state or run.train.momentum == 0  # the optimiser stepped
        val = trainer.evaluate(ten_crop=run.eval.ten_crop)
        assert val.images == min(run.data.num_val, run.data.max_val or run.data.num_val)
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------ invalid configs

_JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=6),
    "boolean": st.booleans(),
    "integer": st.integers(-5, 5),
    "number": st.floats(-5, 5, allow_nan=False).filter(lambda x: x != int(x)),
    "array": st.lists(st.integers(0, 3), max_size=2),
    "object": st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=1),
    "null": st.none(),
}
_IDENTIFIER = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=2, max_size=10)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string"}[type(value)]


def _wrong_type(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    allowed = set(_types(prop))
    if "enum" in prop:  # a value of a type no enum member has misses the enum
        allowed = {_json_type(v) for v in prop["enum"]}
    if "number" in allowed:
        allowed |= {"integer"}
    if "integer" in allowed and "number" not in allowed:
        return st.one_of(
            *[s for k, s in _JSON_VALUES.items() if k not in allowed],
            st.integers(-5, 5).map(float),  # 2.0 is no integer here (range() rejects it)
        )
    return st.one_of(*[s for k, s in _JSON_VALUES.items() if k not in allowed])


def _out_of_range(prop: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    integer = "integer" in _types(prop)
    options = []
    if "minimum" in prop:
        gap = st.integers(1, 100) if integer else st.floats(1e-6, 100)
        options.append(gap.map(lambda d, m=prop["minimum"]: m - d))
    if "exclusiveMinimum" in prop:
        gap = st.integers(0, 100) if integer else st.floats(0, 100)
        options.append(gap.map(lambda d, m=prop["exclusiveMinimum"]: m - d))
    if "maximum" in prop:
        gap = st.integers(1, 100) if integer else st.floats(1e-6, 100)
        options.append(gap.map(lambda d, m=prop["maximum"]: m + d))
    if "exclusiveMaximum" in prop:
        gap = st.integers(0, 100) if integer else st.floats(0, 100)
        options.append(gap.map(lambda d, m=prop["exclusiveMaximum"]: m + d))
    return st.one_of(options) if options else None


KEYS = [(section, key) for section, props in SECTIONS.items() for key in props]
NUMBER_KEYS = [k for k in KEYS if "number" in _types(SECTIONS[k[0]][k[1]])]
RANGED_KEYS = [k for k in KEYS if _out_of_range(SECTIONS[k[0]][k[1]]) is not None]
ENUM_KEYS = [k for k in KEYS if "enum" in SECTIONS[k[0]][k[1]]]


@st.composite
def invalid_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid config with one fault, and the dotted key the error must name."""
    cfg: dict[str, Any] = draw(valid_configs())
    fault = draw(
        st.sampled_from(
            [
                "unknown_key",
                "unknown_section",
                "wrong_type",
                "out_of_range",
                "not_in_enum",
                "non_finite",
                "inconsistent",
            ]
        )
    )
    if fault == "unknown_section":
        name = draw(_IDENTIFIER.filter(lambda n: n not in SECTIONS))
        cfg[name] = {}
        return cfg, name
    if fault == "inconsistent":
        rule = draw(st.sampled_from(["batch", "stored_size", "ddp_split", "two_towers"]))
        data, train, runtime = cfg["data"], cfg["train"], cfg["runtime"]
        if rule == "batch":
            n_train = min(data["num_train"], data["max_train"] or data["num_train"])
            runtime["gpus"] = 1
            train["batch_size"] = draw(st.integers(n_train + 1, n_train + 100))
            return cfg, "train.batch_size"
        if rule == "stored_size":
            data["stored_size"] = (
                draw(st.integers(32, data["image_size"] - 1)) if (data["image_size"] > 32) else None
            )
            if data["stored_size"] is None:
                data["image_size"], data["stored_size"] = 40, 33
            return cfg, "data.stored_size"
        if rule == "ddp_split":
            runtime.update(gpus=2, parallel="ddp")
            data.update(num_train=48, max_train=None)
            train["batch_size"] = draw(st.integers(0, 7)) * 2 + 1
            return cfg, "runtime.gpus"
        runtime.update(gpus=draw(st.integers(2, 8)), parallel="model")
        if runtime["gpus"] == 2:
            cfg["model"].update(
                draw(st.sampled_from([{"variant": "torchvision"}, {"grouped": False}]))
            )
        return cfg, "runtime.parallel"
    pools = {
        "unknown_key": [(s, None) for s in SECTIONS],
        "wrong_type": KEYS,
        "out_of_range": RANGED_KEYS,
        "not_in_enum": ENUM_KEYS,
        "non_finite": NUMBER_KEYS,
    }
    section, key = draw(st.sampled_from(pools[fault]))
    if key is None:
        key = draw(_IDENTIFIER.filter(lambda n, s=section: n not in SECTIONS[s]))
        value: Any = draw(_JSON_VALUES["integer"])
    else:
        prop = SECTIONS[section][key]
        value = draw(
            {
                "wrong_type": lambda: _wrong_type(prop),
                "out_of_range": lambda: _out_of_range(prop),
                "not_in_enum": lambda: st.text(max_size=8).filter(lambda v: v not in prop["enum"]),
                "non_finite": lambda: st.sampled_from([math.nan, math.inf, -math.inf]),
            }[fault]()
        )
    cfg[section][key] = value
    return cfg, f"{section}.{key}"


@settings(max_examples=200, deadline=None)
@given(case=invalid_configs())
def test_every_rejected_config_gets_a_one_line_error_naming_the_key(
    case: tuple[dict[str, Any], str],
) -> None:
    cfg, key = case
    with pytest.raises(ConfigError) as info:
        RunConfig(cfg)
    message = str(info.value)
    assert "\n" not in message and f"{key}" in message, message
    assert "; " in message, f"no fix given: {message}"
