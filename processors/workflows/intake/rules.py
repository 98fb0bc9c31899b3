"""The intake workflow's rules as data (``rules/intake/*.yaml``), validated with pydantic.

Three kinds of file, all editable by a practice in ``<rules_dir>/intake/``:

* ``gaps.yaml`` — :class:`GapRule` rules (``rules:``): one per coverage gap the front desk
  must act on before the visit, plus ``intake.clean`` for a check with no gap. Each names
  the 271 fact it reads (``check``) and the X12 TR3 element it comes from (``source``).
* ``aaa_reject_reasons.yaml`` / ``aaa_follow_up.yaml`` — tables (``entries:``) of AAA03
  reject reasons (what the check becomes, what to do next) and AAA04 follow-up actions.
* ``payers.yaml`` — the payer table: the names a patient writes -> the payer id a 270 needs.

The loader refuses a file it cannot read (the worker does not start on broken rules), and
the checks below refuse a rule set that could leave a check without an outcome: every
``check`` must be known and ``intake.clean`` must exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from practiceflow.processors.rules import Overrides, Rule, RuleError, load_rules, load_table

WORKFLOW = "intake"

Check = Literal[
    "inactive",
    "plan_ended",
    "out_of_network",
    "not_covered",
    "prior_auth",
    "deductible_remaining",
    "coordination_of_benefits",
    "clean",
]
Outcome = Literal["eligible", "not_eligible", "could_not_determine"]


class GapRule(Rule):
    """One coverage-gap rule (or ``clean``) read from ``rules/intake/gaps.yaml``."""

    check: Check
    outcome: Outcome = Field(description="what the check is when this rule fires")
    priority: Literal["routine", "high", "urgent"] = "routine"
    due_hours: float = Field(default=24, ge=0, description="hours before the appointment the desk should act")
    threshold: float | None = Field(
        default=None, ge=0, description="deductible_remaining: USD at or above which it fires"
    )
    title: str
    follow_up: str


class AaaReason(BaseModel):
    """One AAA03 reject reason: its meaning, the check's outcome, and the follow-up for staff."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    meaning: str
    outcome: Literal["not_eligible", "could_not_determine"]
    follow_up: str


class Payer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    payer_id: str
    name: str
    aliases: list[str] = Field(default_factory=list)


_NORM = re.compile(r"[^A-Z0-9]+")


def _key(name: str) -> str:
    return _NORM.sub(" ", name.upper()).strip()


@dataclass(frozen=True)
class IntakeRules:
    """Everything the intake steps read, loaded once by the shell and passed in (pure steps)."""

    gaps: tuple[GapRule, ...]
    aaa: dict[str, AaaReason]
    follow_up_actions: dict[str, str]
    payers: dict[str, Payer]  # normalized name/alias -> payer
    payer_ids: dict[str, Payer]
    versions: dict[str, str]  # table id -> version (named in work items)

    def gap(self, check: str) -> GapRule:
        for g in self.gaps:
            if g.check == check:
                return g
        raise KeyError(check)

    def payer_for(self, payer_id: str | None, name: str | None) -> Payer | None:
        """The payer a form names: by id when the portal gave one, else by name or alias."""
        if payer_id:
            known = self.payer_ids.get(payer_id.strip())
            return known or Payer(payer_id=payer_id.strip(), name=(name or payer_id).strip().upper())
        if name:
            return self.payers.get(_key(name))
        return None


def build_rules(
    gaps: tuple[GapRule, ...],
    aaa: list[dict[str, object]],
    follow_up: list[dict[str, object]],
    payers: list[dict[str, object]],
    versions: dict[str, str] | None = None,
) -> IntakeRules:
    """Validate and index the four parts (also used by tests with hand-made tables)."""
    checks = {g.check for g in gaps}
    if "clean" not in checks:
        raise RuleError("rules/intake: no rule with check 'clean' (a check with no gap needs one)")
    reasons = {r.code: r for r in (AaaReason.model_validate(e) for e in aaa)}
    actions = {str(e["code"]): str(e["meaning"]) for e in follow_up}
    by_name: dict[str, Payer] = {}
    by_id: dict[str, Payer] = {}
    for e in payers:
        p = Payer.model_validate(e)
        by_id[p.payer_id] = p
        for n in (p.name, *p.aliases):
            by_name[_key(n)] = p
    return IntakeRules(tuple(gaps), reasons, actions, by_name, by_id, dict(versions or {}))


def load_intake_rules(overrides_dir: Overrides = None) -> IntakeRules:
    """The shipped intake rules with a practice's overrides (``settings.rules_dir``)."""
    gaps = load_rules(WORKFLOW, GapRule, overrides_dir)
    aaa = load_table(WORKFLOW, "intake.aaa", overrides_dir)
    follow = load_table(WORKFLOW, "intake.aaa_follow_up", overrides_dir)
    payers = load_table(WORKFLOW, "intake.payers", overrides_dir)
    versions = {t.id: t.version for t in (aaa, follow, payers)}
    return build_rules(tuple(gaps), list(aaa.entries), list(follow.entries), list(payers.entries), versions)
