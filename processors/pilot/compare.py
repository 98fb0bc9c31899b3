"""The agent's proposal against what staff did (pure): one verdict per work item.

A work item is the agent's proposal: its ``kind`` (the class: ``refill.routine``, ``fax.lab_result``),
its ``queue`` (where it routed the work) and ``proposed_action``, made by a rule or model
version (``produced_by``). What staff did arrives as a ``StaffDecision`` (the CLI, the EHR's
Task status, or — in a pilot — the staff's own work recorded by a staff tool). The pilot rule
for the item's kind (``rules/pilot/tasks.yaml``) says which options mean *agree* (the staff did
what was proposed: signed the routine renewal, filed the fax where it was routed) and which
*disagree*; a decision whose edits move the item to another ``queue`` or ``doc_class`` is a
disagreement whatever the option (the agent misrouted it). Other options (escalate) give no
verdict. Agreed items count the rule's documented minutes as *saved*: the work a person no
longer does by hand once the workflow goes live.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from practiceflow.processors.rules import RuleSet
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict

from .rules import TaskRule, rule_for

VERDICTS = ("agree", "disagree", "no_verdict")
_ROUTING_FIELDS = ("queue", "doc_class")


def producer(item: HandoffItemDict) -> tuple[str, str]:
    """(rule or model id, its version) that produced the item; model versions include the prompt."""
    by: dict[str, Any] = dict(item.get("produced_by") or {})
    if by.get("kind") == "model":
        version = by.get("model_version") or ""
        if by.get("prompt_version"):
            version = f"{version}/prompt {by['prompt_version']}" if version else f"prompt {by['prompt_version']}"
        return str(by.get("model") or "model"), version or "-"
    return str(by.get("rule_id") or item["workflow"]), str(by.get("rule_version") or "-")


def compare(item: HandoffItemDict, decision: StaffDecisionDict, rules: RuleSet[TaskRule]) -> dict[str, Any]:
    """A ``PilotComparison`` record for one item (as proposed) and the staff decision on it."""
    kind = item.get("kind") or item["workflow"]
    rule = rule_for(rules, kind)
    option = decision["option"]
    edits = dict(decision.get("edits") or {})
    moved = {f: edits[f] for f in _ROUTING_FIELDS if edits.get(f) and edits[f] != _proposed(item, f)}
    if moved:
        verdict, why = (
            "disagree",
            "staff filed it elsewhere: " + ", ".join(f"{k}={v}" for k, v in sorted(moved.items())),
        )
    elif option in rule.agree_on:
        verdict, why = "agree", f"staff chose {option}, as proposed"
    elif option in rule.disagree_on:
        verdict, why = "disagree", f"staff chose {option}"
    else:
        verdict, why = "no_verdict", f"{option} says nothing about the proposal"
    rule_id, rule_version = producer(item)
    return {
        "practice_id": item["practice_id"],
        "item_id": item["item_id"],
        "workflow": item["workflow"],
        "kind": kind,
        "queue": item["queue"],
        "rule_id": rule_id,
        "rule_version": rule_version,
        "staff_option": option,
        "staff_queue": str(moved.get("queue") or ""),
        "staff_channel": decision.get("channel") or "cli",
        "decision_id": decision["decision_id"],
        "verdict": verdict,
        "why": why,
        "minutes": rule.minutes,
        "minutes_saved": rule.minutes if verdict == "agree" else 0.0,
        "task_rule": f"{rule.id}@{rule.version}",
        "decided_at": decision["decided_at"],
    }


def _proposed(item: HandoffItemDict, field: str) -> str:
    if field == "queue":
        return item["queue"]
    kind = item.get("kind") or ""
    return kind.split(".", 1)[1] if "." in kind else kind  # fax.lab_result -> lab_result


Key = tuple[str, str, str, str]  # workflow, kind, rule id, rule version


def add(counts: dict[str, float], comparison: dict[str, Any]) -> dict[str, float]:
    """Running counts of one group after one more comparison (the pilot agent's table value)."""
    out = dict(counts)
    out[comparison["verdict"]] = out.get(comparison["verdict"], 0) + 1
    out["minutes_saved"] = round(out.get("minutes_saved", 0.0) + float(comparison["minutes_saved"]), 2)
    return out


def group_key(comparison: dict[str, Any]) -> Key:
    return (comparison["workflow"], comparison["kind"], comparison["rule_id"], comparison["rule_version"])


def summarize(comparisons: Iterable[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    """Counts per (workflow, kind, rule id, rule version), the latest comparison per item only."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for c in comparisons:
        latest[(c["practice_id"], c["item_id"])] = c
    out: dict[Key, dict[str, float]] = {}
    for c in latest.values():
        key = group_key(c)
        out[key] = add(out.get(key, {}), c)
    return out


def agreement(counts: dict[str, float]) -> float | None:
    """Share of the items with a verdict on which staff did what the agent proposed."""
    judged = counts.get("agree", 0) + counts.get("disagree", 0)
    return counts.get("agree", 0) / judged if judged else None


def report_lines(groups: dict[Key, dict[str, float]]) -> list[str]:
    """The pilot report: agreement per workflow, kind and rule version, with minutes saved."""
    lines = [
        f"{'workflow':10s} {'kind':28s} {'rule / model @ version':44s} {'agree':>5s} {'disagr':>6s} "
        f"{'no vrd':>6s} {'agreement':>9s} {'min saved':>9s}"
    ]
    by_workflow: dict[str, dict[str, float]] = {}
    for key in sorted(groups):
        c = groups[key]
        workflow, kind, rule_id, version = key
        rate = agreement(c)
        lines.append(
            f"{workflow:10s} {kind:28s} {(rule_id + '@' + version)[:44]:44s} {int(c.get('agree', 0)):5d} "
            f"{int(c.get('disagree', 0)):6d} {int(c.get('no_verdict', 0)):6d} "
            f"{'-' if rate is None else f'{rate:.0%}':>9s} {c.get('minutes_saved', 0):9.1f}"
        )
        w = by_workflow.setdefault(workflow, {})
        for k, v in c.items():
            w[k] = w.get(k, 0) + v
    lines.append("")
    for workflow in sorted(by_workflow):
        c = by_workflow[workflow]
        rate = agreement(c)
        lines.append(
            f"{workflow:10s} {'(all kinds)':28s} {'':44s} {int(c.get('agree', 0)):5d} {int(c.get('disagree', 0)):6d} "
            f"{int(c.get('no_verdict', 0)):6d} {'-' if rate is None else f'{rate:.0%}':>9s} "
            f"{c.get('minutes_saved', 0):9.1f}"
        )
    return lines
