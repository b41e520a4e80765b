"""Run configuration: JSON-schema validation with defaults, typed access and a stable hash.

The schema (``schemas/run.schema.yaml``) is the single source of truth for keys, types,
allowed values and defaults; :class:`RunConfig` is a thin typed view over the validated dict.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

SECTIONS = ("model", "data", "augment", "eval", "train", "runtime", "telemetry")


@cache
def run_schema() -> dict[str, Any]:
    """The run-configuration JSON schema (parsed once)."""
    text = resources.files("alexnet_bench").joinpath("schemas/run.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(instance: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where_key = ".".join([*map(str, error.absolute_path), extra[0]]) if extra else where
        return f"unknown config key '{where_key}'; allowed here: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config key '{where}' has value {error.instance!r}; choose one of: {allowed}"
    if error.validator == "type":
        return (
            f"config key '{where}' must be of type {error.validator_value}, got {error.instance!r}"
        )
    return f"config key '{where}': {error.message}"


def validate_run_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``raw`` against the run schema and return a new dict with defaults filled in.

    Raises :class:`ConfigError` with a one-line message naming the offending key.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"run config must be a mapping, got {type(raw).__name__}")
    data = copy.deepcopy(raw)
    schema = run_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    _fill_defaults(data, schema)
    return data


def load_yaml(path: str | Path) -> Any:
    """Load a YAML file, turning syntax errors into a one-line :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass an existing YAML file")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML in '{p}'{where}: {problem}; fix the syntax") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` (value parsed as YAML) into a nested dict."""
    if "=" not in text:
        raise ConfigError(
            f"override '{text}' must look like section.key=value, e.g. train.epochs=5"
        )
    dotted, value = text.split("=", 1)
    keys = dotted.strip().split(".")
    nested: dict[str, Any] = {keys[-1]: yaml.safe_load(value)}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def config_hash(cfg: dict[str, Any]) -> str:
    """A short stable hash of a (validated) config: sha256 of its canonical JSON."""
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _Section:
    """Attribute access over one validated config section."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


@dataclass
class RunConfig:
    """Validated run configuration with attribute access (``cfg.model.activation``)."""

    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raw = validate_run_config(self.raw)
        for name in SECTIONS:
            setattr(self, name, _Section(self.raw[name]))

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of sections")
        for text in overrides or []:
            data = deep_merge(data, parse_override(text))
        return cls(data)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    @property
    def hash(self) -> str:
        return config_hash(self.raw)

    # Typed shortcuts for the settings every module needs.
    model: Any = field(init=False, repr=False)
    data: Any = field(init=False, repr=False)
    augment: Any = field(init=False, repr=False)
    eval: Any = field(init=False, repr=False)
    train: Any = field(init=False, repr=False)
    runtime: Any = field(init=False, repr=False)
    telemetry: Any = field(init=False, repr=False)
