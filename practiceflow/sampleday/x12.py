"""X12 5010 files of a practice's day (synthetic): the 837P it sends, and the 835, 277CA, 271 it gets back."""

from __future__ import annotations

import random

from practiceflow.sampleday.people import Person

# (group, CARC, RARC, paid fraction, claim status): realistic outcomes for small-practice claims
OUTCOMES = [
    ("CO", "45", None, 0.8, "1"),  # contractual adjustment, paid
    ("PR", "1", None, 0.6, "1"),  # deductible, patient owes
    ("PR", "2", None, 0.7, "1"),  # co-insurance
    ("CO", "29", None, 0.0, "4"),  # timely filing -> denied
    ("CO", "16", "MA130", 0.0, "4"),  # missing information -> denied, correctable
    ("CO", "197", "N54", 0.0, "4"),  # prior authorization absent -> denied
    ("CO", "50", "N115", 0.0, "4"),  # not medically necessary -> denied
]


def isa(control: int, date: str, time_: str, sender: str = "CLEARINGHOUSE", receiver: str = "DEMOCLINIC") -> str:
    return (
        f"ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*{receiver:<15}*{date[2:]}*{time_}*^*00501*"
        f"{control:09d}*0*P*:~"
    )


def _envelope(ic: int, date: str, time_: str, gs_code: str, st_code: str, version: str, body: list[str]) -> str:
    st = [f"ST*{st_code}*0001*{version}", *body]
    st.append(f"SE*{len(st) + 1}*0001")
    segs = [
        isa(ic, date, time_),
        f"GS*{gs_code}*CLEARINGHOUSE*DEMOCLINIC*{date}*{time_}*{ic}*X*{version}",
        *st,
        f"GE*1*{ic}",
        f"IEA*1*{ic:09d}",
    ]
    return "~\n".join(s.rstrip("~") for s in segs) + "~\n"


def remittance_835(
    claims: list[tuple[str, Person, float, str]], ic: int, date: str, rng: random.Random
) -> tuple[str, list[dict]]:
    """claims: (claim_id, patient, charge, service_date). Returns the file and the truth per claim."""
    truth = []
    lines: list[str] = []
    total_paid = 0.0
    for claim_id, p, charge, dos in claims:
        group, carc, rarc, frac, status = rng.choice(OUTCOMES)
        paid = round(charge * frac, 2)
        adj = round(charge - paid, 2)
        total_paid += paid
        patient_resp = adj if group == "PR" else 0.0
        lines += [
            f"CLP*{claim_id}*{status}*{charge:.2f}*{paid:.2f}*{patient_resp:.2f}*12*{rng.randint(10**10, 10**11)}*11*1",
            f"NM1*QC*1*{p.family}*{p.given}****MI*{p.member_id}",
            f"DTM*232*{dos}",
            f"SVC*HC:99213*{charge:.2f}*{paid:.2f}**1",
            f"DTM*472*{dos}",
            f"CAS*{group}*{carc}*{adj:.2f}",
        ]
        if rarc:
            lines.append(f"LQ*HE*{rarc}")
        truth.append({"claim_id": claim_id, "group": group, "carc": carc, "rarc": rarc, "paid": paid, "status": status})
    body = [
        f"BPR*I*{total_paid:.2f}*C*ACH*CCP*01*999999999*DA*123456*1512345678**01*999988880*DA*98765*{date}",
        f"TRN*1*EFT{ic}*1512345678",
        f"DTM*405*{date}",
        "N1*PR*DEMO TEST PAYER",
        "N3*1 PAYER WAY",
        "N4*HARTFORD*CT*06101",
        "N1*PE*DEMO CLINIC*XX*1234567893",
        "N3*12 MAIN ST",
        "N4*SPRINGFIELD*IL*62701",
        "LX*1",
        *lines,
    ]
    return _envelope(ic, date, "0930", "HP", "835", "005010X221A1", body), truth


def claim_ack_277ca(claims: list[tuple[str, Person, float, str]], ic: int, date: str, rejected: set[str]) -> str:
    body = [
        "BHT*0085*08*CA277*" + date + "*1200*TH",
        "HL*1**20*1",
        "NM1*PR*2*DEMO TEST PAYER*****PI*60054",
        "TRN*1*0091182",
        f"DTP*050*D8*{date}",
        f"DTP*009*D8*{date}",
        "HL*2*1*21*1",
        "NM1*41*2*DEMO CLINIC*****46*1234567893",
        "TRN*2*BATCH01",
        f"STC*A1:19:PR*{date}*WQ*{sum(c[2] for c in claims):.2f}",
    ]
    hl = 3
    body += [f"HL*{hl}*2*19*1", "NM1*85*2*DEMO CLINIC*****XX*1234567893"]
    parent = hl
    for claim_id, p, charge, dos in claims:
        hl += 1
        bad = claim_id in rejected
        stc = f"STC*A7:562:85*{date}*U*{charge:.2f}" if bad else f"STC*A2:20:PR*{date}*WQ*{charge:.2f}"
        body += [
            f"HL*{hl}*{parent}*PT",
            f"NM1*QC*1*{p.family}*{p.given}****MI*{p.member_id}",
            f"TRN*2*{claim_id}",
            stc,
            f"REF*1K*PCN{claim_id}",
            f"DTP*472*D8*{dos}",
        ]
    return _envelope(ic, date, "1200", "HN", "277", "005010X214", body)


def eligibility_271(people: list[Person], ic: int, date: str, inactive: set[str]) -> str:
    body = [
        "BHT*0022*11*ELIG" + str(ic) + f"*{date}*1300",
        "HL*1**20*1",
        "NM1*PR*2*DEMO TEST PAYER*****PI*60054",
        "HL*2*1*21*1",
        "NM1*1P*2*DEMO CLINIC*****XX*1234567893",
    ]
    hl = 2
    for p in people:
        hl += 1
        body += [
            f"HL*{hl}*2*22*0",
            f"TRN*2*ELIG-{p.mrn}*9877281234",
            f"NM1*IL*1*{p.family}*{p.given}****MI*{p.member_id}",
            f"DMG*D8*{p.dob}*{p.sex}",
        ]
        if p.mrn in inactive:
            body += ["EB*6**30"]
        else:
            body += [
                "EB*1**30**GOLD PLAN",
                "EB*B**98***27*25.00*****Y",
                "EB*C*IND*30***23*1500.00****Y",
                "EB*A**98****.2****Y",
            ]
    return _envelope(ic, date, "1300", "HB", "271", "005010X279A1", body)


def claims_837(claims: list[tuple[str, Person, float, str]], ic: int, date: str) -> str:
    """The practice's own 837P batch for the day's claims (one file per claim, joined), written
    by the project's 837P writer, so the denial workflow's claim store has each original."""
    from practiceflow.processors.x12.write837 import Parties, write_837p

    out = []
    for n, (claim_id, p, charge, dos) in enumerate(claims):
        iso = f"{dos[:4]}-{dos[4:6]}-{dos[6:]}"
        claim = {
            "practice_id": "-",
            "claim_id": claim_id,
            "patient_id": p.mrn,
            "payer_id": p.payer_id,
            "payer_name": p.payer_name,
            "total_charge": charge,
            "service_date": iso,
            "diagnoses": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E119", "display": None}],
            "lines": [
                {
                    "procedure": {"system": "http://www.ama-assn.org/go/cpt", "code": "99213", "display": None},
                    "modifiers": [],
                    "charge": charge,
                    "units": 1.0,
                    "service_date": iso,
                    "control_number": None,
                }
            ],
            "status": "submitted",
            "member_id": p.member_id,
            "place_of_service": "11",
        }
        parties = Parties(
            sender_id="DEMOCLINIC",
            receiver_id="CLEARINGHOUSE",
            submitter_name="DEMO CLINIC",
            receiver_name="CLEARINGHOUSE",
            billing_provider_name="DEMO CLINIC",
            billing_provider_npi="1234567893",
            billing_provider_tax_id="123456789",
            billing_address=("12 MAIN ST", "SPRINGFIELD", "IL", "62701"),
            subscriber_last=p.family,
            subscriber_first=p.given,
            subscriber_birth_date=f"{p.dob[:4]}-{p.dob[4:6]}-{p.dob[6:]}",
            subscriber_gender=p.sex if p.sex in ("M", "F") else "U",
        )
        out.append(write_837p(claim, parties, interchange_control=ic * 1000 + n, created=iso))  # type: ignore[arg-type]
    return "".join(out)
