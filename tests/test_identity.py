"""A run's identity is what it computes: every run-config key is classified once, in the schema,
as ``result`` (part of the identity) or ``provenance`` (recorded, never a reason to retrain)."""

from __future__ import annotations

import copy

import pytest

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
from alexnet_bench.errors import ConfigError

from .conftest import tiny_run


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
        "data.root", "data.cache", "telemetry.progress_interval_s", "train.keep_checkpoint",
    }  # fmt: skip


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
    changed = RunConfig(tiny_run(data={"source": "imagefolder", "root": "/data/a"},
                                 train={"seed": 1}))  # fmt: skip
    assert changed.hash != base.hash
