"""The denial step, scenario by scenario: what is drafted, the diff, the money.

Claims come from the project's own 837P writer and reader, remits from a small 835
builder (tests/denials_fixtures.py), both through ``normalize_x12``; every work item,
draft and ledger entry is validated against the committed Avro schemas.
"""

from __future__ import annotations

import json

from fastavro.validation import validate
from fhir.resources.R4B.claim import Claim

from practiceflow.processors.ehr.tasks import draft_resource
from practiceflow.processors.rules import load_table
from practiceflow.processors.workflows.denials.drafts import BillingProfile, claim_resource
from practiceflow.processors.workflows.denials.rules import load_denial_rules
from practiceflow.processors.workflows.denials.step import DenialContext, decide, descriptions_from_table
from practiceflow.processors.workflows.denials.store import (
    PatientFacts,
    claim_diff,
    fold_claim,
    fold_patient,
)
from practiceflow.schemas.avro_gen import load_parsed
from tests.denials_fixtures import (
    RemitClaim,
    claim_837,
    claim_record,
    read_adjudications,
    read_claim,
    remit_835,
)

RULES = load_denial_rules()
DESCRIPTIONS = descriptions_from_table(load_table("denials", "denials.carc_table").entries)
NOW = 1_764_600_000_000


def _valid(decision) -> None:
    for item in decision.result.work_items:
        validate(item, load_parsed("HandoffItem"), raise_errors=True)
    for d in decision.result.drafts:
        validate(d, load_parsed("Draft"), raise_errors=True)
    for e in decision.ledger:
        validate(e, load_parsed("DenialLedgerEntry"), raise_errors=True)


def _stored(*claims: dict) -> dict:
    state = None
    for c in claims:
        state = fold_claim(state, read_claim(claim_837(c)))
    assert state is not None
    return state


def _one(raw: bytes) -> dict:
    (adj,) = read_adjudications(raw)
    return adj


def _drafts(decision) -> dict[str, dict]:
    return {d["kind"]: d for d in decision.result.drafts}


def _corrected(decision) -> dict:
    return read_claim(_drafts(decision)["x12.837P"]["body"].encode())


CO4 = RemitClaim(
    "PCN1001",
    190.0,
    32.0,
    status="1",
    lines=(("99214", 150.0, 0.0, (("CO", "4", 150.0),), ("N519",)), ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ())),
)


def test_a_recoded_claim_gives_a_corrected_claim_whose_diff_is_exactly_the_fix():
    original = claim_record()
    recoded = claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0)))
    state = _stored(original, recoded)
    adj = _one(remit_835([CO4]))
    d = decide(DenialContext(state, descriptions=DESCRIPTIONS), adj, RULES, NOW)
    _valid(d)
    assert d.action == "corrected_claim"
    (item,) = d.result.work_items
    assert item["kind"] == "denials.corrected_claim" and item["queue"] == "billing" and item["state"] == "open"
    assert item["produced_by"]["rule_id"] == "denials.action.coding_modifier"
    assert set(_drafts(d)) == {"x12.837P", "fhir.Claim", "billing.write_off"}
    assert item["draft_ids"] == [x["draft_id"] for x in d.result.drafts]
    assert {o["option"] for o in item["options"]} == {"approve", "edit", "reject"}
    back = _corrected(d)
    stored_original = state["claim"]
    fix = [(c.path, c.old, c.new) for c in claim_diff(stored_original, back, replacement=False)]
    assert fix == [("lines[1].modifiers", [], ["25"])]
    markers = {c.path: (c.old, c.new) for c in claim_diff(stored_original, back) if (c.path, c.old, c.new) not in fix}
    assert markers == {
        "status": ("submitted", "replacement"),
        "frequency_code": ("1", "7"),
        "payer_claim_control_number": (None, "PAYER-CCN-1"),
    }
    assert [(c.path, c.old, c.new) for c in d.diff] == fix
    shown = {e["ref"]: e["excerpt"] for e in item["evidence"] if e["label"].startswith("corrected claim:")}
    assert shown["lines[1].modifiers"] == "[] -> ['25']"
    assert shown["frequency_code"] == "1 -> 7"
    # every adjustment is evidence with the rule that decided it
    rules = {e["ref"] for e in item["evidence"] if e["record_type"] == "ClaimAdjudication"}
    assert rules == {"denials.carc.coding_modifier@1", "denials.carc.contractual_obligation@1"}
    money = {e["category"]: e for e in d.ledger}
    assert money["coding_modifier"]["denied"] == 150.0 and money["coding_modifier"]["recoverable"] == 150.0
    assert money["coding_modifier"]["state"] == "open"
    assert money["contractual_obligation"]["written_off"] == 8.0
    assert money["contractual_obligation"]["denied"] == 0.0


def test_a_recoded_claim_is_also_drafted_as_a_fhir_claim_with_the_fix():
    """Issue 12: the corrected claim goes to the EHR as a FHIR Claim draft, same lines as the 837P."""
    state = _stored(claim_record(), claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0))))
    adj = _one(remit_835([CO4]))
    d = decide(DenialContext(state, descriptions=DESCRIPTIONS), adj, RULES, NOW)
    _valid(d)
    drafts = _drafts(d)
    draft = drafts["fhir.Claim"]
    assert draft["status"] == "draft" and draft["content_type"] == "application/fhir+json"
    assert draft["item_id"] == drafts["x12.837P"]["item_id"]
    (item,) = d.result.work_items
    assert item["draft_ids"][0] == drafts["x12.837P"]["draft_id"]  # the 837P stays the primary draft
    assert draft["draft_id"] in item["draft_ids"]
    resource = json.loads(draft["body"])
    Claim.model_validate(resource)
    assert resource["status"] == "draft" and resource["use"] == "claim"
    assert resource["type"]["coding"][0]["code"] == "professional"
    assert resource["patient"]["identifier"]["value"] == "MRN1001"
    assert resource["insurer"]["identifier"] == {"system": "urn:x12:payer-id", "value": "60054"}
    (related,) = resource["related"]
    assert related["claim"]["identifier"]["value"] == "PAYER-CCN-1"
    assert {c["code"] for c in related["relationship"]["coding"]} == {"prior", "7"}
    # the lines carry the fix and are the 837P draft's lines
    x12 = _corrected(d)
    lines = [
        (i["productOrService"]["coding"][0]["code"], [m["coding"][0]["code"] for m in i.get("modifier", [])], i["net"])
        for i in resource["item"]
    ]
    assert lines == [
        ("99214", ["25"], {"value": 150.0, "currency": "USD"}),
        ("82947", [], {"value": 40.0, "currency": "USD"}),
    ]
    assert [(ln["procedure"]["code"], ln["modifiers"], ln["charge"]) for ln in x12["lines"]] == [
        (code, mods, net["value"]) for code, mods, net in lines
    ]
    assert resource["total"]["value"] == x12["total_charge"]
    # the EHR writer writes it as a Claim, still a draft, under an id stable across replays
    built = draft_resource(draft)
    assert built is not None
    rtype, rid, written = built
    assert rtype == "Claim" and written["status"] == "draft" and written["id"] == rid
    again = decide(DenialContext(state, descriptions=DESCRIPTIONS), adj, RULES, NOW)
    assert _drafts(again)["fhir.Claim"] == draft


def test_a_claim_draft_without_the_837s_patient_names_the_835s_and_still_validates():
    fixed = {"practice_id": "p1", "claim_id": "C1", "frequency_code": "7", "payer_claim_control_number": "CCN9"}
    resource = claim_resource(fixed, {"patient_id": "MRN9"}, BillingProfile(), draft_id="draft:x", created="2026-12-02")
    assert resource["patient"]["identifier"]["value"] == "MRN9"
    assert "item" not in resource and "diagnosis" not in resource
    Claim.model_validate(resource)
    unknown = claim_resource(fixed, {}, BillingProfile(), draft_id="draft:x", created="2026-12-02")
    assert unknown["patient"]["identifier"]["value"] == "VERIFY"


def test_new_coverage_fixes_an_eligibility_denial():
    state = _stored(claim_record(member_id="W111"))
    facts = fold_patient(
        None,
        "Coverage",
        {
            "practice_id": "demo-clinic",
            "patient_id": "MRN1001",
            "coverage_id": "cov-2",
            "payer_id": "60054",
            "payer_name": "DEMO TEST PAYER",
            "member_id": "W222",
            "status": "active",
            "period_start": "2026-01-01",
        },
    )
    adj = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "31", 190.0),))]))
    d = decide(DenialContext(state, PatientFacts(tuple(facts["coverages"]))), adj, RULES, NOW)
    _valid(d)
    assert d.action == "corrected_claim"
    back = _corrected(d)
    assert [(c.path, c.old, c.new) for c in claim_diff(state["claim"], back, replacement=False)] == [
        ("member_id", "W111", "W222")
    ]
    fixes = [e for e in d.result.work_items[0]["evidence"] if e["label"].startswith("fix on file")]
    assert fixes and fixes[0]["record_type"] == "Coverage"


def test_facts_from_a_context_not_caught_up_never_draft_a_fix():
    """Review s17 MUST-FIX 3: a stale patient context sends the denial to review, no draft."""
    state = _stored(claim_record(member_id="W111"))
    facts = fold_patient(
        None,
        "Coverage",
        {
            "practice_id": "demo-clinic",
            "patient_id": "MRN1001",
            "coverage_id": "cov-2",
            "payer_id": "60054",
            "payer_name": "DEMO TEST PAYER",
            "member_id": "W222",
            "status": "active",
            "period_start": "2026-01-01",
        },
    )
    adj = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "31", 190.0),))]))
    d = decide(DenialContext(state, PatientFacts(tuple(facts["coverages"]), current=False)), adj, RULES, NOW)
    assert d.action == "review" and d.diff == ()
    assert not [x for x in d.result.drafts if x["kind"] == "x12.837P"]


def test_an_authorization_on_file_fixes_an_authorization_denial():
    state = _stored(claim_record())
    auth = {"number": "AUTH-9", "service_start": "2026-10-01", "service_end": "2026-12-31", "procedures": ["99214"]}
    facts = fold_patient(None, "Authorization", auth)
    adj = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "197", 190.0),))]))
    d = decide(DenialContext(state, PatientFacts((), tuple(facts["authorizations"]))), adj, RULES, NOW)
    assert d.action == "corrected_claim"
    back = _corrected(d)
    assert [(c.path, c.new) for c in claim_diff(state["claim"], back, replacement=False)] == [
        ("authorization_number", "AUTH-9")
    ]


def test_without_a_fix_an_authorization_denial_is_appealed():
    state = _stored(claim_record())
    adj = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "197", 190.0),))]))
    d = decide(DenialContext(state, descriptions=DESCRIPTIONS), adj, RULES, NOW)
    _valid(d)
    assert d.action == "appeal"
    letter = _drafts(d)["letter.appeal"]["body"]
    assert "PCN1001" in letter and "PAYER-CCN-1" in letter
    assert "CO-197 $190.00: Precertification/authorization/notification/pre-treatment absent." in letter


def test_medical_necessity_is_appealed_with_the_claim_as_evidence():
    state = _stored(claim_record())
    adj = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "50", 190.0),))]))
    d = decide(DenialContext(state, descriptions=DESCRIPTIONS), adj, RULES, NOW)
    assert d.action == "appeal" and d.result.work_items[0]["priority"] == "high"
    letter = _drafts(d)["letter.appeal"]["body"]
    assert "the claim as submitted (837, 2026-11-02: 99214, 82947)" in letter


def test_a_paid_claim_with_cost_share_gets_a_write_off_and_a_patient_transfer():
    adj = _one(
        remit_835(
            [
                RemitClaim(
                    "PCN2",
                    100.0,
                    60.0,
                    status="1",
                    patient_resp=20.0,
                    lines=(("99213", 100.0, 60.0, (("CO", "45", 20.0), ("PR", "2", 20.0)), ()),),
                )
            ]
        )
    )
    d = decide(DenialContext(None), adj, RULES, NOW)
    _valid(d)
    assert d.action == "write_off"
    assert set(_drafts(d)) == {"billing.write_off", "billing.patient_transfer"}
    transfer = json.loads(_drafts(d)["billing.patient_transfer"]["body"])
    assert transfer["amount"] == 20.0 and transfer["adjustments"][0]["carc"] == "2"
    states = {e["category"]: e["state"] for e in d.ledger}
    assert states == {"contractual_obligation": "written_off", "patient_responsibility": "transferred"}


def test_a_later_835_recovers_the_denied_money_with_days_to_resolution():
    state = _stored(claim_record(), claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0))))
    first = decide(DenialContext(state), _one(remit_835([CO4], date="20261201")), RULES, NOW)
    paid = RemitClaim(
        "PCN1001",
        190.0,
        182.0,
        status="1",
        pccn="PAYER-CCN-2",
        lines=(("99214", 150.0, 150.0, (), ()), ("82947", 40.0, 32.0, (("CO", "45", 8.0),), ())),
    )
    second = decide(DenialContext(first.state), _one(remit_835([paid], date="20261231", trace="EFT2")), RULES, NOW + 1)
    _valid(second)
    recovered = [e for e in second.ledger if e["recovered"]]
    assert len(recovered) == 1
    e = recovered[0]
    assert (e["category"], e["recovered"], e["state"]) == ("coding_modifier", 150.0, "recovered")
    assert (e["denied_on"], e["resolved_on"], e["days_to_resolution"]) == ("2026-12-01", "2026-12-31", 30)
    assert second.state["open"] == []
    # replaying the same 835 recovers nothing twice
    again = decide(DenialContext(second.state), _one(remit_835([paid], date="20261231", trace="EFT2")), RULES, NOW + 1)
    assert not [x for x in again.ledger if x["recovered"] and x["category"] == "coding_modifier"]


def test_a_reversal_is_linked_to_the_claim_it_reverses_and_asks_nothing():
    state = _stored(claim_record())
    paid = RemitClaim("PCN1001", 190.0, 150.0, status="1", lines=(("99214", 190.0, 150.0, (("CO", "45", 40.0),), ()),))
    first = decide(DenialContext(state), _one(remit_835([paid])), RULES, NOW)
    rev = RemitClaim(
        "PCN1001", -190.0, -150.0, status="22", lines=(("99214", -190.0, -150.0, (("CR", "45", -40.0),), ()),)
    )
    d = decide(DenialContext(first.state), _one(remit_835([rev], trace="EFT9")), RULES, NOW)
    assert not d.result.work_items and not d.result.drafts
    (reversed_id,) = [k for k, v in d.state["adjudications"].items() if v.get("reversed_by")]
    assert reversed_id in first.state["adjudications"]
    assert d.result.audit[0].action == "denial_reversal_linked"


def test_edge_cases_go_to_the_billing_coordinator():
    # the claim is not in the store: no corrected claim can be made
    adj = _one(remit_835([CO4]))
    d = decide(DenialContext(None), adj, RULES, NOW)
    _valid(d)
    assert d.action == "review" and d.result.work_items[0]["queue"] == "billing"
    assert "x12.837P" not in _drafts(d)
    # no payer claim control number (CLP07): a replacement cannot name what it replaces
    state = _stored(claim_record(), claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0))))
    no_ccn = RemitClaim("PCN1001", 190.0, 32.0, status="1", pccn=None, lines=CO4.lines)
    d = decide(DenialContext(state), _one(remit_835([no_ccn])), RULES, NOW)
    assert d.action == "review"
    assert "CLP07" in d.result.work_items[0]["what_happened"]
    # a code no rule names
    odd = _one(remit_835([RemitClaim("PCN1001", 190.0, 0.0, claim_cas=(("CO", "Z77", 190.0),))]))
    d = decide(DenialContext(state), odd, RULES, NOW)
    assert d.action == "review" and d.result.work_items[0]["produced_by"]["rule_id"] == "denials.action.needs_person"


def test_the_step_is_deterministic():
    state = _stored(claim_record(), claim_record(lines=(("99214", ("25",), 150.0), ("82947", (), 40.0))))
    adj = _one(remit_835([CO4]))
    a = decide(DenialContext(state), adj, RULES, NOW)
    b = decide(DenialContext(state), adj, RULES, NOW)
    assert a.result == b.result and a.ledger == b.ledger and a.state == b.state


def test_plb_adjustments_go_to_the_ledger_and_recoupments_to_billing():
    from practiceflow.processors.workflows.denials.plb import plb_step
    from practiceflow.processors.x12.normalize import normalize_x12
    from tests.denials_fixtures import PID

    table = load_table("denials", "denials.plb_reasons")
    reasons = {e["code"]: e for e in table.entries}
    raw = remit_835([CO4], plb=["PLB*1234567893*20261231*WO:PCN0999*25.00*L6*-1.23"])
    plbs = [r.value for r in normalize_x12(raw, PID, 0).records if r.record_type == "ProviderAdjustment"]
    assert [p["reason"] for p in plbs] == ["WO", "L6"]
    wo, l6 = (plb_step(p, reasons, table.version, NOW) for p in plbs)
    (item,) = wo[0].work_items
    assert item["kind"] == "denials.provider_adjustment" and item["queue"] == "billing"
    assert wo[1]["state"] == "open" and wo[1]["claim_id"] == "PCN0999" and wo[1]["adjusted"] == 25.0
    assert not l6[0].work_items and l6[1]["state"] == "closed"
    for result, entry in (wo, l6):
        validate(entry, load_parsed("DenialLedgerEntry"), raise_errors=True)
        for it in result.work_items:
            validate(it, load_parsed("HandoffItem"), raise_errors=True)
