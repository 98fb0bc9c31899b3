"""Denial rules as data: which category an adjustment falls in, and what to draft for it.

The rules live in ``rules/denials/`` (``carc.yaml``: the base mapping of every CARC;
``overrides.yaml``: narrower rules over a group code or remark codes; ``actions.yaml``:
what each category drafts), read by :func:`practiceflow.processors.rules.load_rules`. A
practice adds or replaces rules with files of the same shape in ``<rules_dir>/denials/``.

Why a compiled index: categorizing is the hot path of every 835 (thousands of
adjustments per file). The rules are turned once into a dict ``CARC -> candidate
rules, most specific first``, so one adjustment costs a dict lookup and, at most, a
few set tests for group code and RARC — no scanning of the rule list.

Precedence, most specific first: a rule with remark codes (RARC) and a group code, a
rule with remark codes, a rule with a group code, the base rule. Among equals the
first loaded wins (file order; overrides after the base). A CARC in no rule at all
(published after the table) goes to ``needs_person`` under rule ``denials.carc.unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

from practiceflow.processors.rules import Overrides, Rule, load_rules

CATEGORIES: tuple[str, ...] = (
    "eligibility_coverage",
    "authorization_missing",
    "coding_modifier",
    "bundling",
    "medical_necessity",
    "missing_information",
    "timely_filing",
    "duplicate",
    "coordination_of_benefits",
    "contractual_obligation",
    "patient_responsibility",
    "needs_person",
)
ACTIONS: tuple[str, ...] = ("corrected_claim", "appeal", "transfer_to_patient", "write_off", "review")
GROUP_CODES: frozenset[str] = frozenset({"CO", "CR", "OA", "PI", "PR"})
# Categories where the money is recoverable from the payer when the action succeeds.
RECOVERABLE: frozenset[str] = frozenset(
    {
        "eligibility_coverage",
        "authorization_missing",
        "coding_modifier",
        "bundling",
        "medical_necessity",
        "missing_information",
        "timely_filing",
        "coordination_of_benefits",
        "needs_person",
    }
)


class DenialRule(Rule):
    """One denial rule. A category rule maps CARCs (optionally only under these group codes,
    or only with one of these RARCs) to a category; an action rule (``with_fix`` set) says
    what a category drafts. One model for both, as ``load_rules`` reads one per workflow."""

    category: str
    carcs: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    rarcs: tuple[str, ...] = ()
    core_scenario: int | None = Field(default=None, description="CAQH CORE vPR.1.0 business scenario 1-4")
    with_fix: str | None = Field(default=None, description="action rule: the action when the claim store shows a fix")
    otherwise: str | None = Field(default=None, description="action rule: the action without a fix")
    priority: str = "routine"

    @field_validator("carcs", "groups", "rarcs", mode="before")
    @classmethod
    def _as_strings(cls, v: Any) -> tuple[str, ...]:
        return tuple(str(x).strip().upper() for x in (v or ()))

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str) -> str:
        if v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r}; one of {', '.join(CATEGORIES)}")
        return v

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [g for g in v if g not in GROUP_CODES]
        if bad:
            raise ValueError(f"unknown group code(s) {bad}")
        return v

    @field_validator("with_fix", "otherwise")
    @classmethod
    def _known_action(cls, v: str | None) -> str | None:
        if v is not None and v not in ACTIONS:
            raise ValueError(f"unknown action {v!r}; one of {', '.join(ACTIONS)}")
        return v

    @property
    def is_action(self) -> bool:
        return self.with_fix is not None

    @property
    def specificity(self) -> int:
        return (2 if self.rarcs else 0) + (1 if self.groups else 0)


UNKNOWN_RULE = DenialRule(
    id="denials.carc.unknown",
    version="1",
    category="needs_person",
    description="a CARC no rule names (newer than the table): a person decides",
    source="practiceflow",
)


@dataclass(frozen=True)
class DenialRules:
    """The compiled rule set: ``index[carc]`` = candidate rules, most specific first."""

    category_rules: tuple[DenialRule, ...]
    action_rules: dict[str, DenialRule]
    index: dict[str, tuple[DenialRule, ...]] = field(repr=False)

    def categorize(self, group: str, carc: str, rarcs: Iterable[str] = ()) -> DenialRule:
        """The rule that decides one adjustment (group code + CARC + the RARCs that apply to it)."""
        candidates = self.index.get(carc)
        if candidates is None:
            candidates = self.index.get(carc.strip().upper())
            if candidates is None:
                return UNKNOWN_RULE
        for rule in candidates:
            if rule.groups and group not in rule.groups:
                continue
            if rule.rarcs and not any(r in rule.rarcs for r in rarcs):
                continue
            return rule
        return UNKNOWN_RULE  # only when every rule for the CARC is conditional and none matched

    def action(self, category: str) -> DenialRule:
        return self.action_rules[category]


def compile_rules(category_rules: Sequence[DenialRule], action_rules: Sequence[DenialRule]) -> DenialRules:
    """Index the rules (a later rule with the same id replaces the earlier one) and check
    that every category has an action."""
    by_id: dict[str, DenialRule] = {}
    for r in category_rules:
        by_id[r.id] = r  # dict keeps first-insertion order; a replacement keeps its place
    rules = tuple(by_id.values())
    order = {r.id: i for i, r in enumerate(rules)}
    index: dict[str, list[DenialRule]] = {}
    for r in rules:
        for carc in r.carcs:
            index.setdefault(carc, []).append(r)
    compiled = {c: tuple(sorted(rs, key=lambda r: (-r.specificity, order[r.id]))) for c, rs in index.items()}
    actions = {a.category: a for a in action_rules}
    missing = [c for c in CATEGORIES if c not in actions]
    if missing:
        raise ValueError(f"denial actions: no action rule for {missing}")
    return DenialRules(rules, actions, compiled)


def load_denial_rules(overrides_dir: Overrides = None) -> DenialRules:
    """The shipped rules (``rules/denials``) plus a practice's own (``<overrides_dir>/denials``),
    validated and compiled. A practice rule with a shipped id replaces it (with a new version)."""
    ruleset = load_rules("denials", DenialRule, overrides_dir)
    return compile_rules([r for r in ruleset if not r.is_action], [r for r in ruleset if r.is_action])
