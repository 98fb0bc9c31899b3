"""The pilot's rules as data (``rules/pilot/tasks.yaml``): what counts as agreement per kind of
work item, and the documented staff minutes one such task takes by hand.

Kept as rules (id, version, source) rather than constants because both are judgements a
practice revisits during its pilot (its own time study, its own idea of "agree"), and a
comparison must name the version it was made under.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from practiceflow.processors.rules import Rule, RuleSet, load_rules

WORKFLOW = "pilot"


class TaskRule(Rule):
    """One kind of work item (prefixes of ``kind``) in the pilot's comparison."""

    kinds: tuple[str, ...] = Field(min_length=1, description="kind prefixes; '' matches every kind")
    agree_on: tuple[str, ...] = Field(default=(), description="staff options that mean the proposal was followed")
    disagree_on: tuple[str, ...] = Field(default=(), description="staff options that mean it was not")
    minutes: float = Field(ge=0, le=600, description="staff minutes one task takes by hand (see source)")


def load_task_rules(overrides_dir: Path | None = None) -> RuleSet[TaskRule]:
    return load_rules(WORKFLOW, TaskRule, overrides_dir)


def rule_for(rules: RuleSet[TaskRule], kind: str) -> TaskRule:
    """The rule with the longest kind prefix matching ``kind`` (``refill.routine`` before ``refill``)."""
    best: tuple[int, TaskRule] | None = None
    for r in rules:
        for prefix in r.kinds:
            if (kind == prefix or kind.startswith(prefix + ".") or prefix == "") and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), r)
    if best is None:
        raise KeyError(f"no pilot rule matches kind {kind!r} (rules/pilot needs a default with kinds: [''])")
    return best[1]
