"""`practiceflow rules check`: load every workflow's rules as the worker would, and say what is in force.

A practice editing its rules runs this before restarting the worker: a malformed file is
reported with its path, the rule and the reason, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from pydantic import ConfigDict

from practiceflow.processors.rules import (
    Rule,
    RuleError,
    load_rules,
    practice_layers,
    practices_with_rules,
    workflows_with_rules,
)
from practiceflow.settings import Settings


class _AnyRule(Rule):
    """id, version and source checked; the workflow's own fields accepted as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)


# workflow -> "module:RuleModel"; a workflow without an entry is checked against the base Rule
# (ids, versions and sources only) until it registers its own model.
RULE_MODELS: dict[str, str] = {
    "intake": "practiceflow.processors.workflows.intake.rules:GapRule",
    "matching": "practiceflow.processors.context.matching:MatchRules",
    "refill": "practiceflow.processors.workflows.refill.rules:RefillRule",
    "denials": "practiceflow.processors.workflows.denials.rules:DenialRule",
    "prior_auth": "practiceflow.processors.workflows.prior_auth.rules:PriorAuthRule",
    "pilot": "practiceflow.processors.pilot.rules:TaskRule",
}


def _model(workflow: str) -> type[Rule]:
    target = RULE_MODELS.get(workflow)
    if target is None:
        return _AnyRule
    module, _, name = target.partition(":")
    model: type[Rule] = getattr(importlib.import_module(module), name)
    return model


def _check(label: str, layers: tuple[Path, ...]) -> int:
    failed = 0
    for workflow in workflows_with_rules(layers):
        model = _model(workflow)
        try:
            rules = load_rules(workflow, model, layers)
        except RuleError as exc:
            print(f"{label}{workflow}: INVALID: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{label}{workflow}: {len(rules)} rule(s) from {len(rules.files)} file(s)")
        for r in rules:
            print(f"  {r.id}@{r.version}  ({r.source})")
    return failed


def main(args: argparse.Namespace, cfg: Settings) -> int:
    """The installation's rules, then each practice's that has a folder of its own
    (``<rules_dir>/practices/<practice_id>/``, layered on the installation's)."""
    failed = _check("", practice_layers(cfg.rules_dir, ""))
    for practice in practices_with_rules(cfg.rules_dir):
        print(f"\npractice {practice}:")
        failed += _check(f"{practice}/", practice_layers(cfg.rules_dir, practice))
    return 1 if failed else 0
