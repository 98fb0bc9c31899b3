"""Prior authorization (issue 11) after the draft: the clinician's sign-off and what billing submits,
faxed payer decisions, cancelled orders and failed checks. The cases and helpers are
tests/processors/test_prior_auth.py's (rules, detection, evidence, drafts, responses)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from practiceflow.processors.context import snapshot as snap
from practiceflow.processors.workflows.decisions import decide
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft, respond
from practiceflow.processors.workflows.workitem import QUEUES, apply_decision
from tests.processors.test_prior_auth import NOW, PT, RULES, SRC, P, _letter_text, mri_case, pap_case, resp


# ------------------------------------------------------------------------- sign-off follow-up (review M3)
def _decision(item: dict, option: str, decision_id: str = "dec-pa-1", **kw: Any) -> dict:
    return {
        "practice_id": P,
        "decision_id": decision_id,
        "item_id": item["item_id"],
        "item_revision": item["revision"],
        "option": option,
        "actor": "dr-lee",
        "actor_role": "clinician",
        "decided_at": NOW + 60_000,
        **kw,
    }


def test_signing_a_prior_auth_opens_a_billing_item_to_submit_it():
    """Approving "sign the drafts" used to close the item and nothing else: no submission, nobody told."""
    c, o = pap_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (item,) = d.result.work_items
    labels = {opt["option"]: opt["label"] for opt in item["options"]}
    assert "and submit" not in labels["approve"] and "billing office submits" in labels["approve"]  # honest label
    for opt in ("approve", "edit"):
        edits = {"body": "amended letter"} if opt == "edit" else {}
        result = decide(item, _decision(item, opt, edits=edits))
        signed, submit = result.work_items
        assert signed["item_id"] == item["item_id"] and signed["state"] == "done"
        assert submit["queue"] == "billing" and submit["kind"] == "prior_auth.submit" and submit["state"] == "open"
        assert submit["queue"] in QUEUES
        assert submit["title"] == "Submit the signed prior-authorization request to Acme Health"
        # an edited letter replaces the drafted one (review s19 M2); PAS and 278 are handed over as drafted
        signed_ids = item["draft_ids"] if opt == "approve" else [*item["draft_ids"][:2], result.drafts[0]["draft_id"]]
        assert item["draft_ids"] == [dr["draft_id"] for dr in d.result.drafts]
        assert submit["draft_ids"] == signed_ids and len(result.drafts) == (0 if opt == "approve" else 1)
        keys = {e["record_key"] for e in submit["evidence"]}
        assert set(signed_ids) | {d.state["authorization_id"]} <= keys
        assert d.state["authorization_id"] in submit["what_happened"]
        assert {e["value"] for e in submit["evidence"] if e["record_type"] == "Draft"} == {
            "fhir.Bundle.pas",
            "x12.278",
            "letter.medical_necessity",
        }
        assert submit["patient_id"] == item["patient_id"] and submit["practice_id"] == P
        assert any(a.action == "prior_auth_submission_requested" for a in result.audit)
    # idempotent by decision id: the same decision yields the same item; a replay on the signed item nothing
    again = decide(item, _decision(item, "approve"))
    assert again.work_items[1]["item_id"] == decide(item, _decision(item, "approve")).work_items[1]["item_id"]
    assert again.work_items[1]["item_id"] != decide(item, _decision(item, "approve", "dec-2")).work_items[1]["item_id"]
    assert decide(again.work_items[0], _decision(item, "approve")).work_items == ()
    # deciding the billing item itself opens nothing further
    submit = again.work_items[1]
    assert decide(submit, _decision(submit, "approve", "dec-3", actor_role="billing")).work_items[1:] == ()


def test_an_edited_letter_is_what_billing_gets_to_submit():
    """Review s19 M2: with criteria open only edit / reject is offered, but the edit stayed in the decision;
    the submit item handed over the drafted PDF (no necessity statement, internal labels) as "signed"."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (item,) = d.result.work_items
    assert [x["option"] for x in item["options"]] == ["edit", "reject"]
    body = (
        "Acme Health - prior authorization\nRe: MRI lumbar spine\n\nSix weeks of physical therapy failed.\n"
        "The MRI is medically necessary.\n\nSincerely,\nDr Lee"
    )
    result = decide(item, _decision(item, "edit", edits={"body": body}))
    signed, submit = result.work_items
    assert signed["state"] == "done" and submit["kind"] == "prior_auth.submit"
    (new,) = result.drafts
    original = d.result.drafts[2]
    assert new["kind"] == "letter.medical_necessity" and new["content_type"] == "application/pdf"
    assert new["draft_id"] != original["draft_id"] and new["status"] == "approved" and new["practice_id"] == P
    # the submit item points at the edited letter, never the drafted one
    assert new["draft_id"] in submit["draft_ids"] and original["draft_id"] not in submit["draft_ids"]
    assert submit["draft_ids"][:2] == item["draft_ids"][:2]
    # the PDF is the edited text, without the checker's labels
    text = _letter_text(SimpleNamespace(result=SimpleNamespace(drafts=[new])))
    assert b"physical therapy failed" in text and b"medically necessary" in text
    assert b"INSUFFICIENT" not in text and b"NOT MET" not in text
    # and the text itself travels on the item, named as what to submit
    (ev,) = [e for e in submit["evidence"] if e["record_key"] == new["draft_id"] and "submit this text" in e["label"]]
    assert ev["excerpt"] == body
    assert new["draft_id"] in submit["what_happened"]
    # replay-stable: the same decision renders the same draft (bytes and id); another decision another id
    assert decide(item, _decision(item, "edit", edits={"body": body})).drafts == result.drafts
    other = decide(item, _decision(item, "edit", "dec-pa-2", edits={"body": body})).drafts[0]
    assert other["draft_id"] != new["draft_id"]
    # an edit without letter text hands over the drafted letter and says so
    plain = decide(item, _decision(item, "edit", edits={"comment": "ok"}))
    assert plain.drafts == () and plain.work_items[1]["draft_ids"] == item["draft_ids"]
    assert "left the letter as drafted" in plain.work_items[1]["what_happened"]


def test_the_drafted_letter_carries_no_internal_labels():
    """Review s19 M2: the letter listed each criterion as "[INSUFFICIENT INFORMATION]" / "[NOT MET]" to the payer."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert {r.status for r in d.results} >= {"insufficient", "met"}
    pdf = _letter_text(d)
    assert b"Criteria and" in pdf
    for internal in (b"INSUFFICIENT", b"NOT MET", b"[met]", b"attach it", b"is on record"):
        assert internal not in pdf, internal
    # the labels stay in the item's evidence for the clinician
    heads = [e["label"] for e in d.result.work_items[0]["evidence"] if e["label"].startswith("criterion ")]
    assert any(h.endswith("INSUFFICIENT INFORMATION") for h in heads)


def test_rejecting_or_a_non_clinician_opens_no_submission_item():
    c, o = pap_case()
    (item,) = draft(PriorAuthContext(c), "Order", o, RULES, NOW).result.work_items
    rejected = decide(item, _decision(item, "reject"))
    assert [i["item_id"] for i in rejected.work_items] == [item["item_id"]]
    assert rejected.work_items[0]["state"] == "rejected"
    assert decide(item, _decision(item, "approve", actor_role="front_desk")).work_items == ()  # refused


# ------------------------------------------------------------------------- review s18 S6 / S15 / S8
def _fax(decision: str = "approved", reference: str | None = None, cid: str = "fx1", **kw: Any) -> dict[str, Any]:
    extracted = [{"field": "decision", "value": decision, "page": 1, "start": 0, "end": 3, "source": "rules"}]
    if reference:
        extracted.append(
            {"field": "reference", "value": reference, "page": 1, "start": 9, "end": 20, "source": "rules"}
        )
    fax = {
        "practice_id": P,
        "classification_id": cid,
        "doc_class": "prior_auth_response",
        "kind": f"pa.{decision}",
        "abstained": False,
        "misdirected": False,
        "needs_human_read": False,
        "extractor": "rules",
        "patient_match": "matched",
        "patient_id": PT,
        "pages": [1],
        "storage_uri": "file:///fax/fx1.pdf",
        "extracted": extracted,
        "source": SRC,
    }
    fax.update(kw)
    return fax


def _signed(d) -> dict:
    return apply_decision(
        d.result.work_items[0],
        {
            "decision_id": "dec1",
            "option": "edit",
            "actor": "dr",
            "decided_at": NOW + 10,
            "practice_id": P,
            "item_id": d.state["item_id"],
        },  # type: ignore[typeddict-item]
    )


@pytest.mark.parametrize(
    ("fax_kw", "why"),
    [
        ({}, "it names no reference"),  # trusted, but the patient's only open request is a guess
        ({"reference": "WRONG-1"}, "it names no reference"),  # another request's number
        ({"reference": "AID", "abstained": True}, "not read reliably"),
        ({"reference": "AID", "extractor": "rules+llm"}, "not read reliably"),  # an LLM relabel (S18)
        ({"reference": "AID", "needs_human_read": True}, "not read reliably"),
    ],
)
def test_an_unmatched_or_untrusted_faxed_decision_is_evidence_and_never_moves_the_authorization(fax_kw, why):
    """Review s18 S6: a faxed "approved" set the patient's only open authorization to approved and
    replaced the clinician's options, whatever the fax named or however it was read."""
    from practiceflow.processors.workflows.prior_auth.faxed import on_fax_decision

    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed = _signed(d)
    kw = dict(fax_kw)
    if kw.get("reference") == "AID":
        kw["reference"] = d.state["authorization_id"]
    result, st = on_fax_decision(d.state, _fax(**kw), signed, NOW + 1000)
    assert st["status"] == "drafted" and st["authorization_number"] is None
    assert result.work_items == ()  # the signed item stays closed; the fax's own billing item has it
    (audit,) = result.audit
    assert audit.action == "prior_auth_fax_unconfirmed" and why in audit.reason
    # on the open sign-off item: a revision with the fax first in the evidence, options kept
    result, st = on_fax_decision(d.state, _fax(**kw), None, NOW + 1000)
    (item,) = result.work_items
    assert item["item_id"] == d.state["item_id"] and item["kind"] == "prior_auth.sign_off"
    assert item["options"] == d.result.work_items[0]["options"] and item["revision"] == 2
    head = item["evidence"][0]
    assert head["assessment"] == "unconfirmed" and head["record_type"] == "FaxClassification"
    assert head["document_uri"] == "file:///fax/fx1.pdf" and st["status"] == "drafted"
    again, _ = on_fax_decision(st, _fax(**kw), item, NOW + 2000)
    assert again.empty  # a replayed fax changes nothing


def test_a_trusted_fax_naming_the_request_moves_it_only_once_signed():
    from practiceflow.processors.workflows.prior_auth.faxed import on_fax_decision

    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    fax = _fax("approved", reference=d.state["authorization_id"].upper())
    # not signed yet: nothing was submitted, so the sign-off options stay (evidence only)
    result, st = on_fax_decision(d.state, fax, None, NOW + 1000)
    assert st["status"] == "drafted" and result.work_items[0]["kind"] == "prior_auth.sign_off"
    # signed: the trusted fax naming our request id is the payer's answer
    result, st = on_fax_decision(d.state, fax, _signed(d), NOW + 1000)
    assert st["status"] == "approved" and result.work_items[0]["kind"] == "prior_auth.approved"
    # the payer's number already on file (a pended 278 gave it) also names the request
    pended, st2 = respond(d.state, resp("pended", number="CASE-77"), _signed(d), NOW + 500)
    result, st3 = on_fax_decision(st2, _fax("denied", reference="case 77", cid="fx2"), pended.work_items[0], NOW + 900)
    assert st3["status"] == "denied"


def _cancelled(o: dict[str, Any]) -> dict[str, Any]:
    return {**o, "control": "CA", "status": "CA"}


def test_a_cancelled_order_supersedes_its_open_sign_off_item_and_cancels_the_authorization():
    """Review s18 S15: ORM^O01 CA after the NW left "sign the drafts" open for an order that no longer exists."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    out = draft(PriorAuthContext(c, d.state), "Order", _cancelled(o), RULES, NOW + 5000)
    (item,) = out.result.work_items
    assert item["item_id"] == d.state["item_id"] and item["state"] == "superseded" and item["revision"] == 2
    assert item["outcome"] == "order cancelled"
    assert out.state is not None and out.state["status"] == "cancelled"
    assert [a.action for a in out.result.audit] == ["prior_auth_cancelled"]
    # a completed order (performed) is not a cancelled one: nothing is superseded
    done = draft(PriorAuthContext(c, d.state), "Order", {**o, "status": "completed"}, RULES, NOW + 5000)
    assert done.result.empty and done.state is None
    # the order re-sent (or cancelled again) changes nothing now
    assert draft(PriorAuthContext(c, out.state), "Order", o, RULES, NOW + 6000).result.empty
    assert draft(PriorAuthContext(c, out.state), "Order", _cancelled(o), RULES, NOW + 6000).result.empty


def test_a_cancelled_order_after_sign_off_asks_billing_to_withdraw_the_request():
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed = _signed(d)
    out = draft(PriorAuthContext(c, d.state, item=signed), "Order", _cancelled(o), RULES, NOW + 5000)
    (item,) = out.result.work_items
    assert item["item_id"] != d.state["item_id"] and item["queue"] == "billing" and item["state"] == "open"
    assert item["kind"] == "prior_auth.cancelled" and d.state["authorization_id"] in item["what_happened"]
    assert out.state is not None and out.state["status"] == "cancelled"


def test_a_failed_check_is_a_triage_item_with_ids_only():
    """Review s18 S8: a failing step was an audit event only; nobody reads the audit trail as a queue."""
    from practiceflow.processors.workflows.prior_auth.step import failed_check_item

    _c, o = mri_case()
    item = failed_check_item(P, PT, "Order", {**o, "ordering_provider": "Smith, Jo"}, "KeyError", NOW)
    assert item["queue"] == "triage" and item["kind"] == "prior_auth.check_failed" and item["state"] == "open"
    assert item["subject_id"] == "ord-mri" and item["patient_id"] == PT and "KeyError" in item["what_happened"]
    assert "Smith" not in json.dumps(item) and "Doe" not in json.dumps(item)
    assert failed_check_item(P, PT, "Order", o, "KeyError", NOW) == failed_check_item(
        P, PT, "Order", o, "KeyError", NOW
    )


def test_a_rule_read_fax_naming_the_orders_procedure_code_names_the_request():
    """The fax extractor reads a payer decision's CPT / HCPCS code; it names the request as its reference would."""
    from practiceflow.processors.workflows.fax.extract import RuleExtractor
    from practiceflow.processors.workflows.prior_auth.faxed import fax_matches

    page = (
        "PRIOR AUTHORIZATION DETERMINATION\nPlan: Acme Health\nMember ID: W123\n"
        "Procedure code: 72148 MRI lumbar spine\nReference number: ACME-55321\nDecision: APPROVED\n"
    )
    found = RuleExtractor().extract("prior_auth_response", [page], [1])
    assert {e.field: e.value for e in found}["procedure_code"] == "72148"
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    extracted = [{"field": e.field, "value": e.value} for e in found]
    assert fax_matches(d.state, {"extracted": extracted})
    other = [e for e in extracted if e["field"] != "procedure_code"]
    assert not fax_matches(d.state, {"extracted": other})  # the payer's own number is not ours


def test_an_orm_o01_ca_after_the_nw_supersedes_the_sign_off_item():
    """Review s18 S15, through the HL7 normalizer: the sample day's MRI order (NW), then its cancel (CA)."""
    from datetime import date

    from practiceflow.processors.hl7.normalize import normalize_hl7
    from practiceflow.sampleday import prior_auth as spa
    from practiceflow.sampleday.people import make_people

    person = spa.patients(make_people(40, 7))[0]
    msgs = spa.history(person, 0, date(2026, 11, 27), iter(range(700001, 799999)))
    ctx, orders = None, []
    for raw in msgs:
        for rec in normalize_hl7(raw, P, NOW).records:
            if ctx is None and rec.value.get("patient_id"):
                ctx = snap.empty(P, rec.value["patient_id"])
            if ctx is not None and rec.value.get("patient_id") == ctx.patient_id:
                ctx = snap.apply(ctx, rec.record_type, rec.value)
            if rec.record_type == "Order" and rec.value["order_id"] == spa.order_id(0):
                orders.append(rec.value)
    assert ctx is not None and len(orders) == 1
    d = draft(PriorAuthContext(ctx), "Order", orders[0], RULES, NOW)
    assert d.state is not None and d.result.work_items[0]["kind"] == "prior_auth.sign_off"
    cancel = msgs[-1].replace(b"ORC|NW|", b"ORC|CA|").replace(b"|P700", b"|C700")
    (ca,) = [r.value for r in normalize_hl7(cancel, P, NOW + 60_000).records if r.record_type == "Order"]
    assert ca["order_id"] == spa.order_id(0) and ca["control"] == "CA"
    out = draft(PriorAuthContext(ctx, d.state), "Order", ca, RULES, NOW + 60_000)
    (item,) = out.result.work_items
    assert item["item_id"] == d.state["item_id"] and item["state"] == "superseded"
    assert out.state is not None and out.state["status"] == "cancelled"


# ------------------------------------------------------------------------- review s19 S3
def _code_fax(decision: str = "approved", code: str = "72148", cid: str = "fx-code") -> dict[str, Any]:
    """A trusted, rule-read fax naming the procedure code only (no reference)."""
    fax = _fax(decision, cid=cid)
    fax["extracted"] = [*fax["extracted"], {"field": "procedure_code", "value": code, "page": 1, "source": "rules"}]
    return fax


def _approved_and_pended() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The same CPT code on an earlier, approved request and a new, pended one (an imaging renewal)."""
    c, o = mri_case()
    first = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    _r, approved = respond(first.state, resp("approved", number="OLD-1", rid="r-old"), _signed(first), NOW + 100)
    second = draft(PriorAuthContext(c), "Order", {**o, "order_id": "ord-mri-2"}, RULES, NOW + 200)
    assert second.state is not None and second.state["authorization_id"] != approved["authorization_id"]
    pended_result, pended = respond(second.state, resp("pended", number=None, rid="r-new"), None, NOW + 300)
    return approved, pended, pended_result.work_items[0]


def test_a_fax_naming_two_of_the_patients_requests_is_evidence_only():
    """Review s19 S3: the same code on an approved and a pended request; a trusted fax with that code
    (a re-faxed copy of the old approval) was applied to "the open one" and marked the new request approved."""
    from practiceflow.processors.workflows.prior_auth.faxed import fax_target, on_fax_decision

    approved, pended, pended_item = _approved_and_pended()
    fax = _code_fax("approved")
    target, ambiguous = fax_target([approved, pended], fax)
    assert ambiguous and target is not None and target["authorization_id"] == pended["authorization_id"]
    result, st = on_fax_decision(pended, fax, pended_item, NOW + 1000, ambiguous=ambiguous)
    assert st["status"] == "pended" and st["authorization_number"] is None  # the pended one stays pended
    (item,) = result.work_items
    assert item["kind"] == "prior_auth.pended" and item["evidence"][0]["assessment"] == "unconfirmed"
    (audit,) = result.audit
    assert audit.action == "prior_auth_fax_unconfirmed" and "more than one" in audit.reason
    # one request named alone is still applied (signed and pended: with the payer)
    alone, unambiguous = fax_target([pended], fax)
    assert alone is pended and not unambiguous
    _r, st = on_fax_decision(pended, fax, pended_item, NOW + 1000, ambiguous=unambiguous)
    assert st["status"] == "approved"
    # the patient's only open request, named by nothing, is a target for evidence only
    other = _code_fax("approved", code="99999")
    assert fax_target([approved, pended], other) == (pended, False)


# ------------------------------------------------------------------------- review s19 S2
def _signed_and_submit(billing: str | None = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The draft, the signed sign-off item, and the billing office's submit item (``billing``: its decision)."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    signed, submit = decide(d.result.work_items[0], _decision(d.result.work_items[0], "edit")).work_items
    if billing is not None:
        (submit,) = decide(submit, _decision(submit, billing, "dec-billing", actor_role="billing")).work_items
    return d, signed, submit


def test_a_cancelled_order_supersedes_the_open_submit_item_and_asks_for_no_withdrawal():
    """Review s19 S2: billing had "submit the signed request" and "withdraw it" open for one cancelled order."""
    from practiceflow.processors.workflows.prior_auth.step import submit_item_id

    d, signed, submit = _signed_and_submit()
    assert submit_item_id(d.state, signed) == submit["item_id"] and submit["state"] == "open"
    c, o = mri_case()
    ctx = PriorAuthContext(c, d.state, item=signed, submit_item=submit)
    out = draft(ctx, "Order", _cancelled(o), RULES, NOW + 5000)
    (item,) = out.result.work_items  # no withdraw item: nothing went to the payer
    assert (
        item["item_id"] == submit["item_id"] and item["state"] == "superseded" and item["outcome"] == "order cancelled"
    )
    assert item["revision"] == submit["revision"] + 1 and item["kind"] == "prior_auth.submit"
    assert out.state is not None and out.state["status"] == "cancelled"


@pytest.mark.parametrize(("billing", "withdraw"), [("approve", True), ("reject", False)])
def test_a_cancelled_order_asks_billing_to_withdraw_only_a_submitted_request(billing, withdraw):
    """Submitted (the submit item done): withdraw it; billing could not submit it (rejected): nothing to do."""
    d, signed, submit = _signed_and_submit(billing)
    c, o = mri_case()
    out = draft(
        PriorAuthContext(c, d.state, item=signed, submit_item=submit), "Order", _cancelled(o), RULES, NOW + 5000
    )
    assert out.state is not None and out.state["status"] == "cancelled"
    assert [i["kind"] for i in out.result.work_items] == (["prior_auth.cancelled"] if withdraw else [])
    if withdraw:
        assert "marked the request submitted" in out.result.work_items[0]["what_happened"]


def test_a_cancelled_order_whose_sign_off_was_rejected_opens_nothing():
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    (rejected,) = decide(d.result.work_items[0], _decision(d.result.work_items[0], "reject")).work_items
    out = draft(PriorAuthContext(c, d.state, item=rejected), "Order", _cancelled(o), RULES, NOW + 5000)
    assert out.result.work_items == () and out.state is not None and out.state["status"] == "cancelled"
    assert [a.action for a in out.result.audit] == ["prior_auth_cancelled"]


def test_a_cancelled_order_pended_with_the_payer_supersedes_the_item_and_asks_for_a_withdrawal():
    """A pended request is with the payer by definition, even while the clinician's item is open."""
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    pended, st = respond(d.state, resp("pended", number="CASE-9"), None, NOW + 100)
    out = draft(PriorAuthContext(c, st, item=pended.work_items[0]), "Order", _cancelled(o), RULES, NOW + 5000)
    closed, withdraw = out.result.work_items
    assert closed["item_id"] == d.state["item_id"] and closed["state"] == "superseded"
    assert withdraw["kind"] == "prior_auth.cancelled" and withdraw["queue"] == "billing"
    assert "The payer has the request (pended)" in withdraw["what_happened"]


def test_a_faxed_decision_moves_a_signed_request_only_once_billing_submitted_it():
    """Review s19 S2 (on_fax_decision): signed is not submitted; while the submit item is open, a fax that
    names the request by its procedure code only is not applied. Review s20 S2: it was put on no item
    (the sign-off item is done); now the open submit item carries it ("the payer may already have answered")."""
    from practiceflow.processors.workflows.prior_auth.faxed import on_fax_decision

    d, signed, submit = _signed_and_submit()
    fax = _code_fax("approved")
    result, st = on_fax_decision(d.state, fax, signed, NOW + 1000, submit_item=submit)
    assert st["status"] == "drafted"
    assert "not submitted yet" in result.audit[0].reason
    (noted,) = result.work_items
    assert noted["item_id"] == submit["item_id"] and noted["state"] == "open"
    assert noted["revision"] == submit["revision"] + 1 and noted["evidence"][0]["assessment"] == "unconfirmed"
    assert "may already have answered" in noted["what_happened"]
    _d, signed, done = _signed_and_submit("approve")
    _r, st = on_fax_decision(d.state, fax, signed, NOW + 1000, submit_item=done)
    assert st["status"] == "approved"


def test_a_trusted_fax_quoting_our_authorization_id_is_applied_while_the_submit_item_is_open():
    """Review s20 S2: billing is told to quote our authorization id; a payer's answer quoting it proves the
    request went out, even before billing clicks "Submitted". It was dropped for good (no item, and a replay
    did nothing); now it is applied and the open submit item is closed ("the payer answered")."""
    from practiceflow.processors.workflows.prior_auth.faxed import on_fax_decision

    d, signed, submit = _signed_and_submit()
    aid = d.state["authorization_id"]
    result, st = on_fax_decision(d.state, _fax("approved", reference=aid), signed, NOW + 1000, submit_item=submit)
    assert st["status"] == "approved"
    assert st["authorization_number"] is None  # our own id is no payer number (review s20 N3)
    by_id = {i["item_id"]: i for i in result.work_items}
    closed = by_id[submit["item_id"]]
    assert closed["state"] == "done" and closed["outcome"] == "the payer answered"
    assert closed["revision"] == submit["revision"] + 1
    assert [i["kind"] for i in result.work_items if i["item_id"] != submit["item_id"]] == ["prior_auth.approved"]
    # not signed yet: nothing can have gone out, the reference does not change that
    _r, unsigned = on_fax_decision(d.state, _fax("approved", reference=aid), None, NOW + 1000)
    assert unsigned["status"] == "drafted"


def test_a_payers_278_answer_closes_the_open_submit_item_in_the_pure_step():
    """Review s20 S2 (second half): respond() left the billing office's submit item open when a 278 (or a
    PAS answer, or a confirmation: all go through respond) arrived before billing clicked "Submitted".
    Another decision's submit item, or one already done, is left alone; a replayed answer adds nothing."""
    d, signed, submit = _signed_and_submit()
    answer = {"response_id": "r-278", "decision": "approved", "authorization_number": "AUTH7", "source": SRC}
    result, st = respond(d.state, answer, signed, NOW + 1000, submit_item=submit)
    assert st["status"] == "approved"
    by_id = {i["item_id"]: i for i in result.work_items}
    closed = by_id[submit["item_id"]]
    assert (closed["state"], closed["outcome"], closed["revision"]) == ("done", "the payer answered", 2)
    again, _st = respond(st, answer, signed, NOW + 2000, submit_item=submit)
    assert again.work_items == ()
    other = {**submit, "item_id": "another-decisions-submit-item"}
    _d, _signed, done = _signed_and_submit("approve")
    for item in (other, done):
        result, _st = respond(d.state, answer, signed, NOW + 1000, submit_item=item)
        assert [i["kind"] for i in result.work_items] == ["prior_auth.approved"]
