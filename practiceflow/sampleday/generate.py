"""A synthetic practice day: every feed's traffic, written to a folder and kept in a plan.

Deterministic per seed and run id. The run id (``build_day(run_id=...)``; ``practiceflow day`` draws a new
one every run) marks the day's fax files as that run's transmissions (a TIFF description, a PDF title:
nothing on the page changes), so a second day with the same seed on a kept stack sends new faxes whose
documents, and the language-model commands asked about them, are that day's own (issue 8). Besides routine traffic the day carries what real days
carry: a resend after a lost ACK, a reused HL7 control id with new content, a
malformed HL7 message, an invalid FHIR resource, a forged portal webhook, a replayed
one, a junk file in the fax drop and a truncated X12 file, so the summary shows every path (accepted, normalized,
dead-lettered, duplicate).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from practiceflow.sampleday import hl7 as h, prior_auth, refills, x12 as x
from practiceflow.sampleday.people import Person, make_people


@dataclass
class DayPlan:
    day: date
    practice_id: str
    people: list[Person]
    mllp: list[bytes] = field(default_factory=list)  # in send order; includes a resend + garbage
    hl7_batches: list[tuple[str, bytes]] = field(default_factory=list)
    fhir: list[bytes] = field(default_factory=list)
    portal: list[tuple[str, bytes, bool]] = field(default_factory=list)  # (event, body, sign correctly?)
    portal_replays: int = 0
    x12_upload: list[tuple[str, bytes]] = field(default_factory=list)
    x12_drop: list[tuple[str, bytes]] = field(default_factory=list)
    fax_upload: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    fax_drop: list[tuple[str, bytes]] = field(default_factory=list)
    truth: dict[str, object] = field(default_factory=dict)
    run_id: str = ""  # "" = no run marker (the fax files' bytes depend on the seed only)


# intake form index -> (payer as the patient writes it, member id; "*" = digits of the person's own id):
# the day's eligibility outcomes. The simulator answers by member-id prefix; an unknown payer is
# never sent; the offline payer answers AAA 42. Forms not listed are clean (eligible).
INTAKE_INSURANCE: dict[int, tuple[str, str]] = {
    1: ("Aetna", "INACT*"),  # inactive plan -> front-desk item, not eligible
    2: ("United Test Health", "ENDED*"),  # plan ends before the visit -> not eligible
    3: ("Cigna", "PRIORAUTH*"),  # prior authorization required -> front-desk item, eligible
    4: ("Aetna", "HDED*"),  # high remaining deductible -> front-desk item, eligible
    5: ("Cigna", "NOTFOUND*"),  # AAA 75 subscriber not found -> not eligible
    6: ("Nowhere Mutual", "W*"),  # a payer the practice's payer table lacks -> could not determine
    7: ("Offline Test Payer", "W*"),  # the payer cannot answer (AAA 42) -> could not determine
}


def _ts(d: date, minute: int) -> str:
    return (datetime(d.year, d.month, d.day, 8, 0, tzinfo=UTC) + timedelta(minutes=minute)).strftime("%Y%m%d%H%M%S")


def _fhir_patient_bundle(p: Person, i: int) -> dict:
    pid = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
    return {
        "resourceType": "Bundle",
        "id": f"reg-{p.mrn}",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pid,
                "resource": {
                    "resourceType": "Patient",
                    "id": p.mrn,
                    "identifier": [{"system": "urn:demo-clinic:mrn", "value": p.mrn}],
                    "name": [{"family": p.family, "given": [p.given]}],
                    "gender": "female" if p.sex == "F" else "male",
                    "birthDate": p.dob_iso,
                    "telecom": [{"system": "phone", "value": p.phone}],
                },
                "request": {"method": "PUT", "url": f"Patient/{p.mrn}"},
            },
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-9000-{i:012d}",
                "resource": {
                    "resourceType": "Coverage",
                    "id": f"cov-{p.mrn}",
                    "status": "active",
                    "beneficiary": {"reference": pid},
                    "subscriberId": p.member_id,
                    "payor": [{"display": p.payer_name}],
                    "class": [
                        {
                            "type": {
                                "coding": [
                                    {"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}
                                ]
                            },
                            "value": p.group,
                        }
                    ],
                },
                "request": {"method": "PUT", "url": f"Coverage/cov-{p.mrn}"},
            },
        ],
    }


def _fhir_bp(p: Person, d: date, i: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"bp-{p.mrn}-{i}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": f"Patient/{p.mrn}"},
        "effectiveDateTime": f"{d.isoformat()}T09:{i:02d}:00Z",
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]},
                "valueQuantity": {
                    "value": 118 + i,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]},
                "valueQuantity": {
                    "value": 76 + i,
                    "unit": "mmHg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
        ],
    }


def build_day(
    seed: int = 7, n_patients: int = 40, practice_id: str = "demo-clinic", day: date | None = None, run_id: str = ""
) -> DayPlan:
    rng = random.Random(seed)
    d = day or date(2026, 11, 27)
    people = make_people(n_patients, seed)
    plan = DayPlan(day=d, practice_id=practice_id, people=people, run_id=run_id)
    ymd = d.strftime("%Y%m%d")
    ctl = iter(range(100001, 999999))

    # -- HL7 over MLLP: registrations, appointments, results, prescriptions, notes
    for i, p in enumerate(people):
        plan.mllp.append(h.adt_a04(p, f"C{next(ctl)}", _ts(d, i), rng).encode())
    for i, p in enumerate(people[: n_patients * 3 // 4]):
        appt = f"APT{ymd}{i:03d}"
        plan.mllp.append(h.siu(p, f"C{next(ctl)}", _ts(d, 60 + i), appt, _ts(d, 120 + 20 * i), "S12", rng).encode())
        if i % 9 == 4:
            plan.mllp.append(
                h.siu(p, f"C{next(ctl)}", _ts(d, 200 + i), appt, _ts(d, 120 + 20 * i), "S15", rng).encode()
            )
    results = []
    result_ctls = []
    for i, p in enumerate(people[: n_patients // 2]):
        result_ctls.append(f"C{next(ctl)}")
        results.append(h.oru_r01(p, result_ctls[-1], _ts(d, 240 + i), rng, abnormal=(i % 3 == 0)).encode())
    plan.mllp += results
    plan.mllp.append(results[0])  # a resend after a lost ACK
    # the lab's interface engine restarted and reuses a control id for a NEW result:
    # processed (content differs) and flagged control_id_reused, not dropped as a duplicate
    plan.mllp.append(h.oru_r01(people[-1], result_ctls[0], _ts(d, 290), rng, abnormal=True).encode())
    for p in people[: n_patients // 4]:
        plan.mllp.append(h.rde_o11(p, f"C{next(ctl)}", _ts(d, 300), rng).encode())
    for p in people[: max(2, n_patients // 8)]:
        plan.mllp.append(h.mdm_t02(p, f"C{next(ctl)}", _ts(d, 420), rng).encode())
    # the chart history the day's refill requests are triaged against (sampleday/refills.py)
    refill_ctl = iter(range(500001, 599999))
    for i, p in enumerate(refills.patients(people)):
        plan.mllp += refills.history(p, i, d, refill_ctl)
    # orders that need prior authorization, with their chart history (sampleday/prior_auth.py);
    # full days only: their patients must be untouched by the day's other traffic
    pa_people = prior_auth.patients(people) if len(people) >= prior_auth.FIRST + len(prior_auth.CASES) else []
    pa_ctl = iter(range(600001, 699999))
    for i, p in enumerate(pa_people):
        plan.mllp += prior_auth.history(p, i, d, pa_ctl)
    plan.mllp.append(
        b"MSH|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|"
        + ymd.encode()
        + b"||ORU^R01||P|2.5.1\rPID|1||BROKEN\r"
    )  # no MSH-10: AR + dead letter
    # a nightly batch file from the reference lab's interface engine
    batch_msgs = [h.oru_r01(p, f"B{next(ctl)}", _ts(d, 600), rng, abnormal=False) for p in people[-5:]]
    plan.hl7_batches.append((f"lab_batch_{ymd}.hl7", h.batch(batch_msgs, _ts(d, 600)).encode()))

    # -- FHIR pushes: registrations with coverage, vitals, and one invalid resource
    for i, p in enumerate(people[: n_patients // 4]):
        plan.fhir.append(json.dumps(_fhir_patient_bundle(p, i)).encode())
        plan.fhir.append(json.dumps(_fhir_bp(p, d, i % 50)).encode())
    plan.fhir.append(
        json.dumps(
            {"resourceType": "Observation", "id": "bad-1", "status": "not-a-status", "code": {"text": "x"}}
        ).encode()
    )

    # -- patient portal
    stamp = f"{d.isoformat()}T07:30:00Z"
    for i, p in enumerate(people[: n_patients // 4]):
        # the eligibility check's answer: the clearinghouse simulator's fixture picked by the member
        # id's prefix (practiceflow/localstack/clearinghouse.py); the rest are clean
        payer, member = INTAKE_INSURANCE.get(i, (p.payer_name, p.member_id))
        plan.portal.append(
            (
                "intake.submitted",
                json.dumps(
                    {
                        "submission_id": f"intk_{ymd}_{i}",
                        "submitted_at": stamp,
                        "patient_id": None,
                        "patient": {
                            "family_name": p.family,
                            "given_name": p.given,
                            "birth_date": p.dob_iso,
                            "phone": f"+1 217 {p.phone}",
                            "sex": p.sex,
                            "address": {"line": [p.street], "city": p.city, "state": p.state, "postal_code": p.zip},
                        },
                        "insurance": {
                            "payer": payer,
                            "member_id": member.replace("*", p.member_id[1:6]),
                            "group_number": p.group,
                        },
                        "reason_for_visit": "annual physical",
                        "answers": {"smoker": "no"},
                        "appointment": {
                            "appointment_id": f"appt_{ymd}_{i}",
                            "start": f"{(d + timedelta(days=7)).isoformat()}T09:{i:02d}:00-06:00",
                            "provider": "Dr. Welby" if i % 2 else "Dr. Quinn",
                            "service_type": "30",
                        },
                    }
                ).encode(),
                True,
            )
        )
    # refill requests (issue 9), one case per triage class; their chart history goes over MLLP above
    plan.portal += refills.requests(people, d, stamp)
    for i, p in enumerate(people[: n_patients // 6]):
        plan.portal.append(
            (
                "scheduling.requested",
                json.dumps(
                    {
                        "request_id": f"sch_{ymd}_{i}",
                        "submitted_at": stamp,
                        "patient_id": p.mrn,
                        "preferred_times": [{"start": f"{(d + timedelta(days=7)).isoformat()}T09:00:00-06:00"}],
                        "visit_type": "follow-up",
                        "reason": "follow-up visit",
                    }
                ).encode(),
                True,
            )
        )
    plan.portal.append((plan.portal[-1][0], plan.portal[-1][1], False))  # forged: wrong secret
    plan.portal_replays = 1  # the day job re-sends the first intake as a replay

    # -- clearinghouse: 835 remittance, 277CA acknowledgements, 271 eligibility; one truncated file
    claims = [
        (f"CLM{ymd}{i:03d}", p, round(rng.uniform(90, 260), 2), ymd) for i, p in enumerate(people[: n_patients // 2])
    ]
    # the practice's 837P for those claims first (the denial workflow's claim store), then the payer's answer
    plan.x12_upload.append((f"claims_{ymd}.837", x.claims_837(claims, 900, ymd).encode()))
    era, truth = x.remittance_835(claims, 901, ymd, rng)
    plan.truth["835"] = truth
    rejected = {c[0] for c in claims[::7]}
    plan.x12_upload.append((f"era_{ymd}.835", era.encode()))
    plan.x12_upload.append((f"ack_{ymd}.277", x.claim_ack_277ca(claims, 902, ymd, rejected).encode()))
    inactive = {p.mrn for p in people[:3]}
    plan.x12_drop.append((f"elig_{ymd}.271", x.eligibility_271(people[: n_patients // 4], 903, ymd, inactive).encode()))
    plan.x12_drop.append((f"broken_{ymd}.835", era.encode()[:300]))
    if pa_people:  # the payer approves the first prior-authorization request (278 response, HCR*A1)
        plan.x12_drop.append((f"auth_{ymd}.278", prior_auth.response_278(practice_id, pa_people[0], 904, ymd).encode()))

    # -- faxes: typed letters rendered as fax-quality pages
    plan.fax_upload, plan.fax_drop = _faxes(seed, run_id)
    plan.fax_drop += _classified_faxes(seed, plan.people, run_id)
    return plan


def _transmission(run_id: str, name: str) -> str | None:
    """What a fax server writes into the file it hands over (not on the page): which run sent it."""
    return f"practiceflow day run {run_id}: {name}" if run_id else None


def _faxes(seed: int, run_id: str = "") -> tuple[list, list]:
    from practiceflow.processors.fax import synth

    upload = []
    for i, kind in enumerate(("referral", "lab_result")):
        doc = synth.render_document(seed + i, pages=1, kinds=[kind])
        name = f"fax_{kind}.tif"
        tiff = synth.to_tiff_g4(doc, description=_transmission(run_id, name))
        upload.append((name, tiff, {"from": "+12175550101", "to": "+12175550199", "pages": "1"}))
    # a large multi-page fax (photo-mode scan, one JPEG per page, over Kafka's 1 MiB record
    # limit): it travels through the document store (claim check)
    import img2pdf

    big = synth.render_document(seed + 7, pages=5, kinds=["referral"])
    upload.append(
        (
            "fax_records_5_pages.pdf",
            img2pdf.convert(
                [synth.to_jpeg(p, quality=95) for p in big.pages],
                nodate=True,
                title=_transmission(run_id, "fax_records_5_pages.pdf"),
            ),
            {"from": "+12175550102", "to": "+12175550199", "pages": "5"},
        )
    )
    doc = synth.render_document(seed + 5, pages=1, kinds=["prior_auth_response"])
    drop = [
        ("inbound_prior_auth.pdf", synth.to_image_pdf(doc, title=_transmission(run_id, "inbound_prior_auth.pdf"))),
        ("not_a_fax.txt", b"this file was dropped in the fax folder by mistake\n"),
    ]
    return upload, drop


#: who the day's practice is, for the fax workflow's misdirection check (``fax_roster``)
DAY_PRACTICE_NAMES = ("Demo Family Clinic",)
DAY_PROVIDERS = ("Dr. Ana Patel", "Dr. Omar Haddad", "Dr. Grace Kim")


def _classified_faxes(seed: int, people: list[Person], run_id: str = "") -> list[tuple[str, bytes]]:
    """Faxes for the classification workflow: a 4-page packet (cover sheet, a 2-page referral,
    a PA denial) about one of the day's patients, and a consult reply meant for another practice."""
    from practiceflow.processors.fax import synth

    p = people[seed % len(people)]
    dob = f"{p.dob[4:6]}/{p.dob[6:]}/{p.dob[:4]}"
    name = f"{p.given} {p.family}"
    cover = [
        "Summit Primary Care",
        "FAX COVER SHEET",
        f"To: {DAY_PROVIDERS[0]}",
        f"Company: {DAY_PRACTICE_NAMES[0]}",
        "From: Dr. Paul Carter",
        "Fax: (217) 555-0142",
        "Pages (including cover): 4",
        "Re: Referral",
        "CONFIDENTIALITY NOTICE: This facsimile contains protected health information.",
    ]
    referral = [
        "Summit Primary Care",
        "Phone (217) 555-0140   Fax (217) 555-0142",
        "SPECIALIST REFERRAL",
        f"To: {DAY_PROVIDERS[0]}, {DAY_PRACTICE_NAMES[0]}",
        f"RE: {name}  DOB {dob}  MRN {p.mrn}",
        f"I am referring {name} for evaluation of exertional chest pain and palpitations.",
        "Symptoms began about 6 weeks ago; current medications include lisinopril 10 mg daily.",
        "Please consider an ECG and echocardiogram. Relevant notes are attached.",
        "Sincerely, Dr. Paul Carter",
    ]
    referral_2 = [
        f"RE: {name}  DOB {dob}  (continued)",
        "Past medical history: hypertension, hyperlipidemia.",
        "Medications: lisinopril 10 mg; atorvastatin 40 mg. Allergies: penicillin.",
        "Page 2 of 2",
    ]
    pa = [
        p.payer_name or "Blue Harbor Health Plan",
        "PRIOR AUTHORIZATION DETERMINATION",
        f"Member: {name}   DOB: {dob}   Member ID: {p.member_id}",
        f"Patient ID: {p.mrn}",
        f"Prescriber: {DAY_PROVIDERS[0]}, {DAY_PRACTICE_NAMES[0]}",
        "Request: MRI lumbar spine without contrast",
        "Reference Number: PA-558201",
        "Decision: DENIED",
        "Medical necessity criteria were not met based on the information provided.",
        "You may request a peer-to-peer review or file an appeal within 60 days.",
    ]
    wrong = [
        "Cedar Ridge Cardiology",
        "Phone (217) 555-0300   Fax (217) 555-0399",
        "Consultation Note",
        "To: Dr. Helen Wallace, Lakeshore Pediatrics",
        "RE: Noah Brooks  DOB 02/03/2015",
        "Thank you for referring Noah Brooks in cardiology consultation for palpitations.",
        "Assessment: benign sinus arrhythmia. Plan: no follow-up needed.",
    ]
    packet = synth.render_lines_document([cover, referral, referral_2, pa], seed=seed + 11, noise=0.5)
    return [
        (
            "fax_packet_4_pages.tif",
            synth.to_tiff_g4(packet, description=_transmission(run_id, "fax_packet_4_pages.tif")),
        ),
        (
            "fax_misdirected.pdf",
            synth.to_image_pdf(
                synth.render_lines_document([wrong], seed=seed + 12, noise=0.5),
                title=_transmission(run_id, "fax_misdirected.pdf"),
            ),
        ),
    ]


def write_day(plan: DayPlan, out: Path) -> Path:
    """Write the day's inputs to files, so a person can look at what was sent."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "hl7").mkdir(exist_ok=True)
    for i, m in enumerate(plan.mllp):
        (out / "hl7" / f"{i:04d}.hl7").write_bytes(m)
    for name, data in plan.hl7_batches:
        (out / "hl7" / name).write_bytes(data)
    (out / "fhir").mkdir(exist_ok=True)
    for i, b in enumerate(plan.fhir):
        (out / "fhir" / f"{i:04d}.json").write_bytes(b)
    (out / "portal").mkdir(exist_ok=True)
    for i, (ev, body, _) in enumerate(plan.portal):
        (out / "portal" / f"{i:04d}_{ev}.json").write_bytes(body)
    (out / "x12").mkdir(exist_ok=True)
    for name, data in plan.x12_upload + plan.x12_drop:
        (out / "x12" / name).write_bytes(data)
    (out / "fax").mkdir(exist_ok=True)
    for name, data, _ in plan.fax_upload:
        (out / "fax" / name).write_bytes(data)
    for name, data in plan.fax_drop:
        (out / "fax" / name).write_bytes(data)
    return out
