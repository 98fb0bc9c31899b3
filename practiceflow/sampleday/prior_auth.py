"""The sample day's orders that need prior authorization, their chart history, one payer answer.

Patients people[30:34] (none of the day's other traffic touches them) each get over MLLP:
a registration with insurance (ADT^A04 + IN1), the history their criteria look at, and
then the order. The payer's 278 response to the first case's request comes in the X12 drop.

====  ==========================  ====================================================  ==============================
 #    order                       history                                               criteria
====  ==========================  ====================================================  ==============================
 0    MRI lumbar spine (72148)    ibuprofen 8 weeks before, physical therapy 7 weeks    2 met, 2 insufficient; 278 A1
 1    oxygen concentrator (E1390) COPD (J44.9) on the order, SpO2 86 % 10 days before   2 met, 1 insufficient
 2    CT abdomen/pelvis (74177)   nothing                                               2 insufficient
 3    polysomnography (95810)     snoring (R06.83), Epworth 14                          2 met, 1 insufficient
====  ==========================  ====================================================  ==============================
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

from practiceflow.processors.workflows.prior_auth.step import authorization_id
from practiceflow.sampleday.people import PROVIDERS, Person

FIRST = 30
# (order code, display, OBR-31 diagnosis, history)
CASES: list[tuple[str, str, str, str]] = [
    ("72148", "MRI lumbar spine w/o contrast", "M54.16^Radiculopathy, lumbar region^I10", "back"),
    ("E1390", "Oxygen concentrator", "J44.9^COPD, unspecified^I10", "copd"),
    ("74177", "CT abdomen and pelvis with contrast", "", "none"),
    ("95810", "Polysomnography, 4 or more parameters", "R06.83^Snoring^I10", "sleep"),
]


def patients(people: list[Person]) -> list[Person]:
    """people[30:34] in a full day; the last four in a smaller one."""
    if len(people) >= FIRST + len(CASES):
        return people[FIRST : FIRST + len(CASES)]
    return people[-min(len(CASES), len(people)) :]


def _ts(d: date, minutes: int = 0) -> str:
    return (f"{d:%Y%m%d}" + f"{8 + minutes // 60:02d}{minutes % 60:02d}")[:12]


def _msh(control: str, msg_type: str, ts: str, structure: str) -> str:
    return f"MSH|^~\\&|DEMOEHR|DEMO CLINIC|PRACTICEFLOW|DEMO CLINIC|{ts}||{msg_type}^{structure}|{control}|P|2.5.1"


def _pid(p: Person) -> str:
    return (
        f"PID|1||{p.mrn}^^^DEMO^MR||{p.family}^{p.given}||{p.dob}|{p.sex}|||"
        f"{p.street}^^{p.city}^{p.state}^{p.zip}||{p.phone}"
    )


def order_id(i: int) -> str:
    return f"PA{i:04d}"


def _orm(p: Person, control: str, ts: str, oid: str, code: str, display: str, dx: str, system: str = "C4") -> str:
    npi, fam, giv = PROVIDERS[0]
    obr = ["OBR", "1", oid, "", f"{code}^{display}^{system}", "", "", ts] + [""] * 23 + [dx]
    return (
        "\r".join(
            [
                _msh(control, "ORM^O01", ts, "ORM_O01"),
                _pid(p),
                f"ORC|NW|{oid}|||||||{ts}|||{npi}^{fam}^{giv}",
                "|".join(obr),
            ]
        )
        + "\r"
    )


def history(p: Person, i: int, d: date, controls: Iterator[int]) -> list[bytes]:
    """The case's registration (with insurance) and chart history, then its order."""
    npi, fam, giv = PROVIDERS[0]
    out = [
        "\r".join(
            [
                _msh(f"P{next(controls)}", "ADT^A04", _ts(d), "ADT_A01"),
                f"EVN|A04|{_ts(d)}",
                _pid(p),
                f"PV1|1|O|MAIN^^^DEMO||||{npi}^{fam}^{giv}",
                f"IN1|1|{p.payer_id}|{p.payer_id}|{p.payer_name}|||{p.group}||||||||{p.family}^{p.given}|18|"
                f"{p.dob}|||||||||||||||||||{p.member_id}",
            ]
        )
        + "\r"
    ]
    kind = CASES[i][3]
    if kind == "back":
        rx_day = f"{d - timedelta(weeks=8):%Y%m%d}0900"
        out.append(
            "\r".join(
                [
                    _msh(f"P{next(controls)}", "RDE^O11", rx_day, "RDE_O11"),
                    _pid(p),
                    f"ORC|NW|RXPA{i}|||||||{rx_day}|||{npi}^{fam}^{giv}",
                    f"RXE|1^TID^^{rx_day}|5640^ibuprofen 600 MG Oral Tablet^RXNORM|1||TAB|||||90|TAB|0",
                ]
            )
            + "\r"
        )
        pt_day = f"{d - timedelta(weeks=7):%Y%m%d}0900"
        out.append(
            _orm(p, f"P{next(controls)}", pt_day, f"PT{i:04d}", "97110", "Physical therapy, therapeutic exercise", "")
        )
    elif kind in ("copd", "sleep"):
        obs_day = f"{d - timedelta(days=10):%Y%m%d}0900"
        loinc, name, value, units = (
            ("59408-5", "Oxygen saturation by pulse oximetry", "86", "%")
            if kind == "copd"
            else ("89853-1", "Epworth Sleepiness Scale total score", "14", "{score}")
        )
        out.append(
            "\r".join(
                [
                    _msh(f"P{next(controls)}", "ORU^R01", obs_day, "ORU_R01"),
                    _pid(p),
                    f"ORC|RE|OBS{i:04d}",
                    f"OBR|1|OBS{i:04d}||{loinc}^{name}^LN|||{obs_day}",
                    f"OBX|1|NM|{loinc}^{name}^LN||{value}|{units}|||||F|||{obs_day}",
                ]
            )
            + "\r"
        )
    code, display, dx, _kind = CASES[i]
    out.append(_orm(p, f"P{next(controls)}", _ts(d, 60 + i), order_id(i), code, display, dx))
    return [m.encode() for m in out]


def response_278(practice_id: str, p: Person, ic: int, day: str, number: str = "AUTH2026001") -> str:
    """The payer's 278 response approving case 0 (HCR*A1), echoing the request's trace (TRN)."""
    trace = authorization_id(practice_id, p.mrn, order_id(0))
    body = [
        "ST*278*0001*005010X217",
        f"BHT*0007*11*R{ic}*{day}*1200*18",
        "HL*1**20*1",
        f"NM1*X3*2*{p.payer_name}*****PI*{p.payer_id}",
        "HL*2*1*21*1",
        f"NM1*1P*1*{PROVIDERS[0][1]}*{PROVIDERS[0][2]}****XX*{PROVIDERS[0][0]}",
        "HL*3*2*22*1",
        f"NM1*IL*1*{p.family}*{p.given}****MI*{p.member_id}",
        "HL*4*3*EV*0",
        f"TRN*2*{trace}*9PRCTFLOW0",
        "UM*HS*I*62*11:B",
        f"HCR*A1*{number}",
        f"DTP*AAH*RD8*{day}-{day[:4]}1231",
    ]
    body.append(f"SE*{len(body) + 1}*0001")
    isa = (
        f"ISA*00*          *00*          *ZZ*{'UMO':<15}*ZZ*{'PRACTICEFLOW':<15}*{day[2:]}*1200*^*00501*{ic:09d}*0*P*:"
    )
    segs = [isa, f"GS*HI*UMO*PRACTICEFLOW*{day}*1200*{ic}*X*005010X217", *body, f"GE*1*{ic}", f"IEA*1*{ic:09d}"]
    return "~\n".join(segs) + "~\n"


def pas_response(
    practice_id: str,
    p: Person,
    case: int,
    code: str = "A4",
    number: str | None = "CASE2026002",
    request_id: str | None = None,
    outcome: str = "complete",
    version: int = 1,
) -> str:
    """A Da Vinci PAS ClaimResponse (FHIR JSON) answering case ``case``'s PAS request: ``request``
    is our Claim (whose id is the authorization id, or ``request_id``), review action ``code`` (X12 306).

    WHY one id per request and a ``version``: a payer answers a request with one ClaimResponse
    and updates it in place when it decides a pended one (``meta.versionId`` 2, A1); the
    sample data must exercise that update, not a fresh id per answer."""
    claim = request_id or authorization_id(practice_id, p.mrn, order_id(case))
    review = {
        "url": "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction",
        "extension": [
            {
                "url": "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewActionCode",
                "valueCodeableConcept": {"coding": [{"system": "https://codesystem.x12.org/005010/306", "code": code}]},
            }
        ],
    }
    resource = {
        "resourceType": "ClaimResponse",
        "id": f"pas-{claim[:40]}",
        "meta": {
            "versionId": str(version),
            "profile": ["http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claimresponse"],
        },
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization",
        "patient": {"reference": f"Patient/{p.mrn}"},
        "created": "2026-11-28T09:00:00Z",
        "insurer": {"display": p.payer_name},
        "request": {"reference": f"Claim/{claim}"},
        "outcome": outcome,
        **({"preAuthRef": number} if number else {}),
        "item": [{"itemSequence": 1, "adjudication": [{"extension": [review], "category": {"text": "submitted"}}]}],
    }
    return json.dumps(resource)


def eligibility_271(practice_id: str, p: Person, ic: int, day: str, service_type: str = "62") -> str:
    """A 271 for ``p`` echoing the MRN (REF*EA) whose benefit for ``service_type`` needs
    authorization (EB11 Y): the payer saying so before anything was requested."""
    body = [
        "ST*271*0001*005010X279A1",
        f"BHT*0022*11*E{ic}*{day}*1200",
        "HL*1**20*1",
        f"NM1*PR*2*{p.payer_name}*****PI*{p.payer_id}",
        "HL*2*1*21*1",
        f"NM1*1P*1*{PROVIDERS[0][1]}*{PROVIDERS[0][2]}****XX*{PROVIDERS[0][0]}",
        "HL*3*2*22*0",
        f"TRN*2*E{ic}*9PRCTFLOW0",
        f"NM1*IL*1*{p.family}*{p.given}****MI*{p.member_id}",
        f"REF*EA*{p.mrn}",
        f"DTP*346*D8*{day[:4]}0101",
        f"EB*1*IND*{service_type}**PLAN A******Y*Y",
    ]
    body.append(f"SE*{len(body) + 1}*0001")
    isa = (
        f"ISA*00*          *00*          *ZZ*{'CLEARINGHOUSE':<15}*ZZ*{'PRACTICEFLOW':<15}*{day[2:]}*1200*^*00501*"
        f"{ic:09d}*0*P*:"
    )
    segs = [isa, f"GS*HB*CLEARINGHOUSE*PRACTICEFLOW*{day}*1200*{ic}*X*005010X279A1", *body, f"GE*1*{ic}"]
    return "~\n".join([*segs, f"IEA*1*{ic:09d}"]) + "~\n"
