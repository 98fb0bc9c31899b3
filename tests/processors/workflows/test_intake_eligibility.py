"""Intake workflow, pure: AAA reject reasons, each gap rule, the outcomes, idempotency keys, drafts.

The 271s come from the clearinghouse simulator's pure answer function (the same fixtures the
end-to-end tests use), read back by the project's own 271 reader inside the step."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from practiceflow.localstack.clearinghouse import answer_271
from practiceflow.processors.fhir._validate import validate_resource
from practiceflow.processors.workflows.intake import IntakeContext, load_intake_rules, on_intake, on_result
from practiceflow.processors.workflows.intake.eligibility import determine
from practiceflow.processors.x12.build270 import read_270

RULES = load_intake_rules()
NOW = int(datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp() * 1000)
CTX = IntakeContext(match_status="new", provider_npi="1234567893", provider_name="DEMO CLINIC")


def intake(member: str = "W123456789", payer: str = "Aetna", **extra: object) -> dict:
    form = {
        "practice_id": "demo-clinic",
        "submission_id": f"intk-{member}",
        "patient_id": None,
        "family_name": "Rivera",
        "given_name": "Ana",
        "birth_date": "1988-02-29",
        "phone": "+1 555 010 7788",
        "email": None,
        "insurance_payer": payer,
        "insurance_member_id": member,
        "insurance_group": "G-77",
        "reason_for_visit": "knee pain",
        "answers": {},
        "submitted_at": NOW,
        "source": {"feed": "portal", "message_id": f"m-{member}"},
        "sex": "F",
        "address": {
            "line": ["1 Main St"],
            "city": "Springfield",
            "state": "IL",
            "postal_code": "62701",
            "country": None,
        },
        "insurance_payer_id": None,
        "subscriber_relationship": None,
        "subscriber_family_name": None,
        "subscriber_given_name": None,
        "subscriber_birth_date": None,
        "appointment_id": "appt-1",
        "appointment_start": "2026-12-10T09:00:00-06:00",
        "appointment_provider": "Dr. Welby",
        "service_type": "30",
    }
    form.update(extra)
    return form


def check(form: dict, *, outcome: str = "ok", payload: bytes | None = None, reason: str | None = None):
    step = on_intake(CTX, form, RULES, NOW)
    assert len(step.commands) == 1, step
    cmd = step.commands[0]
    if payload is None and outcome == "ok":
        payload = answer_271(read_270(cmd["payload"].encode()), datetime(2026, 12, 1, 15, 1, tzinfo=UTC))
    result = {
        "practice_id": cmd["practice_id"],
        "command_id": cmd["command_id"],
        "kind": "eligibility",
        "workflow": "intake",
        "outcome": outcome,
        "reason": reason,
        "payload_type": "x12.271",
        "payload": (payload or b"").decode(),
        "attempts": 1,
        "latency_ms": 5.0,
        "completed_at": NOW + 1000,
        "params": cmd["params"],
    }
    return cmd, on_result(None, result, RULES, NOW + 1000)


def kinds(step) -> list[str]:
    return [i["kind"] for i in step.work_items]


@pytest.mark.parametrize(
    ("member", "expected_kinds", "outcome"),
    [
        ("W123456789", ["intake.eligible", "intake.visit_ready"], "eligible"),
        ("INACT001", ["intake.gap.inactive"], "not_eligible"),
        ("ENDED001", ["intake.gap.plan_ended"], "not_eligible"),
        ("OON001", ["intake.gap.out_of_network"], "eligible"),
        ("NCOV001", ["intake.gap.not_covered"], "eligible"),
        ("PRIORAUTH1", ["intake.gap.prior_auth"], "eligible"),
        ("HDED001", ["intake.gap.deductible_remaining"], "eligible"),
        ("COB001", ["intake.gap.coordination_of_benefits"], "eligible"),
        ("NOTFOUND1", ["intake.not_eligible"], "not_eligible"),
        ("BADDOB001", ["intake.could_not_determine"], "could_not_determine"),
    ],
)
def test_each_gap_rule_and_outcome(member: str, expected_kinds: list[str], outcome: str) -> None:
    _, step = check(intake(member))
    assert kinds(step) == expected_kinds
    outcomes = {a.details["outcome"] for a in step.audit}
    assert outcomes == {outcome}
    for item in step.work_items:
        assert item["produced_by"]["rule_id"] and item["produced_by"]["rule_version"]
        assert item["queue"] in ("front_desk", "clinician")
        assert "Rivera" not in item["title"] and "Ana" not in item["what_happened"]  # no PHI in titles
        labels = {e["label"] for e in item["evidence"]}
        assert "eligibility outcome" in labels
    if member != "W123456789":
        gap_item = step.work_items[0]
        assert gap_item["queue"] == "front_desk"
        # the 271 evidence names the record it comes from (the command's result)
        assert any(
            e["record_type"] == "CommandResult" and e["assessment"] in ("not_met", "info") and e["value"]
            for e in gap_item["evidence"][2:]
        )


def test_high_deductible_threshold_is_data() -> None:
    rule = RULES.gap("deductible_remaining")
    assert rule.threshold == 1000
    _, clean = check(intake("W1"))  # 250.00 remaining: under the threshold
    assert "intake.gap.deductible_remaining" not in kinds(clean)


def test_plan_end_on_or_after_the_visit_is_no_gap() -> None:
    resp = {"active": True, "benefits": [], "plan_begin": "2026-01-01", "plan_end": "2026-12-10"}
    from practiceflow.processors.workflows.intake.eligibility import gaps_for

    assert gaps_for(resp, RULES, "30", "2026-12-10") == []
    assert [g.rule.check for g in gaps_for(resp, RULES, "30", "2026-12-11")] == ["plan_ended"]


def test_clean_result_gives_validated_fhir_drafts_and_routes_the_visit() -> None:
    _, step = check(intake("W555"))
    eligible, visit = step.work_items
    assert eligible["queue"] == "front_desk" and eligible["kind"] == "intake.eligible"
    assert {o["option"] for o in eligible["options"]} == {"approve", "edit", "reject"}
    assert [d["kind"] for d in step.drafts] == ["fhir.Patient", "fhir.Coverage"]
    assert eligible["draft_ids"] == [d["draft_id"] for d in step.drafts]
    patient = json.loads(step.drafts[0]["body"])
    coverage = json.loads(step.drafts[1]["body"])
    validate_resource(patient, "Patient")
    validate_resource(coverage, "Coverage")
    assert patient["name"][0]["family"] == "Rivera" and patient["gender"] == "female"
    assert coverage["subscriberId"] == "W555" and coverage["payor"][0]["identifier"]["value"] == "60054"
    assert coverage["period"]["start"] == "2026-01-01"
    assert visit["queue"] == "clinician" and visit["assigned_to"] == "Dr. Welby"


def test_dependent_inquiry_round_trips_and_answers_for_the_dependent() -> None:
    form = intake(
        "W777",
        subscriber_relationship="child",
        subscriber_family_name="Rivera",
        subscriber_given_name="Luis",
        subscriber_birth_date="1960-05-05",
    )
    cmd, step = check(form)
    (q,) = read_270(cmd["payload"].encode())
    assert q.dependent is not None and q.dependent.given_name == "ANA" and q.relationship == "child"
    assert q.subscriber.given_name == "LUIS" and q.subscriber.member_id == "W777"
    assert kinds(step) == ["intake.eligible", "intake.visit_ready"]
    coverage = json.loads(step.drafts[1]["body"])
    assert coverage["relationship"]["coding"][0]["code"] == "child"


@pytest.mark.parametrize(
    ("exec_outcome", "reason"),
    [
        ("timeout", "core: 3 attempt(s), last: Transient: HTTP 503 from the clearinghouse"),
        ("failed", "core: 5 attempt(s), last: ConnectionRefusedError"),
        ("refused", "core: CORE ErrorCode PayloadTypeNotSupported"),
    ],
)
def test_a_check_that_cannot_complete_is_could_not_determine(exec_outcome: str, reason: str) -> None:
    _, step = check(intake("W1"), outcome=exec_outcome, reason=reason)
    assert kinds(step) == ["intake.could_not_determine"]
    item = step.work_items[0]
    assert exec_outcome in item["title"] and reason in item["what_happened"]


def test_unreadable_271_and_unknown_payer_and_no_insurance() -> None:
    _, step = check(intake("W1"), payload=b"THIS IS NOT X12")
    assert kinds(step) == ["intake.could_not_determine"]
    assert "unreadable_271" in step.work_items[0]["title"]
    unknown = on_intake(CTX, intake("W1", payer="Acme Nowhere Insurance"), RULES, NOW)
    assert not unknown.commands and kinds(unknown) == ["intake.could_not_determine"]
    assert "unknown_payer" in unknown.work_items[0]["title"]
    none = on_intake(CTX, intake("W1", insurance_member_id=None), RULES, NOW)
    assert not none.commands and "no_insurance" in none.work_items[0]["title"]


def test_offline_payer_is_could_not_determine_with_follow_up() -> None:
    _, step = check(intake("W1", payer="offline test payer"))
    (item,) = step.work_items
    assert item["kind"] == "intake.could_not_determine" and "aaa:42" in item["title"]
    assert "re-check later" in item["decision_needed"].lower()
    assert any("AAA04 R" in e["label"] and "Resubmission Allowed" in (e["value"] or "") for e in item["evidence"])


def test_idempotency_key_is_stable_and_replays_reproduce_exactly() -> None:
    form = intake("W42")
    a = on_intake(CTX, form, RULES, NOW)
    b = on_intake(CTX, form, RULES, NOW)
    assert a == b
    later = on_intake(CTX, form, RULES, NOW + 60_000)  # the same form seen again later
    assert later.commands[0]["command_id"] == a.commands[0]["command_id"]
    other = on_intake(CTX, intake("W43"), RULES, NOW)
    assert other.commands[0]["command_id"] != a.commands[0]["command_id"]
    assert "W42" not in a.commands[0]["command_id"]  # hashed: no member id in the key


def _aaa_271(code: str, action: str = "C", level: str = "subscriber") -> bytes:
    payer_aaa = [f"AAA*N**{code}*{action}"] if level == "payer" else []
    sub_aaa = [f"AAA*Y**{code}*{action}"] if level == "subscriber" else []
    segs = [
        "ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*PRACTICEFLOW   *261201*1500*^*00501*000000001*0*P*:",
        "GS*HB*CLEARINGHOUSE*PRACTICEFLOW*20261201*1500*1*X*005010X279A1",
        "ST*271*0001*005010X279A1",
        "BHT*0022*11*T1*20261201*1500",
        "HL*1**20*1",
        "NM1*PR*2*AETNA TEST PLAN*****PI*60054",
        *payer_aaa,
        "HL*2*1*21*1",
        "NM1*1P*2*DEMO CLINIC*****XX*1234567893",
        "HL*3*2*22*0",
        "TRN*2*T1*9SIM",
        "NM1*IL*1*RIVERA*ANA****MI*W1",
        *sub_aaa,
    ]
    segs.append(f"SE*{len(segs) - 1}*0001")
    segs += ["GE*1*1", "IEA*1*000000001"]
    return ("~\n".join(segs) + "~\n").encode()


AAA_TABLE = [(code, r.outcome) for code, r in sorted(RULES.aaa.items())]


@pytest.mark.parametrize(("code", "expected"), AAA_TABLE)
def test_every_aaa_reason_maps_to_its_outcome_and_follow_up(code: str, expected: str) -> None:
    result = {"practice_id": "demo-clinic", "outcome": "ok", "payload": _aaa_271(code).decode()}
    det = determine(result, RULES, trace_number="T1", service_type="30", visit_date="2026-12-10")
    assert det.outcome == expected
    assert det.reason_code == f"aaa:{code}"
    assert det.follow_up == RULES.aaa[code].follow_up
    assert RULES.aaa[code].meaning in det.reason and "Please Correct and Resubmit" in det.reason


def test_unknown_aaa_code_and_payer_level_rejection() -> None:
    result = {"practice_id": "demo-clinic", "outcome": "ok", "payload": _aaa_271("ZZ").decode()}
    det = determine(result, RULES, trace_number="T1", service_type="30", visit_date=None)
    assert det.outcome == "could_not_determine" and "not in rules/intake" in det.follow_up
    payer = {"practice_id": "demo-clinic", "outcome": "ok", "payload": _aaa_271("75", level="payer").decode()}
    det = determine(payer, RULES, trace_number="T1", service_type="30", visit_date=None)
    assert det.outcome == "not_eligible" and det.reason_code == "aaa:75"


def test_gap_on_another_service_type_does_not_fire() -> None:
    resp = {
        "active": True,
        "benefits": [
            {"info_code": "1", "service_types": ["30"], "in_network": "Y"},
            {"info_code": "I", "service_types": ["AL"]},
            {"info_code": "1", "service_types": ["MH"], "authorization_required": True},
        ],
    }
    from practiceflow.processors.workflows.intake.eligibility import gaps_for

    assert gaps_for(resp, RULES, "30", None) == []
    assert [g.rule.check for g in gaps_for(resp, RULES, "MH", None)] == ["prior_auth"]


def _eb_271(*ebs: str) -> bytes:
    """A 271 for subscriber W1 whose 2110C loop holds the given EB segments."""
    segs = _aaa_271("ZZ").decode().split("~\n")
    body = segs[: segs.index("NM1*IL*1*RIVERA*ANA****MI*W1") + 1]
    body += list(ebs)
    body.append(f"SE*{len(body) - 1}*0001")
    body += ["GE*1*1", "IEA*1*000000001"]
    return ("~\n".join(body) + "~\n").encode()


@pytest.mark.parametrize(
    "ebs",
    [
        ("EB*1*IND*30**GOLD PPO", "EB*6*IND*30**SILVER HMO"),  # one plan active, another inactive
        ("EB*2*FAM*30", "EB*8*IND*30"),
    ],
)
def test_mixed_active_and_inactive_coverage_is_could_not_determine(ebs: tuple[str, ...]) -> None:
    from practiceflow.processors.workflows.intake.eligibility import read_271

    payload = _eb_271(*ebs).decode()
    assert read_271(payload, "demo-clinic", "T1")["active"] is None  # the 271 reader: mixed is unknown
    det = determine(
        {"practice_id": "demo-clinic", "outcome": "ok", "payload": payload},
        RULES,
        trace_number="T1",
        service_type="30",
        visit_date="2026-12-10",
    )
    assert det.outcome == "could_not_determine" and det.reason_code == "mixed_coverage_status"
    assert {f.value for f in det.facts} == {"active", "inactive"}


def test_active_pending_investigation_is_not_clean() -> None:
    payload = _eb_271("EB*5*IND*30**GOLD PPO").decode()
    det = determine(
        {"practice_id": "demo-clinic", "outcome": "ok", "payload": payload},
        RULES,
        trace_number="T1",
        service_type="30",
        visit_date="2026-12-10",
    )
    assert det.outcome == "could_not_determine" and det.reason_code == "pending_investigation"
    assert "EB01 5" in det.facts[0].label
    # plain active coverage stays clean
    clean = determine(
        {"practice_id": "demo-clinic", "outcome": "ok", "payload": _eb_271("EB*1*IND*30**GOLD PPO").decode()},
        RULES,
        trace_number="T1",
        service_type="30",
        visit_date="2026-12-10",
    )
    assert clean.outcome == "eligible" and clean.reason_code == "clean"
