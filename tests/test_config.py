"""Run-config validation: defaults, one-line errors naming the key, overrides, hashing."""

from __future__ import annotations

import pytest

from alexnet_bench.config import RunConfig, config_hash, load_yaml, parse_override
from alexnet_bench.errors import ConfigError


def test_defaults_are_the_papers_settings() -> None:
    from alexnet_bench.model import build_model

    cfg = RunConfig({})
    assert (cfg.model.activation, cfg.model.dropout, cfg.model.pooling) == (
        "relu",
        0.5,
        "overlapping",
    )
    assert cfg.model.lrn is None  # the variant's own: the paper variant has LRN
    assert build_model(cfg.model, 10, 32).config["lrn"] is True
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay, cfg.train.batch_size) == (
        0.01,
        0.9,
        0.0005,
        128,
    )
    assert cfg.augment.crop_flip and cfg.augment.pca_lighting and cfg.augment.lighting_std == 0.1


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"model": {"activation": "sigmoid"}}, "model.activation"),
        ({"modle": {}}, "unknown config key 'modle'"),
        ({"model": {"lrm": True}}, "unknown config key 'model.lrm'"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"batch_size": -4}}, "train.batch_size"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"lr": -0.1}}, "train.lr"),
        ({"runtime": {"gpus": 0}}, "runtime.gpus"),
    ],
)
def test_bad_values_name_the_key(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(raw)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_malformed_yaml_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  activation: [relu\n")
    with pytest.raises(ConfigError, match=r"malformed YAML .* line \d+") as info:
        load_yaml(bad)
    assert "\n" not in str(info.value)


def test_overrides_and_hash(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = RunConfig.from_file(path, ["model.activation=tanh", "train.lr=0.05"])
    assert cfg.train.epochs == 3 and cfg.model.activation == "tanh" and cfg.train.lr == 0.05
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    assert cfg.hash == RunConfig(cfg.to_dict()).hash == config_hash(cfg.to_dict())
    assert cfg.hash != RunConfig({}).hash


def test_plateau_schedule_needs_a_gamma_below_one() -> None:
    with pytest.raises(ConfigError, match="train.lr_gamma must be < 1"):
        RunConfig({"train": {"lr_schedule": "plateau", "lr_gamma": 1.0}})
    assert RunConfig({"train": {"lr_schedule": "plateau"}}).train.lr_patience == 1


def test_sections_are_dataclasses_generated_from_the_schema(monkeypatch) -> None:
    """Typed sections: one field per schema key, typed by the key's schema type, so the two
    cannot drift; a key without a schema default is optional (None when absent)."""
    import dataclasses
    import typing

    from alexnet_bench import config

    schema = config.run_schema()["properties"]
    cfg = RunConfig({})
    for name in config.SECTIONS:
        section = getattr(cfg, name)
        assert dataclasses.is_dataclass(section) and type(section) is config.SECTION_TYPES[name]
        assert [f.name for f in dataclasses.fields(section)] == list(schema[name]["properties"])
        assert dataclasses.asdict(section) == {
            **dict.fromkeys(schema[name]["properties"]),
            **cfg.raw[name],
        }
    hints = {f.name: f.type for f in dataclasses.fields(config.SECTION_TYPES["train"])}
    assert hints["lr"] is float and hints["stop_at_target"] == bool | None
    assert typing.get_args(hints["target_error_on"]) == () and hints["target_error_on"] is str
    assert cfg.train.stop_at_target is None and cfg.model.arch is None  # no default: absent
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]
    # a key added to the schema is a field at once, typed, with no second edit
    extended = {
        **config.run_schema(),
        "properties": {
            **schema,
            "data": {
                **schema["data"],
                "properties": {
                    **schema["data"]["properties"],
                    "cache_dir": {"type": ["string", "null"], "default": None},
                },
            },
        },
    }
    monkeypatch.setattr(config, "run_schema", lambda: extended)
    fields = {f.name: f.type for f in dataclasses.fields(config._section_type("data"))}
    assert fields["cache_dir"] == str | None


def test_the_config_hash_means_what_it_meant() -> None:
    """sha256 of the canonical JSON of the validated dict's result keys (defaults filled, keys
    without a default left out when absent, provenance keys left out); the typed sections are
    a view and do not enter it. A dict without provenance keys hashes as it always did: the
    literal is the hash the branch point computed for the same dict."""
    import hashlib
    import json

    from alexnet_bench.config import split_identity, validate_run_config

    assert config_hash({"train": {"lr": 0.01, "epochs": 3}, "model": {"arch": None}}) == (
        "a3c675d1716a6003"
    )
    raw = {"train": {"epochs": 3}, "model": {"activation": "tanh"}}
    cfg = RunConfig(raw)
    result = split_identity(validate_run_config(raw))[0]
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"))
    assert cfg.hash == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert "stop_at_target" not in cfg.to_dict()["train"] and "arch" not in cfg.to_dict()["model"]
