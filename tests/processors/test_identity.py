"""Patient identity: the canonical id per practice, SSN masking, A24/A37, the crosswalk,
entity ids unique per patient (processors/identity and every normalizer using it)."""

from __future__ import annotations

import json

import pytest
from fastavro.validation import validate

from practiceflow.processors.base import NormalizeResult
from practiceflow.processors.dispatch import normalize_raw
from practiceflow.processors.fhir.normalize import normalize_fhir
from practiceflow.processors.hl7.normalize import normalize_hl7
from practiceflow.processors.identity.choose import (
    DEFAULT_POLICY,
    IdentityPolicy,
    choose,
    classify,
    is_unresolved,
    keep,
    mask_ssn,
    policy_for,
    scrub_ssn,
)
from practiceflow.processors.identity.crosswalk import Crosswalk, apply, fold, resolve
from practiceflow.processors.identity.links import links_for, record_keys
from practiceflow.processors.portal.normalize import normalize_portal
from practiceflow.schemas.avro_gen import load_parsed
from practiceflow.settings import Settings

P = "demo"
T = 1_709_650_000_000
SSN = "123-45-6789"


def hl7(*segs: str) -> bytes:
    return ("\r".join(segs) + "\r").encode()


def msh(mtype: str, control: str = "C1") -> str:
    return f"MSH|^~\\&|EHR|CLINIC|PF|DEMO|20240305143000||{mtype}|{control}|P|2.5.1"


def checked(result: NormalizeResult) -> NormalizeResult:
    for rec in result.records:
        validate(rec.value, load_parsed(rec.record_type), raise_errors=True)
    return result


def values(result: NormalizeResult, record_type: str) -> list[dict]:
    return [r.value for r in result.records if r.record_type == record_type]


def no_clear_ssn(result: NormalizeResult, ssn: str = SSN) -> None:
    digits = ssn.replace("-", "")
    for rec in result.records:
        assert ssn not in rec.key and digits not in rec.key
        blob = json.dumps(rec.value, default=str)
        assert ssn not in blob and digits not in blob, rec
    assert all(ssn not in w and digits not in w for w in result.warnings)


# --------------------------------------------------------------------------- choose
def test_the_issue_example_keys_by_the_mrn_not_the_ssn() -> None:
    raw = hl7(msh("ADT^A01"), f"PID|1||{SSN}^^^SSA^SS~MRN77^^^CLIN^MR||DOE^JANE||19800101|F")
    result = checked(normalize_hl7(raw, P, T))
    (patient,) = values(result, "Patient")
    assert patient["patient_id"] == "MRN77"
    assert result.records[0].key == "demo/MRN77"
    assert {"value": "***-**-6789", "system": "SSA", "type": "SS"} in patient["identifiers"]
    assert {"value": "MRN77", "system": "CLIN", "type": "MR"} in patient["identifiers"]
    no_clear_ssn(result)


@pytest.mark.parametrize(
    "pid3",
    [
        f"{SSN}^^^SSA^SS",
        f"{SSN}",  # untyped, but written like an SSN
        "D1234567^^^IL DMV^DL~X99887766^^^USDOS^PPN~W55501^^^AETNA^MB",
        "1EG4TE5MK72^^^CMS^MC~ZZ12345^^^BCBS^MI~A777^^^^SN",
    ],
)
def test_a_pid_with_only_non_keyable_identifiers_is_unresolved_not_guessed(pid3: str) -> None:
    raw = hl7(msh("ADT^A04"), f"PID|1||{pid3}||DOE^JANE||19800101|F", "PV1|1|O|||||||||||||||||V100")
    result = checked(normalize_hl7(raw, P, T))
    (patient,) = values(result, "Patient")
    assert is_unresolved(patient["patient_id"])
    assert patient["patient_id"] == f"unresolved:{result.message_id[:16]}"
    assert len(patient["identifiers"]) == len(pid3.split("~"))
    (enc,) = values(result, "Encounter")
    assert enc["patient_id"] == patient["patient_id"]
    assert any(w.startswith("patient_unresolved") for w in result.warnings)
    no_clear_ssn(result)


def test_pid19_ssn_is_kept_masked_and_an_untyped_pid3_equal_to_it_is_not_a_key() -> None:
    raw = hl7(msh("ADT^A04"), "PID|1||987654321~5551^^^CLINIC||DOE^JANE||19800101|F|||||||||||987-65-4321")
    result = checked(normalize_hl7(raw, P, T))
    (patient,) = values(result, "Patient")
    assert patient["patient_id"] == "5551"
    assert {"value": "***-**-4321", "system": None, "type": "SS"} in patient["identifiers"]
    no_clear_ssn(result, "987-65-4321")


def test_policy_authority_and_type_order_per_practice() -> None:
    raw = hl7(msh("ADT^A08"), "PID|1||E100^^^EMPI^PI~M200^^^WEST^MR~M300^^^EAST^MR||DOE^JANE")
    assert values(normalize_hl7(raw, P, T), "Patient")[0]["patient_id"] == "M200"  # MR before PI
    east = IdentityPolicy(types=("MR",), authorities=("EAST",))
    assert values(normalize_hl7(raw, P, T, policy=east), "Patient")[0]["patient_id"] == "M300"
    empi = IdentityPolicy(types=("PI", "MR"))
    assert values(normalize_hl7(raw, P, T, policy=empi), "Patient")[0]["patient_id"] == "E100"


def test_neutral_identifiers_key_only_with_fallback() -> None:
    raw = hl7(msh("ADT^A08"), "PID|1||4223161584^^^Mirth^PN||DOE^JANE")
    assert values(normalize_hl7(raw, P, T), "Patient")[0]["patient_id"] == "4223161584"
    strict = IdentityPolicy(fallback=False)
    assert is_unresolved(values(normalize_hl7(raw, P, T, policy=strict), "Patient")[0]["patient_id"])


def test_ssn_opt_in_keeps_it_in_identifiers_but_never_in_keys() -> None:
    raw = hl7(msh("ADT^A01"), f"PID|1||{SSN}^^^SSA^SS~MRN77^^^CLIN^MR||DOE^JANE")
    result = normalize_hl7(raw, P, T, policy=IdentityPolicy(ssn_in_clear=True))
    (patient,) = values(result, "Patient")
    assert {"value": SSN, "system": "SSA", "type": "SS"} in patient["identifiers"]
    assert all(SSN not in r.key for r in result.records)


def test_policy_rejects_forbidden_key_types_and_settings_thread_it() -> None:
    with pytest.raises(ValueError):
        IdentityPolicy(types=("SS", "MR"))
    cfg = Settings(patient_id_policy={"west": {"types": ["MR"], "authorities": ["WEST"]}})
    assert cfg.identity_policies["west"] == IdentityPolicy(types=("MR",), authorities=("WEST",))
    assert policy_for(cfg.identity_policies, "other") is DEFAULT_POLICY
    with pytest.raises(ValueError):
        Settings(patient_id_policy={"west": {"types": ["DL"]}})


def test_dispatch_passes_the_practice_policy() -> None:
    raw = hl7(msh("ADT^A08"), "PID|1||E100^^^EMPI^PI~M200^^^WEST^MR||DOE^JANE")
    msg = {"feed": "hl7v2", "payload": raw, "practice_id": "west", "received_at": T}
    assert values(normalize_raw(msg), "Patient")[0]["patient_id"] == "M200"
    policies = {"west": IdentityPolicy(types=("PI",))}
    assert values(normalize_raw(msg, policies), "Patient")[0]["patient_id"] == "E100"


def test_mrg_never_takes_an_ssn_as_merged_from() -> None:
    raw = hl7(
        msh("ADT^A40"),
        "PID|1||MRN1^^^C^MR||DOE^JANE",
        f"MRG|{SSN}^^^SSA^SS~MRN0^^^C^MR",
    )
    result = checked(normalize_hl7(raw, P, T))
    assert values(result, "Patient")[0]["merged_from"] == ["MRN0"]
    no_clear_ssn(result)


def test_small_helpers() -> None:
    assert mask_ssn("123456789") == "***-**-6789"
    assert scrub_ssn("call re 123-45-6789 today") == "call re ***-**-6789 today"
    assert classify({"value": "x", "system": "http://hl7.org/fhir/sid/us-ssn"}) == "forbidden"
    assert classify({"value": "x", "system": "MASSACHUSETTS GENERAL"}) == "neutral"
    assert classify({"value": "x", "type": "NNFRA"}) == "forbidden"
    assert choose([{"value": "1", "type": "SS"}]) is None
    assert keep({"value": "12", "type": "MR"}) == {"value": "12", "type": "MR"}


# --------------------------------------------------------------------------- FHIR, portal
def _fhir_patient(**extra: object) -> bytes:
    res = {
        "resourceType": "Patient",
        "id": "pat-1",
        "identifier": [
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": SSN},
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:oid:1.2.3",
                "value": "MRN77",
            },
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        **extra,
    }
    return json.dumps(res).encode()


def test_fhir_patient_ssn_identifier_is_masked_and_the_link_carries_the_mrn() -> None:
    result = checked(normalize_raw({"feed": "fhir", "payload": _fhir_patient(), "practice_id": P, "received_at": T}))
    (patient,) = values(result, "Patient")
    assert patient["patient_id"] == "pat-1"
    assert {"value": "***-**-6789", "system": "http://hl7.org/fhir/sid/us-ssn", "type": "SS"} in patient["identifiers"]
    (link,) = values(result, "IdentityLink")
    assert link["action"] == "link" and link["patient_id"] == "MRN77"  # the MRN is the canonical id
    assert link["identifiers"] == [{"value": "pat-1", "system": None, "type": "FHIR"}]  # no (masked) SSN
    no_clear_ssn(result)
    cw = fold(P, [link])
    assert resolve(cw, record_keys("Patient", patient)).patient_id == "MRN77"
    assert resolve(cw, ["fhir|pat-1"]).patient_id == "MRN77"


def test_fhir_reference_by_ssn_identifier_is_unresolved() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"identifier": {"system": "http://hl7.org/fhir/sid/us-ssn", "value": SSN}},
        "valueQuantity": {"value": 99, "unit": "mg/dL"},
    }
    result = checked(normalize_fhir(json.dumps(obs).encode(), P, T))
    (o,) = values(result, "Observation")
    assert is_unresolved(o["patient_id"])
    no_clear_ssn(result)


def test_fhir_contained_patient_is_keyed_by_its_mrn_not_its_ssn() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "contained": [json.loads(_fhir_patient()) | {"id": "p"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "#p"},
        "valueQuantity": {"value": 99, "unit": "mg/dL"},
    }
    result = checked(normalize_fhir(json.dumps(obs).encode(), P, T))
    assert values(result, "Observation")[0]["patient_id"] == "MRN77"
    no_clear_ssn(result)


def test_portal_patient_reference_written_like_an_ssn_is_unresolved_and_answers_masked() -> None:
    body = {
        "submitted_at": "2024-03-05T14:00:00Z",
        "request_id": "r1",
        "patient_id": SSN,
        "reason": f"my ssn is {SSN}",
    }
    result = checked(normalize_portal("scheduling.requested", json.dumps(body).encode(), P, T))
    (req,) = values(result, "SchedulingRequest")
    assert is_unresolved(req["patient_id"])
    assert req["reason"] == "my ssn is ***-**-6789"
    no_clear_ssn(result)


# --------------------------------------------------------------------------- A24 / A37
A24 = hl7(
    "MSH|^~\\&|REGADT|MCM|IFENG|PF|200901011200||ADT^A24^ADT_A24|MSG00024|P|2.5.1",
    "EVN|A24|200901011200",
    "PID|1||MR1001^^^MCM^MR||EVERYWOMAN^EVE^E||19620320|F",
    "PV1|1|I|2000^2012^01",
    f"PID|2||PI7777^^^LAB^PI~{SSN}^^^SSA^SS||EVERYWOMAN^EVE^E||19620320|F",
)
A37 = A24.replace(b"A24", b"A37").replace(b"MSG00024", b"MSG00037")


def test_a24_links_and_a37_unlinks_both_pids_identifiers() -> None:
    link = checked(normalize_hl7(A24, P, T))
    assert link.message_type == "ADT^A24"
    (rec,) = link.records
    assert rec.record_type == "IdentityLink" and rec.key.startswith("demo/MR1001/")
    v = rec.value
    assert (v["action"], v["patient_id"], v["other_patient_id"]) == ("link", "MR1001", "PI7777")
    assert {"value": "***-**-6789", "system": "SSA", "type": "SS"} in v["other_identifiers"]
    no_clear_ssn(link)
    unlink = checked(normalize_hl7(A37, P, T))
    assert unlink.records[0].value["action"] == "unlink"

    cw = fold(P, [v])
    assert resolve(cw, ["pid|PI7777"]).patient_id == "MR1001"
    cw = apply(cw, unlink.records[0].value)
    assert resolve(cw, ["pid|PI7777"]).patient_id == "PI7777"
    assert resolve(cw, ["pid|MR1001"]).patient_id == "MR1001"


def test_a24_with_one_pid_is_rejected_with_a_reason() -> None:
    from practiceflow.processors.base import Rejected

    with pytest.raises(Rejected) as e:
        normalize_hl7(hl7(msh("ADT^A24"), "PID|1||MR1^^^C^MR"), P, T)
    assert e.value.reason_code == "missing_pid_segment"


# --------------------------------------------------------------------------- crosswalk
def _link(patient_id: str | None, ids: list[dict], feed: str = "hl7v2", **kw: object) -> dict:
    return {
        "practice_id": P,
        "link_id": "x",
        "action": kw.pop("action", "link"),
        "patient_id": patient_id,
        "identifiers": ids,
        "other_patient_id": kw.pop("other", None),
        "other_identifiers": [],
        "record_type": None,
        "source": {"feed": feed, "message_id": "m"},
    }


def test_crosswalk_joins_fhir_portal_and_x12_on_the_mrn() -> None:
    fhir_first = _link(None, [{"value": "fhir-9", "type": "FHIR"}, {"value": "W1", "type": "MB"}], feed="fhir")
    cw = fold(P, [fhir_first])
    r = resolve(cw, ["fhir|fhir-9"])
    assert r.status == "resolved" and r.provisional  # no MRN yet: a provisional id
    claim = _link(None, [{"value": "PCN55", "type": "PCN"}, {"value": "W1", "type": "MB"}], feed="x12")
    registration = _link("MRN5", [{"value": "W1", "type": "MB", "system": "AETNA"}])
    cw = fold(P, [fhir_first, claim, registration])
    for keys in (["fhir|fhir-9"], ["pcn|PCN55"], ["mb|W1"], ["pid|MRN5"]):
        r = resolve(cw, keys)
        assert (r.status, r.patient_id, r.provisional) == ("resolved", "MRN5", False), keys


def test_crosswalk_never_guesses_a_shared_member_id() -> None:
    mom = _link("MRN1", [{"value": "FAM1", "type": "MB"}])
    kid = _link("MRN2", [{"value": "FAM1", "type": "MB"}])
    cw = fold(P, [mom, kid])
    assert resolve(cw, ["mb|FAM1"]).status == "conflict"
    assert resolve(cw, ["pid|MRN2"]).patient_id == "MRN2"
    assert resolve(cw, ["pid|MRN1", "pid|MRN2"]).status == "conflict"
    assert resolve(cw, ["pcn|nothing"]).status == "unresolved"


def test_crosswalk_merge_moves_everything_to_the_survivor_and_stays_in_its_practice() -> None:
    cw = fold(P, [_link("OLD", [{"value": "W1", "type": "MB"}]), _link("NEW", [], action="merge", other="OLD")])
    assert resolve(cw, ["mb|W1"]).patient_id == "NEW"
    assert resolve(cw, ["pid|OLD"]).patient_id == "NEW"
    with pytest.raises(ValueError):
        apply(Crosswalk("other-practice"), _link("X", []))


def test_links_for_records_that_name_more_than_one_identifier() -> None:
    raw = hl7(
        msh("ADT^A04"),
        f"PID|1||MRN9^^^C^MR~{SSN}^^^SSA^SS||DOE^JANE",
        "IN1|1|PPO^Gold|AETNA|Aetna|||||G77|||||||||||||||||||||||||||W555",
    )
    result = checked(normalize_raw({"feed": "hl7v2", "payload": raw, "practice_id": P, "received_at": T}))
    links = values(result, "IdentityLink")
    assert [lk["record_type"] for lk in links] == ["Coverage"]  # the Patient's only other id is a masked SSN
    assert links[0]["identifiers"] == [{"value": "W555", "system": "AETNA", "type": "MB"}]
    oru_only = normalize_hl7(hl7(msh("ADT^A08"), "PID|1||MRN9^^^C^MR"), P, T)
    assert links_for(oru_only, P) == []
    no_clear_ssn(result)


# --------------------------------------------------------------------------- entity ids per patient
def vxu(mrn: str, control: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|EHR|CLINIC|IIS|STATE|20241001||VXU^V04^VXU_V04|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^CLINIC^MR||DOE^{mrn}||20100101|F",
        "RXA|0|1|20241001||141^Influenza, seasonal^CVX|0.5|mL",
    )


def adt_in1(mrn: str, control: str) -> bytes:
    return hl7(msh("ADT^A04", control), f"PID|1||{mrn}^^^CLINIC^MR||DOE^{mrn}", "IN1|1||AETNA|Aetna")


def test_two_patients_flu_shots_and_coverages_get_different_ids() -> None:
    a = values(normalize_hl7(vxu("MRN-A", "V1"), P, T), "Immunization")[0]  # issue 14: Immunization records
    b = values(normalize_hl7(vxu("MRN-B", "V2"), P, T), "Immunization")[0]
    assert a["immunization_id"] != b["immunization_id"]
    assert "MRN-A" in a["immunization_id"]
    ca = values(normalize_hl7(adt_in1("MRN-A", "A1"), P, T), "Coverage")[0]
    cb = values(normalize_hl7(adt_in1("MRN-B", "A2"), P, T), "Coverage")[0]
    assert ca["coverage_id"] != cb["coverage_id"]


# --------------------------------------------------------------------------- X12: CLM01 <-> CLP01 <-> member id <-> MRN
def test_837_and_835_link_the_claim_number_and_member_id_to_the_mrn() -> None:
    from tests.processors.test_x12_normalize import CLAIM_837P, interchange

    claim_msg = interchange(CLAIM_837P, gs01="HC", gs08="005010X222A1")
    result = checked(normalize_raw({"feed": "x12", "payload": claim_msg, "practice_id": P, "received_at": T}))
    (claim,) = values(result, "Claim")
    assert claim["member_id"] == "MEM0001"
    (link,) = values(result, "IdentityLink")
    assert link["patient_id"] == "MRN-77"
    assert {(i["type"], i["value"]) for i in link["identifiers"]} == {("PCN", "PCN-1001"), ("MB", "MEM0001")}
    # an 835 that only echoes CLP01 and the member id resolves to the same MRN
    remit = _link(None, [{"value": "PCN-1001", "type": "PCN"}, {"value": "MEM0001", "type": "MB"}], feed="x12")
    cw = fold(P, [remit, link])
    assert resolve(cw, ["pcn|PCN-1001"]).patient_id == "MRN-77"
    assert resolve(cw, ["mb|MEM0001"]).patient_id == "MRN-77"


def test_the_same_ssn_in_pid3_and_pid19_is_kept_once_masked() -> None:
    raw = hl7(msh("ADT^A08"), f"PID|1||M1^^^C^MR~{SSN}^^^SSA^SS||DOE^JANE|||||||||||||{SSN}")
    (patient,) = values(checked(normalize_hl7(raw, P, T)), "Patient")
    assert patient["identifiers"] == [
        {"value": "M1", "system": "C", "type": "MR"},
        {"value": "***-**-6789", "system": "SSA", "type": "SS"},
    ]
