"""Applying staff decisions: the next revision, refusals with reasons, idempotent on replay, follow-ups."""

from __future__ import annotations

from practiceflow.processors.workflows.commands import new_command
from practiceflow.processors.workflows.decisions import decide
from practiceflow.processors.workflows.step import StepResult
from practiceflow.processors.workflows.workitem import by_rule, new_item, option


def _item():
    return new_item(
        practice_id="p1",
        workflow="refill",
        subject=["req-1"],
        kind="refill.routine",
        queue="clinician",
        title="Refill",
        what_happened="asked",
        produced_by=by_rule("refill.statin", "1", "protocol"),
        source={"feed": "portal", "message_id": "m"},
        now=1,
        options=[option("approve", "Sign"), option("reject", "Decline")],
    )


def _dec(opt: str, did: str = "d1", **kw):
    base = {"practice_id": "p1", "decision_id": did, "item_id": "x", "option": opt, "actor": "dr.a", "decided_at": 9}
    return {**base, "actor_role": "clinician", **kw}


def test_approve_writes_the_next_revision_and_an_audit_reason():
    r = decide(_item(), _dec("approve"))
    assert [i["state"] for i in r.work_items] == ["done"]
    assert r.audit[0].action == "work_item_decided" and r.audit[0].details["revision"] == "2"


def test_a_decision_seen_again_writes_nothing():
    assert decide(_item(), _dec("approve"), applied={"d1"}).empty


def test_unknown_item_closed_item_and_foreign_option_are_refused_with_reasons():
    assert decide(None, _dec("approve")).audit[0].reason.endswith("no such work item in this practice")
    closed = decide(_item(), _dec("approve")).work_items[0]
    again = decide(closed, _dec("reject", "d2"))
    assert not again.work_items and again.audit[0].outcome == "refused" and "no longer" in again.audit[0].reason
    foreign = decide(_item(), _dec("pick", "d3"))
    assert not foreign.work_items and "not one of this item's options" in foreign.audit[0].reason


def test_a_decision_on_an_older_view_is_applied_and_says_so():
    r = decide(_item(), _dec("approve", item_revision=0))
    assert r.audit[0].details["seen_revision"] == "0"


def test_follow_ups_run_only_when_the_item_closes():
    def follow(item, decision):
        cmd = new_command(
            practice_id="p1",
            kind="ehr_write",
            workflow="refill",
            subject=[item["item_id"]],
            payload_type="fhir.MedicationRequest",
            payload="{}",
            now=decision["decided_at"],
        )
        return StepResult(commands=(cmd,))

    done = decide(_item(), _dec("approve"), follow_ups={"refill": follow})
    assert [c["kind"] for c in done.commands] == ["ehr_write"]
    taken = decide(_item(), _dec("assign"), follow_ups={"refill": follow})
    assert not taken.commands and taken.work_items[0]["state"] == "in_progress"


def test_only_a_clinician_closes_a_clinician_queue_item():
    r = decide(_item(), _dec("approve", actor_role="front_desk"))
    assert not r.work_items and "only a clinician" in r.audit[0].reason
    assert decide(_item(), _dec("approve", actor_role=None)).audit[0].outcome == "refused"
    taken = decide(_item(), _dec("assign", actor_role="front_desk"))  # taking an item is open to everyone
    assert taken.work_items[0]["state"] == "in_progress"


def test_a_decision_the_item_already_carries_is_not_applied_again():
    done = decide(_item(), _dec("approve")).work_items[0]
    assert decide(done, _dec("approve")).empty  # replay after a crash: table had the new revision, not the id
