"""Single-core throughput of the FHIR normalizer.

``run()`` returns a dict; ``python bench/bench_fhir.py`` prints it as JSON.

Measured with ``time.perf_counter`` over at least ``MIN_SECONDS`` each, through the
full ``normalize_fhir`` path (JSON parse, R4B model validation, reference
resolution, mapping):

* a Patient (identifiers, names, telecom, address) -> resources/second
* an Observation (valueQuantity, interpretation, referenceRange) -> resources/second
* a 20-entry transaction Bundle (1 Patient, 1 Encounter, 12 Observations incl. 2 BP
  panels with components, 2 Conditions, 2 MedicationRequests, 1 Claim,
  1 ExplanationOfBenefit; urn:uuid references) -> resources/second (= 20 x bundles/s)
  and records/second (BP components fan out).

Also reported: the share of the Bundle time spent in fhir.resources validation alone.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

try:
    from practiceflow.processors.fhir import normalize_fhir
except ImportError:  # pragma: no cover - running from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from practiceflow.processors.fhir import normalize_fhir  # type: ignore[no-redef]

MIN_SECONDS = float(os.environ.get("BENCH_MIN_SECONDS", "1.0"))


def _patient(pid: str = "p1", uuid: str | None = None) -> dict:
    r = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "2", "lastUpdated": "2024-05-01T10:00:00Z"},
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:oid:1.2.3.4",
                "value": "MRN445566",
            },
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-45-6789"},
        ],
        "name": [{"use": "official", "family": "Garcia", "given": ["Maria", "Elena"]}],
        "telecom": [
            {"system": "phone", "value": "(217)555-0142", "use": "home"},
            {"system": "email", "value": "maria@example.org"},
        ],
        "gender": "female",
        "birthDate": "1978-02-14",
        "address": [
            {
                "use": "home",
                "line": ["742 Evergreen Ter"],
                "city": "Springfield",
                "state": "IL",
                "postalCode": "62704",
                "country": "US",
            }
        ],
    }
    if uuid:
        r["id"] = uuid
    return r


def _observation(oid: str = "o1", subject: str = "Patient/p1", code: str = "2345-7", value: float = 105) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"versionId": "1"},
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Glucose"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-03-05T12:00:00-05:00",
        "issued": "2024-03-05T14:25:00-05:00",
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        "interpretation": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}
        ],
        "referenceRange": [{"low": {"value": 70, "unit": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL"}}],
    }


def _bp(oid: str, subject: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-03-05T09:00:00-05:00",
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 128, "unit": "mmHg"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 82, "unit": "mmHg"},
            },
        ],
    }


def _transaction() -> dict:
    pat = "urn:uuid:00000000-0000-4000-8000-000000000001"
    enc = "urn:uuid:00000000-0000-4000-8000-000000000002"
    claim = "urn:uuid:00000000-0000-4000-8000-000000000003"
    entries = [
        (pat, _patient(uuid=pat[9:])),
        (
            enc,
            {
                "resourceType": "Encounter",
                "id": enc[9:],
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": pat},
                "period": {"start": "2024-03-05T09:00:00-05:00"},
            },
        ),
    ]
    codes = ["2345-7", "3094-0", "2160-0", "2951-2", "2823-3", "2075-0", "2028-9", "17861-6", "2885-2", "1751-7"]
    for n, code in enumerate(codes):
        u = f"urn:uuid:00000000-0000-4000-8000-0000000001{n:02d}"
        entries.append((u, _observation(u[9:], pat, code, 90 + n)))
    for n in range(2):
        u = f"urn:uuid:00000000-0000-4000-8000-0000000002{n:02d}"
        entries.append((u, _bp(u[9:], pat)))
    for n, icd in enumerate(["E11.9", "I10"]):
        u = f"urn:uuid:00000000-0000-4000-8000-0000000003{n:02d}"
        entries.append(
            (
                u,
                {
                    "resourceType": "Condition",
                    "id": u[9:],
                    "subject": {"reference": pat},
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd}]},
                    "onsetDateTime": "2019-01-01",
                },
            )
        )
    for n, rx in enumerate(["314076", "860975"]):
        u = f"urn:uuid:00000000-0000-4000-8000-0000000004{n:02d}"
        entries.append(
            (
                u,
                {
                    "resourceType": "MedicationRequest",
                    "id": u[9:],
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": pat},
                    "authoredOn": "2024-03-05",
                    "medicationCodeableConcept": {
                        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rx}]
                    },
                    "dosageInstruction": [
                        {
                            "text": "1 tab daily",
                            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
                        }
                    ],
                    "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 30, "unit": "tablet"}},
                },
            )
        )
    entries.append(
        (
            claim,
            {
                "resourceType": "Claim",
                "id": claim[9:],
                "status": "active",
                "use": "claim",
                "type": {"coding": [{"code": "professional"}]},
                "patient": {"reference": pat},
                "created": "2024-03-05",
                "provider": {"display": "Family Practice"},
                "priority": {"coding": [{"code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Acme PPO"}}],
                "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]}, "net": {"value": 120.0}}],
                "total": {"value": 120.0},
            },
        )
    )
    u = "urn:uuid:00000000-0000-4000-8000-000000000005"
    entries.append(
        (
            u,
            {
                "resourceType": "ExplanationOfBenefit",
                "id": u[9:],
                "status": "active",
                "use": "claim",
                "type": {"coding": [{"code": "professional"}]},
                "patient": {"reference": pat},
                "created": "2024-03-20",
                "insurer": {"display": "Acme"},
                "provider": {"display": "FP"},
                "outcome": "complete",
                "claim": {"reference": claim},
                "insurance": [{"focal": True, "coverage": {"display": "Acme PPO"}}],
                "item": [
                    {
                        "sequence": 1,
                        "productOrService": {"coding": [{"code": "99213"}]},
                        "adjudication": [
                            {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 120.0}},
                            {"category": {"coding": [{"code": "copay"}]}, "amount": {"value": 20.0}},
                            {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 80.0}},
                        ],
                    }
                ],
                "payment": {"amount": {"value": 80.0}},
            },
        )
    )
    assert len(entries) == 20, len(entries)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": "2024-03-20T10:00:00Z",
        "entry": [
            {"fullUrl": fu, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for fu, r in entries
        ],
    }


def _time(fn, min_seconds: float) -> tuple[int, float]:
    fn()  # warm-up (imports, model class caches)
    gc.collect()
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            fn()
        n += 10
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n, elapsed


def run(min_seconds: float = MIN_SECONDS) -> dict:
    from fhir.resources.R4B import get_fhir_model_class

    patient_raw = json.dumps(_patient()).encode()
    obs_raw = json.dumps(_observation()).encode()
    bundle_obj = _transaction()
    bundle_raw = json.dumps(bundle_obj).encode()
    records_per_bundle = len(normalize_fhir(bundle_raw, "bench", 0).records)

    out: dict = {"python": sys.version.split()[0], "machine": platform.machine(), "min_seconds": min_seconds}
    for name, raw, per_call in (
        ("patient", patient_raw, 1),
        ("observation", obs_raw, 1),
        ("transaction_bundle_20", bundle_raw, 20),
    ):
        n, elapsed = _time(lambda raw=raw: normalize_fhir(raw, "bench", 0), min_seconds)
        entry = {
            "calls": n,
            "seconds": round(elapsed, 3),
            "calls_per_s": round(n / elapsed, 1),
            "resources_per_s": round(n * per_call / elapsed, 1),
            "bytes": len(raw),
        }
        if name == "transaction_bundle_20":
            entry["records_per_bundle"] = records_per_bundle
            entry["records_per_s"] = round(n * records_per_bundle / elapsed, 1)
        out[name] = entry

    # fhir.resources validation alone over the same 20 resources (the floor of the full path)
    resources = [(e["resource"]["resourceType"], e["resource"]) for e in bundle_obj["entry"]]
    models = {rt: get_fhir_model_class(rt) for rt, _ in resources}

    def validate_only() -> None:
        for rt, r in resources:
            models[rt].model_validate(r)

    n, elapsed = _time(validate_only, min_seconds)
    v_rate = n * 20 / elapsed
    out["r4b_validation_only"] = {
        "resources_per_s": round(v_rate, 1),
        "share_of_bundle_time": round(out["transaction_bundle_20"]["resources_per_s"] / v_rate, 3),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
