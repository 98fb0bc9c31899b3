"""Issue 11: an approved authorization's number goes onto the order in the EHR.

The pure step emits one ``ehr_write`` command (workflow ``prior_auth``) when an authorization
becomes approved with a number, whatever the path (278, PAS ClaimResponse, a confirmed fax: all go
through ``respond``); its id derives from the authorization and the number, so a replay or the same
answer twice sends nothing new and a changed number sends a new command. Old code: ``respond``
returned no command at all (the README said "Not yet").
"""

from __future__ import annotations

import json

from practiceflow.processors.ehr.no_target import answer_without_target
from practiceflow.processors.ehr.order_auth import ATTACH_NUMBER
from practiceflow.processors.ehr.unwritten import unwritten_write_item
from practiceflow.processors.workflows.commands import command_id_for
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft, respond
from tests.processors.test_prior_auth import NOW, RULES, mri_case, resp


def _drafted(feed: str = "fhir"):
    c, o = mri_case(source={"feed": feed, "message_id": "m-sr"})
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert d.state is not None
    return d.state


def test_an_approval_with_a_number_emits_one_ehr_write_for_the_order():
    state = _drafted()
    assert state["order_feed"] == "fhir" and state["coverage_id"] == "cov1"
    result, st = respond(state, resp("approved", "AUTH778", "r1"), None, NOW + 1000)
    (cmd,) = result.commands
    aid = state["authorization_id"]
    assert cmd["kind"] == "ehr_write" and cmd["workflow"] == "prior_auth" and cmd["practice_id"] == state["practice_id"]
    assert cmd["command_id"] == command_id_for(
        "ehr_write", "prior_auth", state["practice_id"], "authorization_number", aid, "AUTH778"
    )
    payload = json.loads(cmd["payload"])
    assert payload["action"] == ATTACH_NUMBER and payload["authorization_number"] == "AUTH778"
    assert payload["order_id"] == "ord-mri" and payload["order_type"] == "Order" and payload["order_feed"] == "fhir"
    assert cmd["params"]["authorization_number"] == "AUTH778" and cmd["params"]["order_id"] == "ord-mri"
    assert st["order_number_sent"] == "AUTH778"
    # a replay of that answer: nothing at all
    again, _ = respond(st, resp("approved", "AUTH778", "r1"), None, NOW + 2000)
    assert again.commands == ()
    # the same answer again under another response id (the fax after the 278, a PAS update): no command
    same, st2 = respond(st, resp("approved", "AUTH778", "r2"), None, NOW + 3000)
    assert same.commands == () and st2["order_number_sent"] == "AUTH778"
    # the payer changes the number: a new command, another id
    changed, st3 = respond(st2, resp("approved", "AUTH999", "r3"), None, NOW + 4000)
    (new,) = changed.commands
    assert new["command_id"] != cmd["command_id"] and json.loads(new["payload"])["authorization_number"] == "AUTH999"
    assert st3["order_number_sent"] == "AUTH999"


def test_no_command_without_an_approval_or_without_a_number():
    state = _drafted()
    pended, st = respond(state, resp("pended", "REF1", "r1"), None, NOW + 1000)
    assert pended.commands == ()
    denied, _ = respond(state, resp("denied", "REF2", "r2"), None, NOW + 1000)
    assert denied.commands == ()
    bare, _ = respond(state, resp("approved", None, "r3"), None, NOW + 1000)
    assert bare.commands == ()
    # a pended request later approved (the number from the pend carried over): sent once, then
    partial, st2 = respond(st, resp("partially_approved", "REF1", "r4"), None, NOW + 2000)
    assert len(partial.commands) == 1 and st2["order_number_sent"] == "REF1"


def test_an_hl7_order_and_a_practice_without_an_ehr_give_billing_an_item_with_the_number():
    """The writer answers an HL7 order ``failed`` (streams test: tests/sinks/test_ehr_order_auth.py);
    a practice without an EHR target is answered ``no_ehr`` by the worker. Either answer opens a
    billing item (old code: the refill clinician's "Signed renewal NOT written" title) that carries
    the order and the number."""
    state = _drafted(feed="hl7v2")
    (cmd,) = respond(state, resp("approved", "AUTH778"), None, NOW + 1000)[0].commands
    assert json.loads(cmd["payload"])["order_feed"] == "hl7v2"
    res = answer_without_target(cmd, configured=(), now=NOW + 2000)
    assert res is not None and res["outcome"] == "no_ehr" and res["workflow"] == "prior_auth"
    (item,) = unwritten_write_item(res).work_items
    assert item["queue"] == "billing" and item["kind"] == "prior_auth.ehr_write_not_done"
    assert "Authorization number NOT attached" in item["title"]
    values = {e["label"]: e.get("value") for e in item["evidence"]}
    assert values["authorization number"] == "AUTH778" and values["order"] == "ord-mri"


def test_only_the_approving_answers_own_number_goes_onto_the_order():
    """Review s21 S1: a number carried over from a pended or denied answer, an "authorization not
    required" answer, and a number read from a fax that no person confirmed never reach the order
    (nor, through ``approved_number``, a corrected claim). Old code: all three emitted a command."""
    state = _drafted()
    _, pended = respond(state, resp("pended", "REF1", "r1"), None, NOW + 1000)
    approved, st = respond(pended, resp("approved", None, "r2"), None, NOW + 2000)
    assert approved.commands == () and st["status"] == "approved" and st["approved_number"] is None
    _, denied = respond(state, resp("denied", "DENYREF9", "r1"), None, NOW + 1000)
    not_required, st = respond(denied, resp("not_required", None, "r2"), None, NOW + 2000)
    assert not_required.commands == () and st["approved_number"] is None
    fax = {**resp("approved", "AUTH-OCR1", "fax:1"), "record_type": "FaxClassification"}
    by_fax, st = respond(state, fax, None, NOW + 1000)
    assert by_fax.commands == () and st["status"] == "approved" and st["approved_number"] is None
    # the billing office's confirmation of that fax carries the number a person checked
    confirmed = {**resp("approved", "AUTH-OCR1", "confirm:1"), "record_type": "StaffDecision"}
    by_person, st = respond(state, confirmed, None, NOW + 1000)
    (cmd,) = by_person.commands
    assert json.loads(cmd["payload"])["authorization_number"] == "AUTH-OCR1" and st["approved_number"] == "AUTH-OCR1"
