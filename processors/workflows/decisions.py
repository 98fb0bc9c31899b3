"""A staff decision applied to its work item (pure): the next revision, or a refusal with the reason.

Shared by every workflow: a person approves, edits, rejects (or assigns, escalates...) an
item through the CLI, the EHR's Task status or a staff tool; the decisions agent
(``streams/workflows/decisions.py``) looks up the item's latest revision and calls
:func:`decide`. What a decision *does* beyond closing the item (a renewal written to the
EHR once a clinician approved it, signed prior-auth drafts handed to the billing office to
submit) is the workflow's follow-up: a pure function registered in :data:`FOLLOW_UPS` that
returns commands or follow-up work items — so nothing is sent without the decision, and a
replayed decision re-emits the same ids.

Idempotent: the caller passes the decision ids already applied to the item; a decision
seen again (a replay after a crash, a staff tool retrying) changes nothing and writes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from practiceflow.processors.workflows.intake.follow_up import intake_follow_up
from practiceflow.processors.workflows.prior_auth.confirm import fax_follow_up
from practiceflow.processors.workflows.prior_auth.follow_up import prior_auth_follow_up
from practiceflow.processors.workflows.refill.follow_up import refill_follow_up
from practiceflow.processors.workflows.step import EMPTY, AuditReason, StepResult
from practiceflow.processors.workflows.workitem import InvalidTransition, apply_decision
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict

# workflow -> follow-up(item after the decision, decision) -> StepResult (commands, drafts)
FollowUp = Callable[[HandoffItemDict, StaffDecisionDict], StepResult]
FOLLOW_UPS: dict[str, FollowUp] = {
    "refill": refill_follow_up,  # a signed renewal draft -> cmd.ehr_write (executor: issue 12)
    "intake": intake_follow_up,  # a signed registration -> cmd.ehr_write per Patient / Coverage draft
    "prior_auth": prior_auth_follow_up,  # signed PA drafts -> a billing item to submit them (no payer link)
    "fax": fax_follow_up,  # a confirmed faxed payer decision -> cmd.prior_auth (the authorization's state)
}

# Queues whose items only that role may close: a front-desk user cannot sign a refill or
# acknowledge a result. The role is the one the channel asserts (the CLI's --role; a Task
# status read from the EHR asserts none); assigning or escalating is open to everyone.
ROLE_REQUIRED: dict[str, str] = {"clinician": "clinician"}
_OPEN_TO_ALL = frozenset({"assign", "escalate"})
# Options that sign an item's drafts (a renewal becomes an active order, a registration is written).
SIGNING_OPTIONS = frozenset({"approve", "edit"})
# Channels whose decisions name no signer: a Task status change in the EHR (review s18 M2).
UNSIGNED_CHANNELS = frozenset({"fhir"})


def _refusal(item_id: str, decision: StaffDecisionDict, who: str, why: str) -> StepResult:
    return StepResult(
        audit=(
            AuditReason(
                "decision_refused",
                "HandoffItem",
                item_id,
                f"{who}: {why}",
                outcome="refused",
                details={"option": decision["option"], "decision_id": decision["decision_id"]},
            ),
        )
    )


def decide(
    item: HandoffItemDict | None,
    decision: StaffDecisionDict,
    applied: Collection[str] = (),
    follow_ups: dict[str, FollowUp] | None = None,
) -> StepResult:
    """The outputs of one decision: the item's next revision + audit, or only a refusal audit."""
    if decision["decision_id"] in applied or (item is not None and item.get("decision_id") == decision["decision_id"]):
        return EMPTY  # seen before: the item already carries this decision
    who = f"{decision['actor']} via {decision.get('channel', 'cli')}"
    if item is None:
        return _refusal(decision["item_id"], decision, who, "no such work item in this practice")
    if item["practice_id"] != decision["practice_id"]:
        raise ValueError("a decision of another practice reached this item")  # the table is keyed by practice
    role = ROLE_REQUIRED.get(item["queue"])
    if role is not None and decision["option"] not in _OPEN_TO_ALL and decision.get("actor_role") != role:
        return _refusal(
            item["item_id"], decision, who, f"only a {role} may decide an item of the {item['queue']} queue"
        )
    if decision.get("channel") in UNSIGNED_CHANNELS and decision["option"] in SIGNING_OPTIONS and item.get("draft_ids"):
        return _refusal(
            item["item_id"],
            decision,
            who,
            "a Task status change in the EHR signs no draft: sign it in the EHR's order or with `practiceflow queue`",
        )
    stale = decision.get("item_revision")
    try:
        after = apply_decision(item, decision)
    except InvalidTransition as exc:
        return _refusal(item["item_id"], decision, who, str(exc))
    details = {
        "option": decision["option"],
        "decision_id": decision["decision_id"],
        "state": after.get("state", "open"),
        "revision": str(after.get("revision", 1)),
    }
    if stale is not None and stale != item.get("revision", 1):
        details["seen_revision"] = str(stale)  # decided on an older view: applied, and said so
    if decision.get("edits"):
        details["edited_fields"] = ",".join(sorted(decision["edits"]))
    result = StepResult(
        work_items=(after,),
        audit=(AuditReason("work_item_decided", "HandoffItem", item["item_id"], who, details=details),),
    )
    follow = (follow_ups if follow_ups is not None else FOLLOW_UPS).get(item["workflow"])
    if follow is not None and after.get("state") in ("done", "rejected"):
        result = result + follow(after, decision)
    return result
