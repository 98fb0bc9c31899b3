"""Review s19 S4: a person's confirmation of a faxed payer decision moves the authorization.

The fax's billing item (processors/workflows/fax/handoffs.py) offers "confirm" options once the
prior-auth agent found the fax's authorization; the ``fax`` follow-up turns a confirming decision
into a ``prior_auth`` command, which the prior-auth step applies as a response. Before, the item
offered only file / acknowledge, no follow-up existed for ``fax``, and the authorization stayed as it was.
"""

from __future__ import annotations

from typing import Any

from practiceflow.processors.workflows.decisions import FOLLOW_UPS, decide
from practiceflow.processors.workflows.fax.handoffs import item_for
from practiceflow.processors.workflows.prior_auth.confirm import (
    confirmed_response,
    fax_follow_up,
    with_confirm_options,
)
from practiceflow.processors.workflows.prior_auth.faxed import on_fax_decision
from practiceflow.processors.workflows.prior_auth.step import respond
from tests.processors.test_prior_auth import NOW, P
from tests.processors.test_prior_auth_sign_off import _decision, _fax, _signed_and_submit


def billing_fax(reference: str, decision: str = "approved", **kw: Any) -> dict[str, Any]:
    """A faxed decision the language model read (never applied by itself), routed to billing."""
    return _fax(decision, reference=reference, extractor="rules+llm", queue="billing", confidence=0.97, **kw)


def _unconfirmed() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    d, signed, _submit = _signed_and_submit("approve")
    fax = billing_fax(d.state["authorization_id"])
    result, state = on_fax_decision(d.state, fax, signed, NOW + 1000)
    assert state["status"] == "drafted" and [a.action for a in result.audit] == ["prior_auth_fax_unconfirmed"]
    fax_item = item_for(fax, NOW + 500)
    assert fax_item is not None and fax_item["queue"] == "billing" and fax_item["kind"] == "fax.prior_auth_response"
    return state, signed, fax, fax_item


def _billing(item: dict[str, Any], opt: str, decision_id: str = "dec-fax", **kw: Any) -> dict[str, Any]:
    return _decision(item, opt, decision_id, actor="biller-1", actor_role="billing", **kw)


def test_confirming_a_faxed_decision_on_the_fax_item_moves_the_authorization():
    state, signed, _fax_v, fax_item = _unconfirmed()
    aid = state["authorization_id"]
    offered = with_confirm_options(fax_item, state, "approved", NOW + 1000)
    assert offered is not None and offered["item_id"] == fax_item["item_id"] and offered["revision"] == 2
    by_option = {o["option"]: o for o in offered["options"]}
    assert by_option["approve"]["target"] == aid and by_option["edit"]["target"] == aid
    assert by_option["edit"]["editable_fields"] == ["decision", "authorization_number"]
    assert {"file", "acknowledge"} <= set(by_option)  # filing still changes nothing
    assert with_confirm_options(offered, state, "approved", NOW + 2000) is None  # a replay offers nothing new
    assert FOLLOW_UPS["fax"] is fax_follow_up
    # the biller confirms what the fax says: a prior_auth command for this authorization
    out = decide(offered, _billing(offered, "approve"))
    closed, *rest = out.work_items
    assert closed["state"] == "done" and rest == []
    (cmd,) = out.commands
    assert cmd["kind"] == "prior_auth" and cmd["workflow"] == "prior_auth" and cmd["practice_id"] == P
    assert cmd["params"]["authorization_id"] == aid and cmd["params"]["decision"] == "approved"
    assert cmd["params"]["authorization_number"] == ""  # the fax quotes our own id: no payer number (s20 N3)
    assert decide(offered, _billing(offered, "approve")).commands == out.commands  # replay-stable id
    # the prior-auth step applies it: state, and the clinician told (the sign-off item is closed: a new item)
    result, after = respond(state, confirmed_response(cmd), signed, NOW + 3000)
    assert after["status"] == "approved" and after["responses"][-1] == "confirm:dec-fax"
    (notice,) = result.work_items
    assert notice["kind"] == "prior_auth.approved" and notice["queue"] == "clinician" and notice["state"] == "open"
    assert "biller-1" in notice["evidence"][0]["excerpt"]
    again, same = respond(after, confirmed_response(cmd), notice, NOW + 4000)
    assert again.empty and same["status"] == "approved"


def test_confirming_another_decision_or_filing():
    state, signed, _fax_v, fax_item = _unconfirmed()
    offered = with_confirm_options(fax_item, state, "approved", NOW + 1000)
    assert offered is not None
    denied = decide(offered, _billing(offered, "edit", edits={"decision": "Denied", "authorization_number": "D-1"}))
    (cmd,) = denied.commands
    assert cmd["params"]["decision"] == "denied" and cmd["params"]["authorization_number"] == "D-1"
    _r, after = respond(state, confirmed_response(cmd), signed, NOW + 3000)
    assert after["status"] == "denied" and after["authorization_number"] == "D-1"
    # a decision word that is none of approved / denied / pended changes nothing, and says so
    odd = decide(offered, _billing(offered, "edit", "dec-odd", edits={"decision": "maybe"}))
    assert odd.commands == () and any(a.action == "prior_auth_confirm_refused" for a in odd.audit)
    # filing the fax changes nothing
    assert decide(offered, _billing(offered, "file", "dec-file")).commands == ()
    # an item that was never offered the confirmation (no authorization found) yields nothing either
    assert decide(fax_item, _billing(fax_item, "acknowledge", "dec-ack")).commands == ()
