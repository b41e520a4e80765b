"""Run configuration: JSON-schema validation with defaults, typed sections and a stable hash.

The schema (``schemas/run.schema.yaml``) is the single source of truth for keys, types,
allowed values and defaults. :class:`RunConfig` validates a dict against it and exposes each
section as a frozen dataclass generated from the schema (:data:`SECTION_TYPES`: one field per
key, typed by the key's schema type), so the two cannot drift and a new schema key needs no
second edit. A key without a schema default (``model.arch``, ``train.stop_at_target``) is None
when absent.

Every key carries an ``identity`` class in the schema (:data:`IDENTITY_CLASSES`): ``result``
keys can change what a run records and make up its identity; ``provenance`` keys (locations, the
progress-line interval, which weights are kept) are recorded but never a reason to retrain. The
config hash (:func:`config_hash`) is the sha256 of the canonical JSON of the validated dict's
``result`` keys (defaults filled, keys without a default left out when absent); the typed
sections are a view and do not enter it.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import operator
import re
from dataclasses import dataclass, field, make_dataclass
from functools import cache, reduce
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError


@cache
def run_schema() -> dict[str, Any]:
    """The run-configuration JSON schema (parsed once)."""
    text = resources.files("alexnet_bench").joinpath("schemas/run.schema.yaml").read_text()
    return yaml.safe_load(text)


#: a key's identity class (the schema's ``identity`` keyword): ``result`` = part of the run's
#: identity; ``provenance`` = recorded, never a reason to retrain
IDENTITY_CLASSES = ("result", "provenance")


def key_classes(schema: dict[str, Any] | None = None) -> dict[tuple[str, str], str]:
    """(section, key) -> identity class of every key of the run schema.

    Raises :class:`ConfigError` naming a key without a valid class: a new key cannot be added
    to the schema without saying whether it is part of a run's identity.
    """
    schema = run_schema() if schema is None else schema
    classes: dict[tuple[str, str], str] = {}
    for name, sec in schema["properties"].items():
        for key, prop in sec.get("properties", {}).items():
            cls = prop.get("identity")
            if cls not in IDENTITY_CLASSES:
                raise ConfigError(
                    f"run schema key '{name}.{key}' has identity {cls!r}; give it one of "
                    f"{', '.join(IDENTITY_CLASSES)} in schemas/run.schema.yaml"
                )
            classes[(name, key)] = cls
    return classes


#: (section, key) -> identity class, checked when this module is imported
KEY_CLASSES: dict[tuple[str, str], str] = key_classes()


def split_identity(cfg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(result part, provenance part)`` of a run config dict: two dicts of the same sections
    (a section with no key of a class is left out of that part). Keys the schema does not know
    count as ``result`` (a validated config has none)."""
    result: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name, values in cfg.items():
        if not isinstance(values, dict):
            result[name] = copy.deepcopy(values)
            continue
        for key, value in values.items():
            part = provenance if KEY_CLASSES.get((name, key)) == "provenance" else result
            part.setdefault(name, {})[key] = copy.deepcopy(value)
    return result, provenance


def provenance_only(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` if it sets provenance keys only, else a one-line :class:`ConfigError`: the
    channel a workflow does not track as a rerun trigger must not change a result."""
    for name, values in settings.items():
        for key in values if isinstance(values, dict) else [None]:
            if KEY_CLASSES.get((name, key)) != "provenance":
                raise ConfigError(
                    f"--provenance-json sets '{name}.{key}', which is not a provenance key; "
                    "pass it in --config-json"
                )
    return settings


def provenance_keys() -> list[str]:
    """Dotted names of every provenance key (``data.root``, ...)."""
    return [f"{s}.{k}" for (s, k), cls in KEY_CLASSES.items() if cls == "provenance"]


#: the run config's sections, in schema order (model, data, augment, eval, train, runtime, ...)
SECTIONS: tuple[str, ...] = tuple(run_schema()["properties"])
_JSON_TYPES: dict[str, type] = {
    "integer": int,
    "number": float,
    "boolean": bool,
    "string": str,
    "null": type(None),
    "object": dict,
    "array": list,
}


def _python_type(prop: dict[str, Any]) -> Any:
    """The Python type of a schema property's values (a union for enums and type lists); keys
    without a schema default may be absent, so they are optional."""
    if "enum" in prop:
        kinds = {type(v) for v in prop["enum"]}
    else:
        names = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        kinds = {_JSON_TYPES[name] for name in names}
    if "default" not in prop:
        kinds.add(type(None))
    return reduce(operator.or_, sorted(kinds, key=lambda t: (t is type(None), t.__name__)))


def _section_type(name: str) -> type:
    """A frozen dataclass with one field per key of the schema's section ``name``."""
    props = run_schema()["properties"][name]["properties"]
    fields = [(key, _python_type(prop), field(default=None)) for key, prop in props.items()]
    return make_dataclass(f"{name.capitalize()}Config", fields, frozen=True)


#: section name -> its typed dataclass, generated from schemas/run.schema.yaml
SECTION_TYPES: dict[str, type] = {name: _section_type(name) for name in SECTIONS}


def section(name: str, values: dict[str, Any] | None) -> Any:
    """The typed section ``name`` of ``values`` (keys outside the schema are ignored; absent
    ones are None)."""
    cls = SECTION_TYPES[name]
    known = run_schema()["properties"][name]["properties"]
    return cls(**{k: v for k, v in (values or {}).items() if k in known})


def _fill_defaults(instance: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def _is_integer(_checker: Any, instance: Any) -> bool:
    """Integers only: JSON Schema would also accept ``2.0``, which ``range()`` then rejects."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _fix(where: str, wanted: str, schema: dict[str, Any]) -> str:
    """``; set train.lr to a number > 0 (default: 0.01)``."""
    default = schema.get("default")
    shown = (
        "" if default is None or isinstance(default, dict) else f" (default: {json.dumps(default)})"
    )
    return f"; set {where} to {wanted}{shown}"


def _bound(error: jsonschema.ValidationError) -> str:
    op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    return f"{op[str(error.validator)]} {error.validator_value}"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the offending key, what is wrong with it and how to fix it."""
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where_key = ".".join([*map(str, error.absolute_path), extra[0]]) if extra else where
        close = difflib.get_close_matches(extra[0], allowed, n=1) if extra else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown config key '{where_key}'{hint}; allowed here: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config key '{where}' has value {error.instance!r}; set it to one of: {allowed}"
    if error.validator == "type":
        types = (
            error.validator_value
            if isinstance(error.validator_value, list)
            else [error.validator_value]
        )
        wanted = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        got = f"{error.instance!r} ({type(error.instance).__name__})"
        return (
            f"config key '{where}' must be {wanted}, got {got}{_fix(where, wanted, error.schema)}"
        )
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = _bound(error)
        return (
            f"config key '{where}' is {error.instance!r} but must be {bound}"
            f"{_fix(where, f'a value {bound}', error.schema)}"
        )
    return f"config key '{where}': {error.message}"


def _non_finite(data: Any, path: str = "") -> tuple[str, float] | None:
    """Dotted path and value of the first NaN/inf in ``data`` (schema bounds let them through)."""
    if isinstance(data, float) and not math.isfinite(data):
        return path, data
    if isinstance(data, dict):
        for key, value in data.items():
            found = _non_finite(value, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    return None


#: model.init values the Figure 1 net (``arch: layers18pct``, cifar_net.Layers18pct) accepts
LAYERS18PCT_INITS = ("auto", "paper")


def effective_stored_size(image_size: int, stored_size: int | None) -> int:
    """The size images are stored at before cropping: as configured, else the paper's ratio
    ``round(image_size * 256 / 224)``."""
    return stored_size if stored_size is not None else round(image_size * 256 / 224)


def _check_consistency(cfg: dict[str, Any]) -> None:
    """Cross-key rules a per-key schema cannot express (checked before any data is loaded)."""
    d, t, rt = cfg["data"], cfg["train"], cfg["runtime"]
    stored = effective_stored_size(d["image_size"], d["stored_size"])
    if stored < d["image_size"]:
        raise ConfigError(
            f"data.stored_size ({stored}) is smaller than data.image_size ({d['image_size']}); "
            "raise data.stored_size or set it to null"
        )
    if d["source"] != "synthetic" and not d["root"]:
        raise ConfigError(
            f"data.source={d['source']} needs data.root; set data.root to the local data directory"
        )
    if d.get("cache") and d["source"] != "imagefolder":
        raise ConfigError(
            f"data.cache is a prepared image-folder cache, but data.source={d['source']}; "
            "remove data.cache or set data.source: imagefolder"
        )
    if d["source"] == "synthetic":
        n_train = min(d["num_train"], d["max_train"] or d["num_train"])
        if t["batch_size"] > n_train:
            raise ConfigError(
                f"train.batch_size={t['batch_size']} exceeds the {n_train} synthetic training "
                "images (data.num_train / data.max_train); lower train.batch_size or add images"
            )
    if t["lr_schedule"] == "plateau" and t["lr_gamma"] >= 1:
        raise ConfigError(
            f"train.lr_schedule=plateau divides the lr by 1/lr_gamma, so train.lr_gamma must be "
            f"< 1 (got {t['lr_gamma']}); lower train.lr_gamma, e.g. 0.1"
        )
    m = cfg["model"]
    if m.get("arch") == "layers18pct" and m["init"] not in LAYERS18PCT_INITS:
        raise ConfigError(
            f"model.init={m['init']} does not apply to model.arch=layers18pct; use auto "
            "(variance-preserving) or paper (cuda-convnet layers-18pct.cfg's initW)"
        )
    if rt["gpus"] > 1 and rt["parallel"] == "model" and m.get("arch", "alexnet") != "alexnet":
        raise ConfigError(
            f"runtime.parallel=model splits AlexNet's two towers; model.arch={m['arch']} has none; "
            "use runtime.parallel=ddp or runtime.gpus=1"
        )
    if (
        rt["gpus"] > 1
        and rt["parallel"] == "model"
        and (rt["gpus"] != 2 or m["variant"] != "paper" or not m["grouped"])
    ):
        raise ConfigError(
            f"runtime.parallel=model is the paper's two-tower split: it needs runtime.gpus=2 "
            f"(got {rt['gpus']}), model.variant=paper (got {m['variant']}) and model.grouped=true "
            f"(got {str(m['grouped']).lower()}); change those or use runtime.parallel=ddp"
        )
    if rt["gpus"] > 1 and rt["parallel"] == "ddp" and t["batch_size"] % rt["gpus"]:
        raise ConfigError(
            f"train.batch_size={t['batch_size']} is not divisible by runtime.gpus={rt['gpus']} "
            "(DDP splits the global batch evenly); pick a multiple of runtime.gpus"
        )


def validate_run_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``raw`` against the run schema and return a new dict with defaults filled in.

    Raises :class:`ConfigError` with a one-line message naming the offending key and the fix:
    schema violations, NaN/inf numbers and inconsistent combinations (see
    :func:`_check_consistency`).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"run config must be a mapping, got {type(raw).__name__}")
    data = copy.deepcopy(raw)
    schema = run_schema()
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    bad = _non_finite(data)
    if bad is not None:
        raise ConfigError(f"config key '{bad[0]}' is {bad[1]}; set it to a finite number")
    _fill_defaults(data, schema)
    _check_consistency(data)
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


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_WORDS = {"true": True, "false": False, "null": None, "~": None}


def typed_scalar(text: str) -> Any:
    """``'3'`` -> 3, ``'1e-3'`` -> 0.001, ``'true'`` -> True, ``'null'`` -> None; others unchanged.

    Deliberately narrower than YAML 1.1: ``yes``/``no``/``on``/``off`` stay strings (they are
    values of ``data.in_memory``), and so does anything else that is not a plain number.
    """
    word = text.strip()
    if _INTEGER.fullmatch(word):
        return int(word)
    if _NUMBER.fullmatch(word):
        return float(word)
    return _WORDS.get(word.lower(), text)


def retype_overrides(
    config: dict[str, Any], overrides: dict[str, Any], nested: bool = False
) -> None:
    """Give typed values to the strings ``snakemake --config`` leaves in nested overrides.

    Snakemake parses ``--config 'run={train: {epochs: 3}}' seeds=[0,1]`` with YAML's
    BaseLoader, so ``3`` and ``0`` arrive as strings (top-level scalars are typed already).
    Only leaves named in ``overrides`` (the command-line part of the merged ``config``) are
    converted, in place.
    """
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            retype_overrides(config[key], value, nested=True)
        elif isinstance(value, list) and isinstance(config.get(key), list):
            config[key] = [typed_scalar(v) if isinstance(v, str) else v for v in config[key]]
        elif nested and isinstance(value, str) and isinstance(config.get(key), str):
            config[key] = typed_scalar(config[key])


def config_hash(cfg: dict[str, Any]) -> str:
    """A short stable hash of a (validated) config's result keys: sha256 of their canonical
    JSON. Provenance keys (:func:`split_identity`) never enter it."""
    result = split_identity(cfg)[0]
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordConfig:
    """The typed sections of a config as a run record holds it (read leniently, not validated:
    an older record may lack keys, which are then None)."""

    model: Any
    data: Any
    augment: Any
    eval: Any
    train: Any
    runtime: Any
    telemetry: Any


def record_config(raw: dict[str, Any] | None) -> RecordConfig:
    """The sections of a recorded config (``metrics.json`` ``config``; None: all empty)."""
    raw = raw if isinstance(raw, dict) else {}
    return RecordConfig(
        **{
            name: section(name, raw.get(name) if isinstance(raw.get(name), dict) else None)
            for name in SECTIONS
        }
    )


@dataclass
class RunConfig:
    """Validated run configuration with typed sections (``cfg.model.activation``)."""

    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.raw = validate_run_config(self.raw)
        for name in SECTIONS:
            setattr(self, name, section(name, self.raw[name]))

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

    # The typed sections (instances of SECTION_TYPES[name]), set from the validated dict.
    model: Any = field(init=False, repr=False)
    data: Any = field(init=False, repr=False)
    augment: Any = field(init=False, repr=False)
    eval: Any = field(init=False, repr=False)
    train: Any = field(init=False, repr=False)
    runtime: Any = field(init=False, repr=False)
    telemetry: Any = field(init=False, repr=False)
