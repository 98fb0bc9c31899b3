"""A Da Vinci PAS ClaimResponse updates the authorization it answers, exactly as a 278 response does (issue 11).

Through the real FHIR normalizer (ClaimResponse -> ``ClaimAdjudication`` with ``use``
preauthorization) and the real step (``respond``); the public Da Vinci test-kit response
is matched to nothing of ours and becomes a billing item."""

from __future__ import annotations

import json
from typing import Any

import pytest

from practiceflow.processors.fhir import normalize_fhir
from practiceflow.processors.workflows.prior_auth.pas_response import (
    as_response,
    decision_of,
    is_pas_response,
    request_ids,
    unmatched_item,
)
from practiceflow.processors.workflows.prior_auth.step import PriorAuthContext, draft, respond
from practiceflow.sampleday import prior_auth as spa
from tests.fixtures import require_corpus
from tests.processors.test_prior_auth import NOW, RULES, mri_case


class _Person:  # what sampleday.pas_response reads of a person
    mrn = "MRN100"
    payer_name = "Acme Health"


def _normalized(text: str, practice: str = "clinic-a") -> dict[str, Any]:
    result = normalize_fhir(text.encode(), practice, NOW)
    (adj,) = [r.value for r in result.records if r.record_type == "ClaimAdjudication"]
    return adj


def _drafted():
    c, o = mri_case()
    d = draft(PriorAuthContext(c), "Order", o, RULES, NOW)
    assert d.state is not None and d.state["status"] == "drafted"
    return d


def _answer(d, code: str = "A1", number: str | None = "PAS-77", **kw: Any) -> dict[str, Any]:
    text = spa.pas_response("clinic-a", _Person(), 0, code, number, request_id=d.state["authorization_id"], **kw)
    return _normalized(text)


@pytest.mark.parametrize(("code", "state"), [("A1", "approved"), ("A4", "pended"), ("A3", "denied")])
def test_a_pas_response_naming_our_claim_moves_the_authorization_like_a_278(code, state):
    d = _drafted()
    adj = _answer(d, code)
    assert is_pas_response(adj) and request_ids(adj) == (d.state["authorization_id"],)
    result, new_state = respond(d.state, as_response(adj), None, NOW + 1000)
    (item,) = result.work_items
    assert item["item_id"] == d.state["item_id"] and item["revision"] == 2 and item["kind"] == f"prior_auth.{state}"
    head = item["evidence"][0]
    assert head["record_type"] == "ClaimAdjudication" and head["assessment"] == state and head["ref"] == "PAS-77"
    assert new_state["status"] == state and new_state["authorization_number"] == "PAS-77"
    assert [a.action for a in result.audit] == ["prior_auth_response"]
    again, same = respond(new_state, as_response(adj), item, NOW + 2000)
    assert again.empty and same == new_state  # a replayed response changes nothing


def test_decision_without_review_action_and_with_several_lines():
    d = _drafted()
    queued = _answer(d, "A1", None, outcome="queued")
    queued["lines"] = []
    assert decision_of(queued) == "pended"
    errored = {**queued, "outcome": "error"}
    assert decision_of(errored) == "other"  # a person reads it; never guessed as approved
    mixed = {**queued, "lines": [{"remark_codes": ["HCR01:A1"]}, {"remark_codes": ["HCR01:A3"]}]}
    assert decision_of(mixed) == "partially_approved"
    waiting = {**queued, "lines": [{"remark_codes": ["HCR01:A3"]}, {"remark_codes": ["HCR01:A4"]}]}
    assert decision_of(waiting) == "pended"


def test_claims_and_ordinary_claim_responses_are_not_pas():
    assert not is_pas_response({"use": "claim"}) and not is_pas_response({"use": None})


def test_the_da_vinci_test_kit_response_is_read_and_matched_to_nothing_of_ours():
    path = require_corpus("fhir") / "davinci_pas_response_bundle_approved.json"
    adj = _normalized(path.read_text(encoding="utf-8-sig"), "corpus")
    # the number rides only in the reviewAction's `number` (no preAuthRef): read from there
    assert adj["use"] == "preauthorization" and adj["authorization_number"] == "AUTH0001"
    resp = as_response(adj)
    assert (resp["decision"], resp["action_code"]) == ("approved", "A1")
    assert request_ids(adj) == ("111099",)  # its trace identifier: no request of ours
    item = unmatched_item(adj, NOW)
    assert item["queue"] == "billing" and item["kind"] == "prior_auth.response_unmatched"
    assert item["produced_by"]["rule_id"] == "prior_auth.pas_response"
    (ev,) = item["evidence"]
    assert ev["record_type"] == "ClaimAdjudication" and ev["ref"] == "AUTH0001" and "111099" in ev["excerpt"]
    assert item == unmatched_item(adj, NOW)  # deterministic: a replay rewrites the same item
    assert json.dumps(item)  # plain data


def test_a_claim_response_updated_in_place_moves_the_authorization_and_a_replay_does_not():
    """Review s20 S5: the payer pends, then approves by updating the same ClaimResponse (same id,
    version 2). Keyed by the resource id alone, the approval was "seen before" and ignored."""
    d = _drafted()
    pended = _answer(d, "A4", None, version=1)
    approved = _answer(d, "A1", "PAS-77", version=2)
    assert pended["adjudication_id"] == approved["adjudication_id"]  # one ClaimResponse, two versions
    r1, st = respond(d.state, as_response(pended), None, NOW + 1000)
    assert st["status"] == "pended" and len(r1.work_items) == 1
    r2, st2 = respond(st, as_response(approved), r1.work_items[0], NOW + 2000)
    assert st2["status"] == "approved" and st2["authorization_number"] == "PAS-77"
    (item,) = r2.work_items
    assert item["kind"] == "prior_auth.approved" and item["revision"] == 3
    assert [a.action for a in r2.audit] == ["prior_auth_response"]
    # replays of either version (a re-read, a redelivered notification) change nothing
    for replay in (approved, _answer(d, "A1", "PAS-77", version=2), pended):
        again, same = respond(st2, as_response(replay), item, NOW + 3000)
        assert again.empty and same == st2
