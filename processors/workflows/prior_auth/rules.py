"""Prior-authorization rules as data: payer rule tables and criteria sets (``rules/prior_auth``).

One model for both kinds (``load_rules`` reads one model per workflow, as the denial
rules do): a ``payer_rule`` says whether a payer / plan type / code / place of service
needs authorization and which ``criteria_set`` applies; a ``criteria_set`` lists the
criteria, each with its own id, version and source and "what would satisfy it".

Why compiled: detection runs on every order. The payer rules are indexed once by code
(``code -> candidate rules, most specific first``), so an order costs a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from practiceflow.processors.rules import Overrides, Rule, load_rules

CATEGORIES: tuple[str, ...] = ("advanced_imaging", "sleep_study", "dme", "home_oxygen", "specialty_drug", "other")
CRITERION_KINDS: tuple[str, ...] = (
    "diagnosis",
    "conservative_therapy",
    "prior_imaging",
    "lab",
    "medication_tried",
    "documentation",
)
COMPARATORS: tuple[str, ...] = ("<", "<=", ">", ">=")


class Criterion(BaseModel):
    """One criterion of a set; ``satisfy`` is what the clinician is shown when it is not met."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$")
    version: str = Field(min_length=1)
    source: str = Field(min_length=1)
    kind: str
    text: str
    satisfy: str
    codes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    min_weeks: int | None = None
    min_count: int = 1
    lookback_days: int | None = None
    comparator: str | None = None
    threshold: float | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in CRITERION_KINDS:
            raise ValueError(f"unknown criterion kind {v!r}; one of {', '.join(CRITERION_KINDS)}")
        return v

    @field_validator("comparator")
    @classmethod
    def _known_comparator(cls, v: str | None) -> str | None:
        if v is not None and v not in COMPARATORS:
            raise ValueError(f"unknown comparator {v!r}; one of {', '.join(COMPARATORS)}")
        return v

    @field_validator("names", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> tuple[str, ...]:
        return tuple(str(x).strip().lower() for x in (v or ()))

    @model_validator(mode="after")
    def _comparable(self) -> Criterion:
        if (self.comparator is None) != (self.threshold is None):
            raise ValueError("comparator and threshold go together")
        if self.kind != "documentation" and not (self.codes or self.names):
            raise ValueError(f"a {self.kind} criterion needs codes or names to look for")
        return self


class PriorAuthRule(Rule):
    """A payer rule (``kind: payer_rule``), a criteria set (``kind: criteria_set``) or an
    eligibility rule (``kind: eligibility_rule``: what a 271 saying "authorization required"
    (EB11 Y) for a service type opens, for which payers and service types)."""

    kind: Literal["payer_rule", "criteria_set", "eligibility_rule"]
    # payer rule
    category: str = "other"
    payers: tuple[str, ...] = ("*",)
    plan_types: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    places_of_service: tuple[str, ...] = ()
    needs_auth: bool = True
    criteria_set: str | None = None
    service_type: str = "1"
    # eligibility rule: the EB03 service types it covers (empty: any)
    service_types: tuple[str, ...] = ()
    # criteria set
    title: str = ""
    criteria: tuple[Criterion, ...] = ()

    @field_validator("codes", "places_of_service", "service_types", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> tuple[str, ...]:
        return tuple(str(x).strip().upper() for x in (v or ()))

    @field_validator("names", "payers", "plan_types", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> tuple[str, ...]:
        return tuple(str(x).strip().lower() for x in (v or ()))

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str) -> str:
        if v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r}; one of {', '.join(CATEGORIES)}")
        return v

    @model_validator(mode="after")
    def _shape(self) -> PriorAuthRule:
        if self.kind == "payer_rule":
            if not (self.codes or self.names):
                raise ValueError("a payer rule names the codes (or drug names) it covers")
            if self.needs_auth and not self.criteria_set:
                raise ValueError("a payer rule that needs authorization names its criteria_set")
        elif self.kind == "criteria_set" and not self.criteria:
            raise ValueError("a criteria set lists its criteria")
        return self

    @property
    def specificity(self) -> int:
        return (
            (4 if "*" not in self.payers else 0) + (2 if self.plan_types else 0) + (1 if self.places_of_service else 0)
        )


@dataclass(frozen=True)
class PriorAuthRules:
    """The compiled rules: payer rules indexed by code and by drug name, criteria sets by id."""

    by_code: Mapping[str, tuple[PriorAuthRule, ...]]
    by_name: Mapping[str, tuple[PriorAuthRule, ...]]
    criteria_sets: Mapping[str, PriorAuthRule]
    payer_rules: tuple[PriorAuthRule, ...] = field(default=(), repr=False)
    eligibility_rules: tuple[PriorAuthRule, ...] = field(default=(), repr=False)

    def eligibility_rule(self, *, service_type: str, payer: Sequence[str] = ()) -> PriorAuthRule | None:
        """The most specific eligibility rule for a 271 benefit's service type and payer (a named
        payer over "*", a listed service type over any), or None when none covers it."""
        payers = {p.strip().lower() for p in payer if p}
        best: PriorAuthRule | None = None
        for r in self.eligibility_rules:
            if "*" not in r.payers and not payers & set(r.payers):
                continue
            if r.service_types and service_type.strip().upper() not in r.service_types:
                continue
            rank = (4 if "*" not in r.payers else 0) + (1 if r.service_types else 0)
            if best is None or rank > (4 if "*" not in best.payers else 0) + (1 if best.service_types else 0):
                best = r
        return best

    def match(
        self,
        *,
        codes: Sequence[str],
        names: Sequence[str] = (),
        payer: Sequence[str] = (),
        plan: str | None = None,
        place_of_service: str | None = None,
    ) -> PriorAuthRule | None:
        """The most specific payer rule for an order, or None when no rule names its code.

        ``payer`` is the coverage's payer id and name (either may match a rule's ``payers``),
        ``plan`` its plan name (a rule's plan type must be a word of it). An order without a
        place of service matches rules for any place (the payer's strictest reading)."""
        candidates: list[PriorAuthRule] = []
        for c in codes:
            candidates.extend(self.by_code.get(c.strip().upper(), ()))
        low = " ".join(n.lower() for n in names)
        if low:
            for name, rules in self.by_name.items():
                if name in low:
                    candidates.extend(rules)
        payers = {p.strip().lower() for p in payer if p}
        plan_low = (plan or "").lower()
        best: PriorAuthRule | None = None
        for r in candidates:
            if "*" not in r.payers and not payers & set(r.payers):
                continue
            if r.plan_types and not any(t in plan_low for t in r.plan_types):
                continue
            if r.places_of_service and (place_of_service or "").upper() not in r.places_of_service:
                continue
            if best is None or r.specificity > best.specificity:
                best = r
        return best

    def criteria_for(self, rule: PriorAuthRule) -> PriorAuthRule:
        if rule.criteria_set is None or rule.criteria_set not in self.criteria_sets:
            raise KeyError(f"payer rule {rule.id} names unknown criteria set {rule.criteria_set!r}")
        return self.criteria_sets[rule.criteria_set]


def compile_rules(rules: Sequence[PriorAuthRule]) -> PriorAuthRules:
    """Index the payer rules (file order kept among equals) and check every criteria set exists."""
    sets = {r.id: r for r in rules if r.kind == "criteria_set"}
    payer_rules = tuple(r for r in rules if r.kind == "payer_rule")
    by_code: dict[str, list[PriorAuthRule]] = {}
    by_name: dict[str, list[PriorAuthRule]] = {}
    for r in payer_rules:
        if r.criteria_set is not None and r.criteria_set not in sets:
            raise ValueError(f"payer rule {r.id} names unknown criteria set {r.criteria_set!r}")
        for c in r.codes:
            by_code.setdefault(c, []).append(r)
        for n in r.names:
            by_name.setdefault(n, []).append(r)
    return PriorAuthRules(
        {k: tuple(v) for k, v in by_code.items()},
        {k: tuple(v) for k, v in by_name.items()},
        sets,
        payer_rules,
        tuple(r for r in rules if r.kind == "eligibility_rule"),
    )


def load_prior_auth_rules(overrides_dir: Overrides = None) -> PriorAuthRules:
    """The shipped rules (``rules/prior_auth``) plus each override layer's (``<layer>/prior_auth``)."""
    ruleset = load_rules("prior_auth", PriorAuthRule, overrides_dir)
    return compile_rules(list(ruleset))
