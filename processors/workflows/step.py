"""What a workflow step returns: work items, drafts, commands and audit reasons.

A step never performs a side effect. Sending a 270, calling the model or writing to the
EHR is a command (:mod:`.commands`) that an executor performs at most once per
idempotency key; its answer comes back as an event that feeds the next step. Keeping the
step pure is what lets a decision be replayed from the log and reproduce exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from practiceflow.schemas.typed import DraftDict, HandoffItemDict, WorkflowCommandDict


@dataclass(frozen=True)
class AuditReason:
    """Why the step did what it did, for the audit trail (the shell adds who and when)."""

    action: str  # e.g. refill_triaged, eligibility_requested, work_item_created
    entity_type: str
    entity_id: str
    reason: str  # the rule id@version or model@prompt version, and the outcome in words
    outcome: str = "ok"
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """Everything one step produced. Tuples, so a result can be compared and hashed in tests."""

    work_items: tuple[HandoffItemDict, ...] = ()
    drafts: tuple[DraftDict, ...] = ()
    commands: tuple[WorkflowCommandDict, ...] = ()
    audit: tuple[AuditReason, ...] = ()

    def __add__(self, other: StepResult) -> StepResult:
        return StepResult(
            self.work_items + other.work_items,
            self.drafts + other.drafts,
            self.commands + other.commands,
            self.audit + other.audit,
        )

    @property
    def empty(self) -> bool:
        return not (self.work_items or self.drafts or self.commands or self.audit)


EMPTY = StepResult()

C = TypeVar("C")
E = TypeVar("E")
R = TypeVar("R")

# The signature every workflow step has: (context, event, rules, now in epoch ms) -> StepResult.
Step = Callable[[C, E, R, int], StepResult]


def as_dict(result: StepResult) -> dict[str, Any]:
    """A plain-data view of a result (for golden files and replay comparisons)."""
    return {
        "work_items": list(result.work_items),
        "drafts": list(result.drafts),
        "commands": list(result.commands),
        "audit": [
            {
                "action": a.action,
                "entity_type": a.entity_type,
                "entity_id": a.entity_id,
                "reason": a.reason,
                "outcome": a.outcome,
                "details": dict(a.details),
            }
            for a in result.audit
        ],
    }
