"""The study config as the report receives it (from --study-json or --study-yaml), normalised.

Two shapes are accepted: ``ablations`` as a mapping ``name -> {family, description,
overrides}``, or (as in ``config.yaml``) ``ablations`` as a list of names with the definitions
under ``ablation_defs``. The report works on the mapping form.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..config import load_yaml
from ..errors import ConfigError


def normalize_study(study: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of ``study`` whose ``ablations`` is a mapping name -> definition."""
    if study is None:
        return None
    if not isinstance(study, dict):
        raise ConfigError(f"the study config must be a mapping, got {type(study).__name__}")
    out = copy.deepcopy(study)
    ablations = out.get("ablations")
    defs = out.get("ablation_defs") if isinstance(out.get("ablation_defs"), dict) else {}
    if isinstance(ablations, list | tuple):
        out["ablations"] = {
            str(name): dict(defs.get(name) or {}) if isinstance(defs.get(name), dict) else {}
            for name in ablations
        }
    elif ablations is None and defs:
        out["ablations"] = {str(k): dict(v or {}) for k, v in defs.items()}
    elif ablations is not None and not isinstance(ablations, dict):
        raise ConfigError("study 'ablations' must be a list of names or a mapping")
    seeds = out.get("seeds")
    if seeds is not None and not isinstance(seeds, list | tuple):
        out["seeds"] = [seeds]
    return out


def load_study(json_arg: str | None = None, yaml_path: str | None = None) -> dict[str, Any] | None:
    """The study from ``--study-json`` (a JSON object, or a file holding one) or ``--study-yaml``."""
    if json_arg is not None:
        text = json_arg
        if not json_arg.lstrip().startswith("{"):
            path = Path(json_arg)
            if not path.is_file():
                raise ConfigError(
                    f"--study-json '{json_arg}' is neither a JSON object nor an existing file"
                )
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--study-json is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}); pass a JSON object or a file holding one"
            ) from None
    elif yaml_path is not None:
        data = load_yaml(yaml_path)
    else:
        return None
    if not isinstance(data, dict):
        raise ConfigError("the study config must be a mapping (preset, seeds, ablations, ...)")
    return data
