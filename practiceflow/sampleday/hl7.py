"""HL7 v2.5.1 messages a small practice's EHR sends in a day (synthetic)."""

from __future__ import annotations

import random

from practiceflow.sampleday.people import PROVIDERS, Person

LABS = [  # LOINC, name, units, low, high
    ("2345-7", "Glucose", "mg/dL", 70, 99),
    ("2951-2", "Sodium", "mmol/L", 135, 145),
    ("2823-3", "Potassium", "mmol/L", 3.5, 5.1),
    ("2160-0", "Creatinine", "mg/dL", 0.6, 1.2),
    ("4548-4", "Hemoglobin A1c", "%", 4.0, 5.6),
    ("718-7", "Hemoglobin", "g/dL", 12.0, 17.5),
]
MEDS = [
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("860975", "metformin 500 MG Oral Tablet"),
    ("617312", "atorvastatin 20 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
]


def _msh(control: str, msg_type: str, ts: str, structure: str) -> str:
    return f"MSH|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|{ts}||{msg_type}^{structure}|{control}|P|2.5.1"


def _pid(p: Person) -> str:
    return (
        f"PID|1||{p.mrn}^^^DEMO^MR||{p.family}^{p.given}||{p.dob}|{p.sex}|||"
        f"{p.street}^^{p.city}^{p.state}^{p.zip}||{p.phone}"
    )


def _pv1(rng: random.Random) -> str:
    npi, fam, giv = rng.choice(PROVIDERS)
    return f"PV1|1|O|MAIN^^^DEMO||||{npi}^{fam}^{giv}"


def adt_a04(p: Person, control: str, ts: str, rng: random.Random) -> str:
    segs = [
        _msh(control, "ADT^A04", ts, "ADT_A01"),
        f"EVN|A04|{ts}",
        _pid(p),
        _pv1(rng),
        f"IN1|1|{p.payer_id}|{p.payer_id}|{p.payer_name}|||{p.group}||||||||{p.family}^{p.given}|18|"
        f"{p.dob}|||||||||||||||||||{p.member_id}",
    ]
    return "\r".join(segs) + "\r"


def oru_r01(p: Person, control: str, ts: str, rng: random.Random, abnormal: bool) -> str:
    npi, fam, giv = rng.choice(PROVIDERS)
    order = f"ORD{control[-6:]}"
    segs = [
        _msh(control, "ORU^R01", ts, "ORU_R01"),
        _pid(p),
        _pv1(rng),
        f"ORC|RE|{order}|LAB{control[-6:]}",
        f"OBR|1|{order}|LAB{control[-6:]}|80048^Basic metabolic panel^CPT|||{ts}|||||||||{npi}^{fam}^{giv}"
        f"||||||{ts}|||F",
    ]
    tests = rng.sample(LABS, 4)
    for i, (loinc, name, units, lo, hi) in enumerate(tests, 1):
        value = round(rng.uniform(lo, hi), 1)
        flag = "N"
        if abnormal and i == 1:
            value, flag = round(hi * rng.uniform(1.2, 1.6), 1), "H"
        segs.append(f"OBX|{i}|NM|{loinc}^{name}^LN||{value}|{units}|{lo}-{hi}|{flag}|||F|||{ts}")
    return "\r".join(segs) + "\r"


def siu(p: Person, control: str, ts: str, appt_id: str, start: str, event: str, rng: random.Random) -> str:
    npi, fam, giv = rng.choice(PROVIDERS)
    filler_status = "Cancelled" if event == "S15" else "Booked"
    segs = [
        _msh(control, f"SIU^{event}", ts, "SIU_S12"),
        f"SCH|{appt_id}|{appt_id}|||||FOLLOWUP^Follow-up visit|OFFICE^Office visit|20|MIN|"
        f"^^20^{start}^||||||||||||||{filler_status}",
        _pid(p),
        _pv1(rng),
        "RGS|1",
        f"AIS|1||99213^Office visit^CPT|{start}|0|MIN|20|MIN",
        f"AIP|1||{npi}^{fam}^{giv}|MD",
    ]
    return "\r".join(segs) + "\r"


def rde_o11(p: Person, control: str, ts: str, rng: random.Random) -> str:
    npi, fam, giv = rng.choice(PROVIDERS)
    code, name = rng.choice(MEDS)
    segs = [
        _msh(control, "RDE^O11", ts, "RDE_O11"),
        _pid(p),
        f"ORC|NW|RX{control[-6:]}|||||||{ts}|||{npi}^{fam}^{giv}",
        f"RXE|1^QD^^{ts}|{code}^{name}^RXNORM|1||TAB|||||30|TAB|3",
        "RXR|PO^Oral^HL70162",
    ]
    return "\r".join(segs) + "\r"


def mdm_t02(p: Person, control: str, ts: str, rng: random.Random) -> str:
    npi, fam, giv = rng.choice(PROVIDERS)
    segs = [
        _msh(control, "MDM^T02", ts, "MDM_T02"),
        f"EVN|T02|{ts}",
        _pid(p),
        _pv1(rng),
        f"TXA|1|PN|TX|{ts}|{npi}^{fam}^{giv}||||||DOC{control[-6:]}||||||AU",
        "OBX|1|TX|11506-3^Progress note^LN||Follow-up visit. Patient reports feeling well.",
        "OBX|2|TX|11506-3^Progress note^LN||Plan reviewed with patient; return in 3 months.",
    ]
    return "\r".join(segs) + "\r"


def batch(messages: list[str], ts: str) -> str:
    """An FHS/BHS batch file as an interface engine drops it on a share."""
    body = "".join(m for m in messages)
    return (
        f"FHS|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|{ts}\r"
        f"BHS|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|{ts}\r"
        f"{body}BTS|{len(messages)}\rFTS|1\r"
    )
