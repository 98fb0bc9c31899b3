"""Refill protocols as data: the rule model, and everything triage loads once.

``rules/refill/protocols.yaml`` holds one :class:`RefillRule` per drug class;
``drugs.yaml`` and ``controlled.yaml`` are reference tables (``processors/rules.py``
loads and validates all three, with a practice's overrides from ``settings.rules_dir``).
:func:`load_refill_rules` bundles them into a :class:`RefillRules`, built once per worker:
the drug table is indexed there, not per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from practiceflow.processors.rules import Overrides, Rule, load_rules, load_table, load_table_layers

from .drugs import DrugTable, normalize_name

WORKFLOW = "refill"


class Monitoring(BaseModel):
    """A lab or vital sign a protocol requires: any of ``loinc``, within ``within_days``,
    inside [``low``, ``high``] where given, and not flagged abnormal by the sender unless
    ``use_lab_flags`` is false (a diabetic's A1c is always above the lab's normal range)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    loinc: tuple[str, ...] = Field(min_length=1)
    within_days: int = Field(gt=0, le=3660)
    low: float | None = None
    high: float | None = None
    unit: str | None = None
    use_lab_flags: bool = True

    @model_validator(mode="after")
    def _range(self) -> Monitoring:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"{self.name}: low {self.low} is above high {self.high}")
        return self

    @property
    def range_text(self) -> str | None:
        return _range_text(self.low, self.high)


@lru_cache(maxsize=1024)
def _range_text(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    lo = "" if low is None else f"{low:g}"
    hi = "" if high is None else f"{high:g}"
    return f">= {lo}" if not hi else (f"<= {hi}" if not lo else f"{lo}-{hi}")


class RefillRule(Rule):
    """One drug class's refill protocol (see the header of rules/refill/protocols.yaml)."""

    drug_class: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    visit_within_days: int = Field(gt=0, le=3660)
    labs: tuple[Monitoring, ...] = ()
    vitals: tuple[Monitoring, ...] = ()


class MonitoringPlan(NamedTuple):
    """A rule's lab or vital as plain data, derived once at load: triage reads these for every
    request, and plain tuples are cheaper to read than model attributes and properties."""

    kind: str  # lab | vital
    name: str
    loinc: tuple[str, ...]
    within_days: int
    low: float | None
    high: float | None
    unit: str | None
    use_lab_flags: bool
    range_text: str | None
    want: str  # "potassium within 365 days": the missing line


def plan_for(rule: RefillRule) -> tuple[MonitoringPlan, ...]:
    return tuple(
        MonitoringPlan(
            kind,
            m.name,
            m.loinc,
            m.within_days,
            m.low,
            m.high,
            m.unit,
            m.use_lab_flags,
            m.range_text,
            f"{m.name} within {m.within_days} days",
        )
        for kind, items in (("lab", rule.labs), ("vital", rule.vitals))
        for m in items
    )


@dataclass(frozen=True)
class RefillRules:
    """What the refill step reads: protocols by drug class and the drug table."""

    by_class: Mapping[str, RefillRule]
    drugs: DrugTable
    drug_table_version: str
    controlled_table_version: str
    files: tuple[str, ...] = ()
    plans: Mapping[str, tuple[MonitoringPlan, ...]] = field(default_factory=dict)  # drug class -> monitoring

    def __post_init__(self) -> None:
        if not self.plans:
            object.__setattr__(self, "plans", {c: plan_for(r) for c, r in self.by_class.items()})


def build_rules(
    rules: Sequence[RefillRule],
    drugs: Sequence[Mapping[str, Any]],
    controlled: Sequence[Mapping[str, Any]],
    versions: tuple[str, str] = ("", ""),
) -> RefillRules:
    """The bundle from validated rules and table entries (checked: one rule per class, every class covered)."""
    by_class: dict[str, RefillRule] = {}
    for r in rules:
        if r.drug_class in by_class:
            raise ValueError(f"rules {by_class[r.drug_class].id} and {r.id} both cover drug class {r.drug_class}")
        by_class[r.drug_class] = r
    table = DrugTable(*_controlled_first(drugs, controlled))
    unknown = {e.drug_class for e in table.entries if e.drug_class and e.drug_class not in by_class}
    if unknown:
        # a drug with a class no rule covers would silently never be routine: say so at load time
        raise ValueError(f"drug classes without a protocol rule: {', '.join(sorted(unknown))}")
    return RefillRules(
        by_class=by_class, drugs=table, drug_table_version=versions[0], controlled_table_version=versions[1]
    )


def _keys(entry: Mapping[str, Any]) -> set[str]:
    keys = {"i:" + normalize_name(str(entry["ingredient"]))}
    if entry.get("rxcui"):
        keys.add(f"r:{entry['rxcui']}")
    return keys


def _controlled_first(
    drugs: Sequence[Mapping[str, Any]], controlled: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(drugs, controlled) where a controlled entry wins over a drug-table entry of the same
    ingredient or RxCUI: a practice scheduling gabapentin (listed in drugs.yaml) makes it
    controlled instead of failing start-up with a duplicate RxCUI. The drug entry's brand
    names and aliases move to the controlled entry, so "neurontin" is flagged too."""
    ctrl = [dict(c) for c in controlled]
    owner: dict[str, int] = {}
    for i, c in enumerate(ctrl):
        for k in _keys(c):
            owner.setdefault(k, i)
    kept: list[dict[str, Any]] = []
    for d in drugs:
        hit = next((owner[k] for k in _keys(d) if k in owner), None)
        if hit is None:
            kept.append(dict(d))
            continue
        c = ctrl[hit]
        c["aliases"] = [*(c.get("aliases") or ()), *(d.get("brands") or ()), *(d.get("aliases") or ())]
    return kept, ctrl


def merge_controlled(
    shipped: Sequence[Mapping[str, Any]], practice: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The federal list plus a practice's additions (state schedules). A practice's file ADDS
    to the shipped list and never replaces it: dropping the federal CII-CV entries would let a
    controlled drug lose its flag (triage.py: a rule file cannot make a controlled substance
    routine). A practice entry for an ingredient or RxCUI already shipped is ignored: the
    shipped (federal) entry stays."""
    merged = [dict(e) for e in shipped]
    taken: set[str] = set().union(*(_keys(e) for e in merged)) if merged else set()
    for e in practice:
        if _keys(e) & taken:
            continue
        merged.append(dict(e))
        taken |= _keys(e)
    return merged


def load_refill_rules(overrides_dir: Overrides = None) -> RefillRules:
    """The shipped refill protocols and tables, with the override layers applied (the
    controlled list is the union of the shipped and every layer's, see :func:`merge_controlled`)."""
    ruleset = load_rules(WORKFLOW, RefillRule, overrides_dir)
    drugs = load_table(WORKFLOW, "refill.drugs", overrides_dir)
    shipped, added = load_table_layers(WORKFLOW, "refill.controlled", overrides_dir)
    controlled = merge_controlled(shipped.entries, [e for table in added for e in table.entries])
    version = "+".join([shipped.version, *(t.version for t in added)])
    bundle = build_rules(
        list(ruleset.rules),
        [dict(e) for e in drugs.entries],
        controlled,
        (drugs.version, version),
    )
    return RefillRules(
        by_class=bundle.by_class,
        drugs=bundle.drugs,
        drug_table_version=bundle.drug_table_version,
        controlled_table_version=bundle.controlled_table_version,
        files=ruleset.files,
    )
