"""The sample day's refill requests and the chart history that decides them (issue 9).

Each refill patient gets, over MLLP before the portal events are sent: a completed visit
(ADT^A03 with admit/discharge times, 60 days before the day, unless the case is "no
visit"), the monitoring labs its drug's protocol wants (ORU^R01, dated the day), and the
prescription the request names (RDE^O11), blood pressures as vital-sign OBX. The patients
are people[20:29], who get none of the day's other results, orders or vitals (a newer
result would decide instead). The cases cover every triage class:

====  ===================  =====================================================  ==============
 #    drug                 history                                                class
====  ===================  =====================================================  ==============
 0    lisinopril 10 mg     visit, K 4.3, creatinine 0.9, BP                        routine
 1    metformin 500 mg     visit, A1c 6.9 %, eGFR 78                               routine
 2    atorvastatin 20 mg   visit, LDL 92                                           routine
 3    amlodipine 5 mg      visit, BP                                               routine
 4    lisinopril 10 mg     visit, K 5.9 (H), creatinine 1.0, BP                    needs_review
 5    metformin 500 mg     no visit on record, A1c, eGFR                           needs_visit
 6    atorvastatin 20 mg   visit, no lipid panel                                   needs_review
 7    amlodipine 5 mg      visit, BP, but the order is amlodipine 10 mg            needs_review
 8    tramadol 50 mg       visit, order (controlled, schedule IV)                  needs_review
====  ===================  =====================================================  ==============

No randomness: the day's other traffic (and its seeded random values) is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

from practiceflow.sampleday.people import PROVIDERS, Person

BP = [
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 128.0, "", ""),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 80.0, "", ""),
]
FIRST = 20  # people[20:29]: none of them gets the day's other results, orders or vitals, which would be newer
# (request name, order code, order display, labs: (loinc, name, units, value, range, flag), visit?)
CASES: list[tuple[str, str | None, str, list[tuple[str, str, str, float, str, str]], bool]] = [
    ("lisinopril 10 MG Oral Tablet", "314076", "lisinopril 10 MG Oral Tablet",
     [("2823-3", "Potassium", "mmol/L", 4.3, "3.5-5.1", "N"), ("2160-0", "Creatinine", "mg/dL", 0.9, "0.6-1.2", "N"), *BP], True),
    ("metformin 500 MG Oral Tablet", "861007", "metformin hydrochloride 500 MG Oral Tablet",
     [("4548-4", "Hemoglobin A1c", "%", 6.9, "4.0-5.6", "H"), ("62238-1", "eGFR", "mL/min/{1.73_m2}", 78.0, ">60", "N")], True),
    ("atorvastatin 20 MG Oral Tablet", "617310", "atorvastatin 20 MG Oral Tablet",
     [("13457-7", "LDL cholesterol", "mg/dL", 92.0, "0-99", "N")], True),
    ("amlodipine 5 MG Oral Tablet", "197361", "amlodipine 5 MG Oral Tablet", BP, True),
    ("lisinopril 10 MG Oral Tablet", "314076", "lisinopril 10 MG Oral Tablet",
     [("2823-3", "Potassium", "mmol/L", 5.9, "3.5-5.1", "H"), ("2160-0", "Creatinine", "mg/dL", 1.0, "0.6-1.2", "N"), *BP], True),
    ("metformin 500 MG Oral Tablet", "861007", "metformin hydrochloride 500 MG Oral Tablet",
     [("4548-4", "Hemoglobin A1c", "%", 7.1, "4.0-5.6", "H"), ("62238-1", "eGFR", "mL/min/{1.73_m2}", 81.0, ">60", "N")], False),
    ("atorvastatin 20 MG Oral Tablet", "617310", "atorvastatin 20 MG Oral Tablet", [], True),
    ("amlodipine 5 MG Oral Tablet", "308135", "amlodipine 10 MG Oral Tablet", BP, True),
    ("tramadol 50 mg tablet", None, "tramadol hydrochloride 50 MG Oral Tablet", [], True),
]  # fmt: skip
EXPECTED = ["routine"] * 4 + ["needs_review", "needs_visit", "needs_review", "needs_review", "needs_review"]


def _msh(control: str, msg_type: str, ts: str, structure: str) -> str:
    return f"MSH|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|{ts}||{msg_type}^{structure}|{control}|P|2.5.1"


def _pid(p: Person) -> str:
    return f"PID|1||{p.mrn}^^^DEMO^MR||{p.family}^{p.given}||{p.dob}|{p.sex}"


def patients(people: list[Person]) -> list[Person]:
    """Who the refill cases are: people[20:29] in a full day; in a small day (tests) the last
    few, whose classes then depend on the day's other results (only the full day is exact)."""
    if len(people) >= FIRST + len(CASES):
        return people[FIRST : FIRST + len(CASES)]
    return people[-min(len(CASES), len(people)) :]


def history(p: Person, i: int, d: date, controls: Iterator[int]) -> list[bytes]:
    """The chart history of refill case ``i`` for patient ``p``, as HL7 messages."""
    _name, code, display, labs, visit = CASES[i]
    npi, fam, giv = PROVIDERS[i % len(PROVIDERS)]
    ymd = d.strftime("%Y%m%d")
    out: list[str] = []
    if visit:
        seen = (d - timedelta(days=60)).strftime("%Y%m%d")
        ctl = f"R{next(controls)}"
        out.append(
            "\r".join(
                [
                    _msh(ctl, "ADT^A03", f"{seen}1100", "ADT_A03"),
                    f"EVN|A03|{seen}1100",
                    _pid(p),
                    f"PV1|1|O|MAIN^^^DEMO||||{npi}^{fam}^{giv}||||||||||||V{ctl}|||||||||||||||||||||||||{seen}0930|{seen}1000",
                ]
            )
            + "\r"
        )
    if labs:
        ctl = f"R{next(controls)}"
        segs = [
            _msh(ctl, "ORU^R01", f"{ymd}0700", "ORU_R01"),
            _pid(p),
            f"ORC|RE|MON{ctl}|LABM{ctl}",
            f"OBR|1|MON{ctl}|LABM{ctl}|80053^Monitoring labs^CPT|||{ymd}0600|||||||||{npi}^{fam}^{giv}||||||{ymd}0700|||F",
        ]
        for n, (loinc, lname, units, value, rng, flag) in enumerate(labs, 1):
            segs.append(f"OBX|{n}|NM|{loinc}^{lname}^LN||{value:g}|{units}|{rng}|{flag}|||F|||{ymd}0600")
        out.append("\r".join(segs) + "\r")
    ctl = f"R{next(controls)}"
    written = (d - timedelta(days=120)).strftime("%Y%m%d")
    out.append(
        "\r".join(
            [
                _msh(ctl, "RDE^O11", f"{written}0900", "RDE_O11"),
                _pid(p),
                f"ORC|NW|RXR{ctl}|||||||{written}0900|||{npi}^{fam}^{giv}",
                f"RXE|1^QD^^{written}|{code or ''}^{display}^RXNORM|1||TAB|||||90|TAB|0",
                "RXR|PO^Oral^HL70162",
            ]
        )
        + "\r"
    )
    return [m.encode() for m in out]


def requests(people: list[Person], d: date, stamp: str) -> list[tuple[str, bytes, bool]]:
    """The portal refill events (event type, body, signed correctly)."""
    ymd = d.strftime("%Y%m%d")
    return [
        (
            "refill.requested",
            json.dumps(
                {
                    "request_id": f"rfl_{ymd}_{i}",
                    "submitted_at": stamp,
                    "patient_id": p.mrn,
                    "medication": {"name": CASES[i][0]},
                    "last_filled": (d - timedelta(days=28)).isoformat(),
                    "note": "almost out",
                }
            ).encode(),
            True,
        )
        for i, p in enumerate(patients(people))
    ]
