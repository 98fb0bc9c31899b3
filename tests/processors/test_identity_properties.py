"""Property tests for the patient identifier choice: for random PID-3 repetition lists
and FHIR identifier lists, the key is never an SSN, licence, passport or member id,
never holds an SSN, and the SSN never appears in clear in keys, records, warnings or
handoff text (processors/identity)."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings, strategies as st

from practiceflow.processors.dispatch import handoffs_for, normalize_raw
from practiceflow.processors.identity.choose import FORBIDDEN_TYPES, IdentityPolicy, choose, classify, is_unresolved

SETTINGS = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
P = "demo"
T = 1_709_650_000_000
NEVER = sorted(FORBIDDEN_TYPES)
SSN_RE = re.compile(r"\d{3}-?\d{2}-?\d{4}")

ssns = st.builds(
    lambda a, b, c: f"{a:03d}-{b:02d}-{c:04d}",
    st.integers(1, 899),
    st.integers(1, 99),
    st.integers(1, 9999),
)
# MR-like values: letters first, never 9 digits in a row
mrns = st.from_regex(r"[A-Z]{1,3}[0-9]{1,6}", fullmatch=True)
authorities = st.sampled_from(["", "CLIN", "WEST", "SSA", "USSSA", "AETNA", "IL DMV", "2.16.840.1.113883.4.1"])
keyable_types = st.sampled_from(["MR", "MRN", "PI", "PT", "", "PN", "AN"])


@st.composite
def identifier(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["ssn", "ssn-untyped", "forbidden", "keyable"]))
    if kind == "ssn":
        return {"value": draw(ssns), "system": draw(authorities) or None, "type": "SS", "ssn": True}
    if kind == "ssn-untyped":
        return {"value": draw(ssns), "system": None, "type": None, "ssn": True}
    if kind == "forbidden":
        return {"value": draw(mrns), "system": draw(authorities) or None, "type": draw(st.sampled_from(NEVER))}
    typ = draw(keyable_types)
    return {"value": draw(mrns), "system": draw(authorities) or None, "type": typ or None}


identifier_lists = st.lists(identifier(), min_size=1, max_size=6)


def _pid3(ids: list[dict]) -> str:
    return "~".join(f"{i['value']}^^^{i['system'] or ''}^{i['type'] or ''}" for i in ids)


def _assert_key(chosen: dict | None, ids: list[dict]) -> None:
    if chosen is None:
        return
    assert (chosen.get("type") or "").upper() not in FORBIDDEN_TYPES
    assert not chosen.get("ssn")
    assert not SSN_RE.search(chosen["value"])


def _assert_key_value(value: str, ids: list[dict]) -> None:
    """A record's patient id is the value of some keyable identifier, never an SSN."""
    assert not SSN_RE.search(value)
    assert any(i["value"] == value and classify(i) != "forbidden" and not i.get("ssn") for i in ids), value


@SETTINGS
@given(identifier_lists)
def test_choose_never_picks_a_forbidden_identifier(ids: list[dict]) -> None:
    i = choose(ids)
    _assert_key(ids[i] if i is not None else None, ids)
    keyable = [x for x in ids if classify(x) != "forbidden"]
    assert (i is None) == (not keyable)


@SETTINGS
@given(identifier_lists, st.sampled_from(["ADT^A04", "ORU^R01"]), st.booleans())
def test_hl7_keys_and_texts_never_carry_the_ssn(ids: list[dict], mtype: str, pid19: bool) -> None:
    secrets = [i["value"] for i in ids if i.get("ssn")]
    segs = [
        f"MSH|^~\\&|EHR|CLIN|PF|DEMO|20240305143000||{mtype}|C1|P|2.5.1",
        f"PID|1||{_pid3(ids)}||DOE^JANE||19800101|F|||||||||||{secrets[0] if pid19 and secrets else ''}",
        "PV1|1|O",
    ]
    if mtype.startswith("ORU"):
        segs += ["OBR|1|ORD1||80048^BMP^CPT", "OBX|1|NM|2345-7^Glucose^LN||250|mg/dL|70-99|HH|||F"]
    raw = ("\r".join(segs) + "\r").encode()
    result = normalize_raw({"feed": "hl7v2", "payload": raw, "practice_id": P, "received_at": T})
    handoffs = handoffs_for(result, P, T)
    patient = next(r.value for r in result.records if r.record_type == "Patient")
    pid = patient["patient_id"]
    if not is_unresolved(pid):
        _assert_key_value(pid, ids)
    for secret in secrets:
        digits = secret.replace("-", "")
        for rec in [*result.records, *handoffs]:
            assert secret not in rec.key and digits not in rec.key
            blob = json.dumps(rec.value, default=str)
            assert secret not in blob and digits not in blob
        assert not any(secret in w for w in result.warnings)


@SETTINGS
@given(identifier_lists, st.booleans())
def test_fhir_patient_identifiers_never_key_or_show_an_ssn(ids: list[dict], contained: bool) -> None:
    fhir_ids = []
    for i in ids:
        x: dict = {"value": i["value"]}
        if i.get("type"):
            x["type"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": i["type"]}]}
        if i.get("system"):
            x["system"] = i["system"]
        elif i.get("ssn") and i.get("type") == "SS":
            x["system"] = "http://hl7.org/fhir/sid/us-ssn"
        fhir_ids.append(x)
    patient = {"resourceType": "Patient", "id": "p1", "identifier": fhir_ids}
    if contained:
        res = {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "contained": [patient],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": "#p1"},
            "valueQuantity": {"value": 1},
        }
    else:
        res = patient
    raw = json.dumps(res).encode()
    result = normalize_raw({"feed": "fhir", "payload": raw, "practice_id": P, "received_at": T})
    secrets = [i["value"] for i in ids if i.get("ssn")]
    for rec in result.records:
        pid = rec.value.get("patient_id")
        if contained and rec.record_type == "Observation" and pid and not is_unresolved(pid):
            _assert_key_value(pid, ids)
        for secret in secrets:
            assert secret not in rec.key
            assert secret not in json.dumps(rec.value, default=str)


@SETTINGS
@given(identifier_lists, st.lists(st.sampled_from(["MR", "PI", "PT", "AN"]), min_size=1, max_size=3, unique=True))
def test_any_valid_policy_keeps_the_rule(ids: list[dict], types: list[str]) -> None:
    policy = IdentityPolicy(types=tuple(types), authorities=("CLIN",))
    i = choose(ids, policy)
    _assert_key(ids[i] if i is not None else None, ids)
