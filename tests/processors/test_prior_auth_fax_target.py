"""Review s20 S1, N1, S3, N3: which request a faxed payer decision is about, and what a person may confirm.

S1: a reference (our authorization id, the payer's number on file) outranks a procedure code; a renewal's
approval quoting our id and printing the shared CPT code was ambiguous and waited for a person.
N1: a fax naming two requests, none open, went to the patient's only open one, which it did not name.
S3: the one-click confirmation was offered for a guessed request, and applied to a cancelled one.
N3: our own authorization id, quoted on the fax, was stored as the payer's number.
"""

from __future__ import annotations

from typing import Any

from practiceflow.processors.workflows.decisions import decide
from practiceflow.processors.workflows.fax.handoffs import item_for
from practiceflow.processors.workflows.prior_auth.confirm import (
    apply_confirmation,
    confirmed_response,
    offer_confirmation,
)
from practiceflow.processors.workflows.prior_auth.faxed import fax_target, on_fax_decision
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft, respond
from tests.processors.test_prior_auth import NOW, RULES, mri_case, resp
from tests.processors.test_prior_auth_confirm import _billing, billing_fax
from tests.processors.test_prior_auth_sign_off import _approved_and_pended, _code_fax, _signed, _signed_and_submit


def _with_reference(fax: dict[str, Any], reference: str) -> dict[str, Any]:
    extra = {"field": "reference", "value": reference, "page": 1, "start": 9, "end": 20, "source": "rules"}
    return {**fax, "extracted": [*fax["extracted"], extra]}


def _billing_item(fax: dict[str, Any]) -> dict[str, Any]:
    """The fax's billing item as processors/workflows/fax builds it."""
    fax = {**fax, "queue": "billing", "confidence": 0.97}
    for e in fax["extracted"]:
        e.setdefault("start", 0)
        e.setdefault("end", 5)
    item = item_for(fax, NOW + 500)
    assert item is not None and item["kind"] == "fax.prior_auth_response"
    return item


def test_a_reference_outranks_a_shared_procedure_code():
    """S1: a renewal approval quoting the pended request's id (and the CPT code the approved one shares)."""
    approved, pended, pended_item = _approved_and_pended()
    fax = _with_reference(_code_fax("approved"), pended["authorization_id"])
    target, ambiguous = fax_target([approved, pended], fax)
    assert target is pended and not ambiguous
    _r, st = on_fax_decision(pended, fax, pended_item, NOW + 1000, ambiguous=ambiguous)
    assert st["status"] == "approved"
    # the payer's number on file names a request too (here the approved one's, a re-faxed old approval)
    old = _with_reference(_code_fax("approved", cid="fx-old"), "old 1")
    target, ambiguous = fax_target([approved, pended], old)
    assert target is approved and not ambiguous
    # the pended one is never touched by it (the agent steps only the target)
    assert pended["status"] == "pended"


def test_a_fax_naming_two_requests_none_open_goes_to_none_of_the_others():
    """N1: two approved requests with code X, one pended with code Y, a fax with code X: no target."""
    approved, pended, _item = _approved_and_pended()
    second = {**approved, "authorization_id": "pa-second", "order_id": "ord-mri-0"}
    other = {**pended, "code": "97110"}
    target, ambiguous = fax_target([approved, second, other], _code_fax("approved"))
    assert target is None and ambiguous


def test_no_one_click_confirmation_for_a_fax_naming_more_than_one_request():
    """S3: a re-faxed OLD approval (code only) is ambiguous; the fax's billing item offered
    "Confirm: approved" for the NEW pended request, and one click approved it."""
    approved, pended, pended_item = _approved_and_pended()
    fax = _code_fax("approved")
    target, ambiguous = fax_target([approved, pended], fax)
    assert ambiguous and target is pended
    result, st = on_fax_decision(target, fax, pended_item, NOW + 1000, ambiguous=ambiguous)
    assert st["status"] == "pended"
    offered = offer_confirmation(_billing_item(fax), st, fax, result, ambiguous=ambiguous, now=NOW + 1000)
    assert offered is None  # the fax item keeps file / acknowledge: no option targets any authorization
    # a fax naming no request (the patient's only open one is a guess): no confirmation either
    unnamed = _code_fax("approved", code="99999", cid="fx-none")
    target, ambiguous = fax_target([approved, pended], unnamed)
    assert target is pended and not ambiguous
    result, st = on_fax_decision(target, unnamed, pended_item, NOW + 1000, ambiguous=ambiguous)
    assert offer_confirmation(_billing_item(unnamed), st, unnamed, result, ambiguous=False, now=NOW + 1000) is None


def test_a_confirmation_names_the_service_and_code_and_is_refused_once_the_request_is_no_longer_waiting():
    """S3: the option named the request by its opaque id only; and a confirmation clicked after the order
    was cancelled (or a 278 decided it) turned the request approved."""
    d, signed, _submit = _signed_and_submit("approve")
    aid = d.state["authorization_id"]
    fax = billing_fax(aid)
    result, st = on_fax_decision(d.state, fax, signed, NOW + 1000)
    offered = offer_confirmation(_billing_item(fax), st, fax, result, ambiguous=False, now=NOW + 1000)
    assert offered is not None
    approve = next(o for o in offered["options"] if o["option"] == "approve")
    assert approve["target"] == aid
    assert "MRI lumbar spine" in approve["label"] and "72148" in approve["label"] and "drafted" in approve["label"]
    (cmd,) = decide(offered, _billing(offered, "approve")).commands
    for status in ("cancelled", "approved", "denied"):
        gone = {**st, "status": status}
        out, after, applied = apply_confirmation(gone, cmd, signed, NOW + 3000)
        assert not applied and after["status"] == status and out.work_items == ()
        assert [a.action for a in out.audit] == ["prior_auth_confirm_refused"]
        again, _same, _ = apply_confirmation(after, cmd, signed, NOW + 4000)
        assert again.empty  # a replay adds nothing
    # still waiting: applied
    out, after, applied = apply_confirmation(st, cmd, signed, NOW + 3000)
    assert applied and after["status"] == "approved"
    # a cancelled request is offered nothing in the first place
    assert (
        offer_confirmation(
            _billing_item(fax), {**st, "status": "cancelled"}, fax, result, ambiguous=False, now=NOW + 1000
        )
        is None
    )


def test_our_own_authorization_id_on_a_fax_is_not_the_payers_number():
    """N3: the clinician's item read "Prior authorization approved: ... - #pa99b44c..." (our id)."""
    d, signed, _submit = _signed_and_submit("approve")
    aid = d.state["authorization_id"]
    fax = billing_fax(aid)
    result, st = on_fax_decision(d.state, fax, signed, NOW + 1000)
    offered = offer_confirmation(_billing_item(fax), st, fax, result, ambiguous=False, now=NOW + 1000)
    assert offered is not None
    (cmd,) = decide(offered, _billing(offered, "approve")).commands
    assert confirmed_response(cmd)["authorization_number"] is None
    out, after, _ = apply_confirmation(st, cmd, signed, NOW + 3000)
    assert after["authorization_number"] is None and "#" not in out.work_items[0]["title"]
    # applied directly (trusted, submitted): the same
    c, o = mri_case()
    dd = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    pended_result, pended = respond(dd.state, resp("pended", number=None), _signed(dd), NOW + 100)
    from tests.processors.test_prior_auth_sign_off import _fax

    out, st2 = on_fax_decision(pended, _fax("approved", reference=aid.upper()), pended_result.work_items[0], NOW + 900)
    assert st2["status"] == "approved" and st2["authorization_number"] is None
