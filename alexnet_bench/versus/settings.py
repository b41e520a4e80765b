"""The settings that differ between paired runs, classified as the workflow's rerun rule does.

A run's recorded config splits (:func:`~alexnet_bench.config.split_identity`) into its
``result`` keys, the ones the config hash covers and a change of which reruns a cell, and its
``provenance`` keys (data location, progress interval, which weights are kept), which never
change a result. Both are listed, separately. Where both records carry ``identity.data`` (a
digest of the data the run read), a difference there is listed too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..collect import Run
from ..config import SECTIONS, split_identity
from .pairing import Pair

#: what a listed difference is
RESULT, PROVENANCE, DATA = "result", "provenance", "data"
#: how a difference in the records' data digests (their identity block) is listed
DATA_KEY = "data digest (identity)"


@dataclass(frozen=True)
class SettingDiff:
    """One setting that differs in at least one pair of runs."""

    key: str  # dotted, e.g. runtime.channels_last
    kind: str  # result | provenance | data
    base: str  # BASE's value(s), distinct ones joined
    new: str
    cells: int  # pairs in which it differs

    @property
    def result_relevant(self) -> bool:
        return self.kind in (RESULT, DATA)


def recorded_config(run: Run) -> dict[str, Any]:
    """The run's config as its record holds it (typed sections back to a dict)."""
    cfg = run.record.config
    return {name: dataclasses.asdict(getattr(cfg, name)) for name in SECTIONS}


def _flat(parts: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{name}.{key}": value
        for name, values in parts.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


def show(value: Any, limit: int = 60) -> str:
    """A setting's value as text (JSON for mappings and lists, cut at ``limit``)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _joined(values: Iterable[str]) -> str:
    return " | ".join(sorted(set(values)))


def _data_text(data: Any) -> dict[str, Any]:
    """A recorded data identity without its empty fields."""
    return {k: v for k, v in dataclasses.asdict(data).items() if v is not None}


def setting_diffs(pairs: Iterable[Pair]) -> list[SettingDiff]:
    """Every setting that differs within a pair of runs: result keys first, then the data
    digest, then provenance keys, each in name order."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pair in pairs:
        if pair.base is None or pair.new is None:
            continue
        base_parts = split_identity(recorded_config(pair.base))
        new_parts = split_identity(recorded_config(pair.new))
        for kind, b, n in zip((RESULT, PROVENANCE), base_parts, new_parts, strict=True):
            fb, fn = _flat(b), _flat(n)
            for key in sorted(set(fb) | set(fn)):
                if fb.get(key) != fn.get(key):
                    found.setdefault((kind, key), []).append((show(fb.get(key)), show(fn.get(key))))
        data_b, data_n = pair.base.record.identity.data, pair.new.record.identity.data
        if data_b.kind is not None and data_n.kind is not None and data_b != data_n:
            shown = (show(_data_text(data_b)), show(_data_text(data_n)))
            found.setdefault((DATA, DATA_KEY), []).append(shown)
    rank = {RESULT: 0, DATA: 1, PROVENANCE: 2}
    ordered = sorted(found.items(), key=lambda kv: (rank[kv[0][0]], kv[0][1]))
    return [
        SettingDiff(key, kind, _joined(b for b, _ in v), _joined(n for _, n in v), len(v))
        for (kind, key), v in ordered
    ]
