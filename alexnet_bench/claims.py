"""The paper's quantitative claims, as data: what the report compares the measured runs with.

Each :class:`Claim` names the paper's figure/section, the setting it was measured in and one or
more :class:`Comparison` rows. A comparison is ``a - b`` (``kind="diff"``, in percentage points)
or ``a / b`` (``kind="ratio"``) of a per-run metric (a :func:`.collect.run_value` name) between
two ablations. ``"@baseline"`` stands for the study's baseline ablation; a tuple of candidates
means "the first one present in the study". Beside the paper's value, ``others`` lists what
independent studies measured (:class:`Finding`: source, link, verbatim quote, numbers).

The paper's claims are ``paper_claims.yaml``; a study adds or replaces claims in config.yaml's
``claims:`` list. Both are validated against ``schemas/claims.schema.yaml`` (light: the
workflow checks a study's claims before any job starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .collect import RUN_VALUES
from .errors import ConfigError

BASELINE = "@baseline"


@dataclass(frozen=True)
class Comparison:
    """One measured quantity behind a claim: ``a - b`` or ``a / b`` of a per-run metric."""

    label: str
    metric: str  # a run_value() name
    kind: str  # "diff" (points) or "ratio"
    a: tuple[str, ...]
    b: tuple[str, ...]
    paper_effect: float | None  # the paper's value in the same units; None = qualitative
    paper_text: str
    expect: int  # +1: a - b > 0 (ratio > 1); -1: < 0 (ratio < 1); 0: no effect expected
    note: str | None = None  # always-shown caveat
    others: tuple[Finding, ...] = ()  # what independent studies measured


@dataclass(frozen=True)
class Finding:
    """An independent measurement of the same comparison, quoted from its source."""

    source: str
    url: str
    setting: str
    quote: str  # the source's words or table row, verbatim
    a: float | None  # the source's numbers for the two arms, in the comparison's units
    b: float | None
    effect: float | None  # a - b (ratio: a / b) from those numbers; None = qualitative
    text: str  # the finding as shown in the report

    def shown(self) -> str:
        return f"{self.text} ({self.source}, {self.setting})"


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    reference: str
    paper_setting: str
    paper_source: str  # data set the paper used: "imagenet" or "cifar10"
    paper_image_size: int | None
    comparisons: tuple[Comparison, ...]


#: the paper's claims, as data (validated against schemas/claims.schema.yaml)
PAPER_CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")


@cache
def _schema() -> dict[str, Any]:
    with resources.files("alexnet_bench").joinpath("schemas/claims.schema.yaml").open() as fh:
        return yaml.safe_load(fh)


def parse_claims(entries: Any, where: str) -> tuple[Claim, ...]:
    """Validate a list of claim entries (the paper_claims.yaml format) and build the claims.

    Raises :class:`ConfigError` with one line naming ``where`` and the offending entry."""
    if entries is None:
        return ()
    try:
        jsonschema.validate(entries, _schema())
    except jsonschema.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        raise ConfigError(
            f"{where}{'.' + path if path else ''}: {exc.message}; see "
            "alexnet_bench/schemas/claims.schema.yaml"
        ) from None
    claims = []
    for entry in entries:
        comparisons = []
        for cmp in entry["comparisons"]:
            if cmp["metric"] not in RUN_VALUES:
                raise ConfigError(
                    f"{where}: claim '{entry['id']}' uses unknown metric '{cmp['metric']}'; "
                    f"choose from {', '.join(RUN_VALUES)}"
                )
            comparisons.append(
                Comparison(
                    label=cmp["label"],
                    metric=cmp["metric"],
                    kind=cmp["kind"],
                    a=tuple(cmp["a"]),
                    b=tuple(cmp["b"]),
                    paper_effect=cmp.get("paper_effect"),
                    paper_text=cmp["paper_text"],
                    expect=int(cmp["expect"]),
                    note=cmp.get("note"),
                    others=tuple(Finding(**o) for o in cmp.get("others") or ()),
                )
            )
        claims.append(
            Claim(
                id=entry["id"],
                statement=entry["statement"],
                reference=entry["reference"],
                paper_setting=entry["paper_setting"],
                paper_source=entry["paper_source"],
                paper_image_size=entry.get("paper_image_size"),
                comparisons=tuple(comparisons),
            )
        )
    return tuple(claims)


def load_paper_claims() -> tuple[Claim, ...]:
    """The paper's claims shipped with the package (paper_claims.yaml)."""
    return parse_claims(yaml.safe_load(PAPER_CLAIMS_FILE.read_text()), PAPER_CLAIMS_FILE.name)


def study_claims(study: dict[str, Any] | None) -> tuple[Claim, ...]:
    """The paper's claims with the study's ``claims:`` applied: an entry whose id matches a
    paper claim replaces it, any other is added after them."""
    extra = parse_claims((study or {}).get("claims"), "config.yaml claims")
    by_id = {c.id: c for c in extra}
    merged = [by_id.pop(c.id, c) for c in CLAIMS]
    return (*merged, *[c for c in extra if c.id in by_id])


def claim_arms(claims: Sequence[Claim], claim_id: str) -> tuple[str, ...]:
    """The candidate ablations of the first comparison's ``a`` side of claim ``claim_id``."""
    claim = next((c for c in claims if c.id == claim_id), None)
    return claim.comparisons[0].a if claim else ()


CLAIMS: tuple[Claim, ...] = load_paper_claims()
