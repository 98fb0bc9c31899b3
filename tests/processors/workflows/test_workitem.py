"""The work-item contract: builders refuse what the contract does not allow, decisions drive the states."""

from __future__ import annotations

import fastavro
import pytest

from practiceflow.processors.workflows.commands import command_id_for, new_command
from practiceflow.processors.workflows.step import EMPTY, StepResult, as_dict
from practiceflow.processors.workflows.workitem import (
    END_STATES,
    InvalidTransition,
    apply_decision,
    by_rule,
    evidence,
    item_id_for,
    latest,
    new_item,
    option,
    supersede,
)
from practiceflow.schemas.avro_gen import load_parsed

SOURCE = {"feed": "portal", "message_id": "m-1"}


def _item(**kw):
    args = dict(
        practice_id="p1",
        workflow="refill",
        subject=["req-1"],
        kind="refill.needs_review",
        queue="clinician",
        title="Refill: lisinopril 10 mg",
        what_happened="The patient asked for a refill in the portal.",
        produced_by=by_rule("refill.ace_arb", "2026-12-01", "clinic protocol"),
        source=SOURCE,
        now=1_000,
        patient_id="MRN1",
        evidence=[evidence("Potassium", record_type="Observation", value="5.9", unit="mmol/L", assessment="abnormal")],
        options=[
            option("approve", "Renew"),
            option("reject", "Do not renew"),
            option("edit", "Change", editable=["quantity"]),
        ],
    )
    args.update(kw)
    return new_item(**args)


def _decision(opt: str, at: int = 2_000, did: str = "d1"):
    return {"practice_id": "p1", "decision_id": did, "item_id": "x", "option": opt, "actor": "dr.a", "decided_at": at}


def test_an_item_is_valid_avro_under_the_committed_schema():
    schema = fastavro.parse_schema(load_parsed("HandoffItem"))
    item = _item()
    assert fastavro.validation.validate(item, schema, raise_errors=True)
    assert item["contract_version"] == 2 and item["state"] == "open" and item["revision"] == 1


def test_item_ids_are_stable_and_carry_no_identifier():
    a, b = _item(), _item(now=99_999)
    assert a["item_id"] == b["item_id"] == item_id_for("refill", "req-1")
    assert "req-1" not in a["item_id"] and "MRN1" not in a["item_id"]
    assert item_id_for("refill", "req-2") != a["item_id"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("queue", "janitor", "unknown queue"),
        ("priority", "asap", "unknown priority"),
        ("kind", "intake.gap", "must start with the workflow name"),
        ("produced_by", {"kind": "rule", "rule_id": "r"}, "id and version"),
    ],
)
def test_builder_refuses_what_the_contract_does_not_allow(field, value, message):
    with pytest.raises(ValueError, match=message):
        _item(**{field: value})


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="unknown option"):
        option("sign_and_send", "Send it")


@pytest.mark.parametrize(("opt", "state"), [("approve", "done"), ("edit", "done"), ("reject", "rejected")])
def test_a_decision_closes_the_item_in_the_next_revision(opt, state):
    after = apply_decision(_item(), _decision(opt))
    assert (after["state"], after["revision"], after["outcome"], after["decision_id"]) == (state, 2, opt, "d1")
    assert after["updated_at"] == 2_000 and after["created_at"] == 1_000


def test_assign_then_approve():
    taken = apply_decision(_item(), _decision("assign"))
    assert (taken["state"], taken["assigned_to"], taken["outcome"]) == ("in_progress", "dr.a", None)
    done = apply_decision(taken, _decision("approve", 3_000, "d2"))
    assert (done["state"], done["revision"], done["assigned_to"]) == ("done", 3, "dr.a")


def test_closed_items_and_foreign_options_are_refused():
    done = apply_decision(_item(), _decision("approve"))
    assert done["state"] in END_STATES
    with pytest.raises(InvalidTransition, match="no longer"):
        apply_decision(done, _decision("reject", did="d2"))
    with pytest.raises(InvalidTransition, match="not one of this item's options"):
        apply_decision(_item(), _decision("pick"))


def test_supersede_and_latest_keep_the_highest_revision():
    old = _item()
    gone = supersede(old, "refill:new", 5_000)
    assert gone["state"] == "superseded" and gone["revision"] == 2
    with pytest.raises(InvalidTransition):
        supersede(gone, "refill:newer", 6_000)
    folded = latest([gone, old, old])
    assert folded[old["item_id"]]["state"] == "superseded"


def test_command_ids_are_idempotency_keys():
    a = new_command(
        practice_id="p1",
        kind="eligibility",
        workflow="intake",
        subject=["sub-1"],
        payload_type="x12.270",
        payload="ISA*",
        now=1,
    )
    b = new_command(
        practice_id="p1",
        kind="eligibility",
        workflow="intake",
        subject=["sub-1"],
        payload_type="x12.270",
        payload="ISA*",
        now=2,
    )
    assert a["command_id"] == b["command_id"] == command_id_for("eligibility", "intake", "p1", "sub-1")
    assert command_id_for("eligibility", "intake", "p2", "sub-1") != a["command_id"]  # never across tenants
    assert fastavro.validation.validate(a, fastavro.parse_schema(load_parsed("WorkflowCommand")), raise_errors=True)
    with pytest.raises(ValueError, match="unknown command kind"):
        new_command(practice_id="p1", kind="fax_send", workflow="x", subject=["s"], payload_type="t", payload="", now=1)


def test_step_results_add_up():
    r = StepResult(work_items=(_item(),)) + EMPTY
    assert not r.empty and EMPTY.empty
    assert as_dict(r)["work_items"][0]["kind"] == "refill.needs_review"
